//go:build !initonly

package main

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapvisor/internal/testutil"
	"snapvisor/remote"
	"snapvisor/seal"
	"snapvisor/snapshot"
	"snapvisor/store"
	"snapvisor/store/storetest"
)

// startPID1As runs the entrypoint as PID 1 of new PID and UTS namespaces
// whose host name is host (two containers on one machine).
func startPID1As(t *testing.T, host string, env []string, args ...string) *proc {
	t.Helper()
	requireRoot(t)
	argv := append([]string{"unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--uts",
		"sh", "-c", `hostname "$0" && exec "$@"`, host, binPath}, args...)
	return start(t, env, argv...)
}

// remoteWriters maps each complete snapshot named db on the file:// remote
// at dir to the host that wrote it (its manifest's), checking on the way
// that the archive matches its .sha256.
func remoteWriters(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	m, _ := filepath.Glob(filepath.Join(dir, "db-*.tar.gz"))
	for _, p := range m {
		if _, err := os.Stat(p + ".sha256"); err != nil {
			continue
		}
		if err := snapshot.VerifyWith(t.Context(), p, seal.Config{}); err != nil {
			if _, serr := os.Stat(p); os.IsNotExist(serr) {
				continue // rotated away meanwhile
			}
			t.Errorf("remote snapshot %s: %v", filepath.Base(p), err)
			continue
		}
		// Rotated away after its check (KEEP=3 every second): not a snapshot
		// the remote holds, and no writer to name ("" was taken for a
		// foreign one: CI's failure).
		if man, ok := manifestOf(t, p); ok {
			out[filepath.Base(p)] = man.Host
		}
	}
	return out
}

// manifestOf reads the manifest of a gzip snapshot archive; false when the
// archive is gone (rotated away meanwhile).
func manifestOf(t *testing.T, p string) (snapshot.Manifest, bool) {
	t.Helper()
	var m snapshot.Manifest
	f, err := os.Open(p)
	if os.IsNotExist(err) {
		return m, false
	}
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	tr := tar.NewReader(z)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != snapshot.ManifestName {
		t.Fatalf("%s: first entry %v, %v", p, hdr, err)
	}
	if err := json.NewDecoder(tr).Decode(&m); err != nil {
		t.Fatalf("%s: manifest: %v", p, err)
	}
	if m.Instance == "" {
		t.Errorf("%s: the manifest does not record the writer's instance: %+v", p, m)
	}
	return m, true
}

// health runs `entrypoint health` against env's control socket.
func health(t *testing.T, env []string) (bool, string) {
	t.Helper()
	code, out, errOut := entrypoint(t, env, "health")
	return code == 0, out + errOut
}

// metric returns the line of the metrics page at addr that starts with prefix.
func metric(addr, prefix string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestEntrypoint_TwoWriters is the "docker compose up --scale db=2" story:
// two entrypoints as PID 1 on different hosts, same file:// remote and
// SNAPVISOR_NAME, a snapshot every second, KEEP=3. The second is refused
// (health names the holder, the lease metric is 1) and keeps its local
// snapshots; the remote holds the first one's snapshots only, none replaced.
// When the first is killed (-9), the second takes over after the lease TTL;
// the first, started again, takes it back at once with `entrypoint
// takeover`; a clean exit releases the lease.
func TestEntrypoint_TwoWriters(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	remoteDir := filepath.Join(root, "remote")
	url := "file://" + remoteDir
	writer := func(name string) ([]string, string) {
		data := filepath.Join(root, name, "data")
		if err := os.MkdirAll(data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "who"), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t))
		return []string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@every 1s", "SNAPVISOR_KEEP=3", "SNAPVISOR_NAME=db",
			"SNAPVISOR_REMOTES=" + url, "SNAPVISOR_LEASE_TTL=3s", "SNAPVISOR_REMOTE_RETRIES=1", "SNAPVISOR_REMOTE_BACKOFF=100ms",
			"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + filepath.Join(root, name, "backups"),
			"SNAPVISOR_CONTROL_SOCKET=" + sockPath(t), "SNAPVISOR_METRICS_ADDR=" + addr}, addr
	}
	envA, _ := writer("writer-a")
	envB, addrB := writer("writer-b")
	onlyFrom := func(host string) func() bool {
		return func() bool {
			w := remoteWriters(t, remoteDir)
			for k, h := range w {
				if h != host {
					t.Fatalf("the remote holds %s from %s while %s holds the lease: %v", k, h, host, w)
				}
			}
			return len(w) > 0
		}
	}

	a := startPID1As(t, "writer-a", envA, "sleep", "1000")
	testutil.Eventually(t, 30*time.Second, "writer A's snapshots reach the remote", onlyFrom("writer-a"))
	b := startPID1As(t, "writer-b", envB, "sleep", "1000")
	testutil.Eventually(t, 30*time.Second, "writer B unhealthy, naming the lease holder", func() bool {
		ok, out := health(t, envB)
		return !ok && strings.Contains(out, "writer-a") && strings.Contains(out, "entrypoint takeover")
	})
	conflict := `snapvisor_remote_lease_conflict{remote="` + url + `"}`
	if got := metric(addrB, conflict); got != conflict+" 1" {
		t.Errorf("writer B's metrics: %q, want %s 1", got, conflict)
	}
	// B snapshots locally all the while; the remote gets A's only, none replaced.
	testutil.Eventually(t, 30*time.Second, "writer B's local snapshots go on", func() bool {
		list, _ := snapshot.List(filepath.Join(root, "writer-b", "backups"), "db")
		return len(list) >= 3
	})
	if !onlyFrom("writer-a")() {
		t.Fatal("writer A's snapshots are gone from the remote")
	}

	// A dies without releasing its lease: B takes over after the TTL.
	killed := time.Now()
	_ = syscall.Kill(a.pid1(t), syscall.SIGKILL)
	a.wait(t, 10*time.Second)
	testutil.Eventually(t, 30*time.Second, "writer B takes over", func() bool {
		for _, h := range remoteWriters(t, remoteDir) {
			if h == "writer-b" {
				return true
			}
		}
		return false
	})
	if d := time.Since(killed); d < 2*time.Second {
		t.Errorf("writer B took over %s after the kill, before the 3s lease could expire", d)
	}
	testutil.Eventually(t, 10*time.Second, "writer B healthy", func() bool { ok, _ := health(t, envB); return ok })
	if got := metric(addrB, conflict); got != conflict+" 0" {
		t.Errorf("writer B's metrics after the takeover: %q", got)
	}

	// A comes back (a new instance): refused while B lives; takeover at once.
	a = startPID1As(t, "writer-a", envA, "sleep", "1000")
	testutil.Eventually(t, 30*time.Second, "writer A refused", func() bool {
		ok, out := health(t, envA)
		return !ok && strings.Contains(out, "writer-b")
	})
	code, out, errOut := entrypoint(t, envA, "takeover")
	if code != 0 || !strings.Contains(out, url+": lease taken by the running entrypoint") || !strings.Contains(out, "writer-b") {
		t.Fatalf("takeover: exit %d: %s %s", code, out, errOut)
	}
	testutil.Eventually(t, 10*time.Second, "writer A healthy after the takeover", func() bool { ok, _ := health(t, envA); return ok })
	testutil.Eventually(t, 10*time.Second, "writer B refused after the takeover", func() bool {
		ok, out := health(t, envB)
		return !ok && strings.Contains(out, "writer-a")
	})
	l, ok, err := remote.ReadLease(t.Context(), mustOpenFile(t, url), "db")
	if err != nil || !ok || l.Host != "writer-a" {
		t.Fatalf("lease after the takeover: %+v, %v, %v", l, ok, err)
	}

	// A clean exit releases the lease: B takes it within its renewal period, not the TTL.
	_ = syscall.Kill(a.pid1(t), syscall.SIGTERM)
	if code := a.wait(t, 30*time.Second); code != 143 && code != 0 {
		t.Errorf("writer A exit %d", code)
	}
	testutil.Eventually(t, 10*time.Second, "writer B holds the lease again", func() bool {
		l, ok, _ := remote.ReadLease(t.Context(), mustOpenFile(t, url), "db")
		return ok && l.Host == "writer-b"
	})
	_ = syscall.Kill(b.pid1(t), syscall.SIGTERM)
	b.wait(t, 30*time.Second)
	if _, ok, _ := remote.ReadLease(t.Context(), mustOpenFile(t, url), "db"); ok {
		t.Errorf("lease left on the remote after the last writer's clean exit")
	}
}

// TestCmdTakeover_Standalone: with no entrypoint running, `entrypoint
// takeover` deletes the leases whoever holds them and says so per remote;
// `--help` prints its usage.
func TestCmdTakeover_Standalone(t *testing.T) {
	root := t.TempDir()
	r1, r2 := filepath.Join(root, "r1"), filepath.Join(root, "r2")
	env := []string{"SNAPVISOR_NAME=db", "SNAPVISOR_REMOTES=file://" + r1 + ",file://" + r2,
		"SNAPVISOR_CONTROL_SOCKET=" + sockPath(t), "SNAPVISOR_SOURCE=" + filepath.Join(root, "data"), "SNAPVISOR_DIR=" + filepath.Join(root, "b")}
	holder := remote.Writer{Host: "old-node", Instance: "0123456789abcdef"}
	if _, err := remote.AcquireLease(t.Context(), mustOpenFile(t, "file://"+r1), "db", holder, time.Hour, time.Now()); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := entrypoint(t, env, "takeover")
	if code != 0 {
		t.Fatalf("takeover: exit %d: %s %s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "file://"+r1+": lease deleted") || !strings.Contains(lines[0], "old-node") ||
		!strings.HasPrefix(lines[1], "file://"+r2+": no lease to break") {
		t.Errorf("takeover printed %q", out)
	}
	if _, ok, _ := remote.ReadLease(t.Context(), mustOpenFile(t, "file://"+r1), "db"); ok {
		t.Errorf("lease still there")
	}
	code, out, _ = entrypoint(t, env, "takeover", "--json")
	var res []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res) != 2 {
		t.Errorf("takeover --json: exit %d: %s", code, out)
	}
	if code, out, _ := entrypoint(t, nil, "takeover", "--help"); code != 0 || !strings.Contains(out, "Usage: entrypoint takeover") {
		t.Errorf("takeover --help: exit %d: %s", code, out)
	}
	if code, out, _ := entrypoint(t, nil, "help"); code != 0 || !strings.Contains(out, "takeover") {
		t.Errorf("help does not list takeover: %s", out)
	}
	if code, _, errOut := entrypoint(t, []string{"SNAPVISOR_REMOTES=", "SNAPVISOR_CONTROL_SOCKET=" + sockPath(t)}, "takeover"); code != exitConfig || !strings.Contains(errOut, "SNAPVISOR_REMOTES") {
		t.Errorf("takeover without remotes: exit %d: %s", code, errOut)
	}
	if code, _, errOut := entrypoint(t, append(env, "SNAPVISOR_LEASE_TTL=0s"), "takeover"); code != exitConfig || !strings.Contains(errOut, "SNAPVISOR_LEASE_TTL") {
		t.Errorf("SNAPVISOR_LEASE_TTL=0s: exit %d: %s", code, errOut)
	}
}

func mustOpenFile(t *testing.T, url string) store.Store {
	t.Helper()
	s, err := store.Open(t.Context(), url, store.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
