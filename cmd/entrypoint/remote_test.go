//go:build !initonly

package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapvisor/internal/testutil"
	"snapvisor/remote"

	"snapvisor/jobs"
	"snapvisor/store"
	"snapvisor/store/storetest"
)

// Remote stores end to end: the entrypoint binary (as PID 1 where it
// supervises) against a real MinIO started on 127.0.0.1 by storetest, which
// fails the test with CI=true when MinIO cannot be installed or started.

// remoteEnv is the environment for snapshots pushed to bucket/prefix on m.
func remoteEnv(m *storetest.MinIO, prefix string) []string {
	return append(m.Env(), "SNAPVISOR_REMOTES="+m.URL("snapvisor", prefix),
		"SNAPVISOR_REMOTE_RETRIES=2", "SNAPVISOR_REMOTE_BACKOFF=100ms")
}

// entrypoint runs the binary (not as PID 1) and returns its exit code, stdout and stderr.
func entrypoint(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	code := 0
	if err != nil {
		code = cmd.ProcessState.ExitCode()
	}
	return code, so.String(), se.String()
}

// remoteList is `entrypoint list --remote URL --json`.
func remoteList(t *testing.T, env []string, url string) []remote.Snapshot {
	t.Helper()
	code, out, errOut := entrypoint(t, env, "list", "--remote", url, "--json")
	if code != 0 {
		t.Fatalf("list --remote: exit %d: %s", code, errOut)
	}
	var list []remote.Snapshot
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list --remote --json: %v: %q", err, out)
	}
	return list
}

// entriesOf lists the names in dir.
func entriesOf(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// storyStores are the store kinds the full story runs on: S3 (MinIO) and
// the stores of the persistence document's external-storage and database
// schemes; the other kinds share their code paths with these above the Store
// interface, and their suites (store, remote) run on every kind.
var storyStores = map[string]bool{"s3": true, "redis": true, "postgres": true, "sqlite": true}

// TestEntrypoint_RemoteFullStory: PID 1 wrapping redis-server pushes its
// snapshot to a remote store; the data directory and the local snapshots are
// deleted (a new node, a new volume); started again, the entrypoint restores
// the data from that store before redis starts: redis's first answer is the
// data. It runs on each of storyStores.
func TestEntrypoint_RemoteFullStory(t *testing.T) {
	requireRoot(t)
	testutil.RequireTool(t, "redis-server")
	testutil.RequireTool(t, "redis-cli")
	ran := 0
	for _, k := range storetest.Backends {
		if !storyStores[k.Name] {
			continue
		}
		ran++
		t.Run(k.Name, func(t *testing.T) {
			b := k.Start(t)
			if b.Remote == nil {
				t.Fatalf("storetest backend %s has no Remote", k.Name)
			}
			url, benv := b.Remote(t, "redis")
			remoteFullStory(t, url, benv)
		})
	}
	if ran != len(storyStores) {
		t.Errorf("ran the story on %d stores, want %d (%v)", ran, len(storyStores), storyStores)
	}
}

// remoteFullStory is TestEntrypoint_RemoteFullStory on the remote url,
// reached with the environment benv.
func remoteFullStory(t *testing.T, url string, benv []string) {
	root := t.TempDir()
	data, backups := filepath.Join(root, "data"), filepath.Join(root, "backups")
	port := storetest.FreePort(t)
	env := append(benv, "SNAPVISOR_REMOTES="+url, "SNAPVISOR_REMOTE_RETRIES=2", "SNAPVISOR_REMOTE_BACKOFF=100ms",
		"SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@yearly", "SNAPVISOR_NAME=redis",
		"SNAPVISOR_SOURCE="+data, "SNAPVISOR_DIR="+backups, "SNAPVISOR_CONTROL_SOCKET="+sockPath(t),
		"SNAPVISOR_PRE_COMMAND="+redisBGSAVE(port))
	redis := redisArgv(t, port, data)
	p := startPID1(t, env, redis...)
	pid1 := p.pid1(t)
	writeKeys(t, port)
	res := clientSnapshot(t, env, "--json")
	var r jobs.Result
	if err := json.Unmarshal([]byte(res.out), &r); res.code != 0 || err != nil {
		t.Fatalf("snapshot: exit %d, %v: %s %s", res.code, err, res.out, res.stderr)
	}
	if len(r.Remotes) != 1 || r.Remotes[0].Error != "" {
		t.Fatalf("push result %+v, want one successful remote", r.Remotes)
	}
	_ = syscall.Kill(pid1, syscall.SIGTERM)
	if got := p.wait(t, 15*time.Second); got != 0 {
		t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
	}
	list := remoteList(t, env, url)
	if len(list) != 1 || list[0].Key != r.Snapshot {
		t.Fatalf("%s holds %+v, want %s", url, list, r.Snapshot)
	}

	// The node is gone: no data, no local snapshots.
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(backups); err != nil {
		t.Fatal(err)
	}
	p = startPID1(t, env, redis...)
	pid1 = p.pid1(t)
	requireRestoredFirst(t, port, 30*time.Second)
	// With a snapshot directory the download stays as the local snapshot.
	if got := snapshotsNamed(backups, "redis"); len(got) != 1 || got[0] != r.Snapshot {
		t.Errorf("local snapshots after the restore: %v, want %s", got, r.Snapshot)
	}
	_ = syscall.Kill(pid1, syscall.SIGTERM)
	if got := p.wait(t, 15*time.Second); got != 0 {
		t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
	}
}

// snapshotsNamed lists the complete snapshot archives named name-* in dir.
func snapshotsNamed(dir, name string) []string {
	var out []string
	for _, n := range entriesOf(dir) {
		if strings.HasPrefix(n, name+"-") && !strings.HasSuffix(n, ".sha256") && !strings.HasPrefix(n, ".") {
			if _, err := os.Stat(filepath.Join(dir, n+".sha256")); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// TestEntrypoint_StreamingMode: with SNAPVISOR_DIR empty, snapshots go
// straight to MinIO and no file appears locally; an empty data directory is
// restored from MinIO through a temporary download beside it, deleted after.
func TestEntrypoint_StreamingMode(t *testing.T) {
	requireRoot(t)
	m := storetest.StartMinIO(t)
	root := t.TempDir()
	data := filepath.Join(root, "data")
	writeSlowData(t, data, 2)
	if err := os.WriteFile(filepath.Join(data, "marker"), []byte("streamed"), 0o644); err != nil {
		t.Fatal(err)
	}
	url := m.URL("snapvisor", "stream")
	sock := sockPath(t)
	env := append(remoteEnv(m, "stream"), "SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@yearly", "SNAPVISOR_MIN_INTERVAL=0",
		"SNAPVISOR_SOURCE="+data, "SNAPVISOR_DIR=", "SNAPVISOR_CONTROL_SOCKET="+sock, "SNAPVISOR_COMPRESSION=zstd")

	p := startPID1(t, env, "--", "sleep", "1000")
	pid1 := p.pid1(t)
	testutil.Eventually(t, 5*time.Second, "control socket", func() bool { _, err := os.Stat(sock); return err == nil })
	var names []string
	for i := 0; i < 2; i++ { // two runs in a row get distinct names
		res := clientSnapshot(t, env, "--json")
		var r jobs.Result
		if err := json.Unmarshal([]byte(res.out), &r); res.code != 0 || err != nil || len(r.Remotes) != 1 || r.Remotes[0].Error != "" {
			t.Fatalf("snapshot: exit %d, %v: %s %s", res.code, err, res.out, res.stderr)
		}
		names = append(names, r.Snapshot)
	}
	if names[0] == names[1] {
		t.Errorf("two streamed snapshots share the name %s", names[0])
	}
	if got := entriesOf(root); len(got) != 1 || got[0] != "data" {
		t.Errorf("local entries beside the data: %v, want only data (nothing written locally)", got)
	}
	if list := remoteList(t, env, url); len(list) != 2 || list[0].Key != names[1] {
		t.Errorf("MinIO holds %+v, want %v newest first", list, names)
	}
	_ = syscall.Kill(pid1, syscall.SIGTERM)
	if got := p.wait(t, 15*time.Second); got != 128+15 {
		t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
	}

	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(root, "service-saw")
	// Written aside and renamed: the marker appears complete or not at all.
	p = startPID1(t, env, "--", "sh", "-c", "cat "+filepath.Join(data, "marker")+" > "+marker+".tmp; mv "+marker+".tmp "+marker+"; exec sleep 1000")
	pid1 = p.pid1(t)
	testutil.Eventually(t, 30*time.Second, "the service started", func() bool { return fileHas(marker, "") && len(entriesOf(root)) >= 2 })
	if b, _ := os.ReadFile(marker); string(b) != "streamed" {
		t.Errorf("the service saw %q in its data, want the restored marker", b)
	}
	if got := entriesOf(root); len(got) != 2 { // data and the test's marker: the download is gone
		t.Errorf("beside the data after the restore: %v", got)
	}
	_ = syscall.Kill(pid1, syscall.SIGTERM)
	p.wait(t, 15*time.Second)
}

// TestEntrypoint_ListRemoteRestoreFrom: list --remote and restore --from
// against MinIO, with snapshots taken by the standalone `entrypoint snapshot`
// in streaming mode; restore --from latest skips a snapshot that does not verify.
func TestEntrypoint_ListRemoteRestoreFrom(t *testing.T) {
	m := storetest.StartMinIO(t)
	root := t.TempDir()
	data := filepath.Join(root, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	version := filepath.Join(data, "version")
	url := m.URL("snapvisor", "cli")
	env := append(remoteEnv(m, "cli"), "SNAPVISOR_SOURCE="+data, "SNAPVISOR_DIR=",
		"SNAPVISOR_CONTROL_SOCKET="+filepath.Join(root, "none.sock"), "SNAPVISOR_NAME=cli")

	var keys []string
	for _, v := range []string{"v1", "v2"} {
		if err := os.WriteFile(version, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := entrypoint(t, env, "snapshot")
		if code != 0 || !strings.Contains(out, "cli-") {
			t.Fatalf("standalone streamed snapshot: exit %d: %s %s", code, out, errOut)
		}
		keys = append(keys, filepath.Base(strings.TrimSpace(out)))
	}
	if got := entriesOf(root); len(got) != 1 {
		t.Errorf("local entries %v: the standalone streamed snapshot wrote locally", got)
	}

	t.Run("list --remote", func(t *testing.T) {
		list := remoteList(t, env, url)
		if len(list) != 2 || list[0].Key != keys[1] || list[1].Key != keys[0] || list[0].Size == 0 || list[0].Remote == "" {
			t.Fatalf("list --remote --json = %+v, want %v newest first", list, keys)
		}
		code, out, _ := entrypoint(t, env, "list", "--remote", url)
		if code != 0 || !strings.HasPrefix(out, "NAME") || strings.Index(out, keys[1]) > strings.Index(out, keys[0]) {
			t.Errorf("list --remote: exit %d:\n%s", code, out)
		}
	})
	t.Run("restore --from latest and NAME", func(t *testing.T) {
		if err := os.WriteFile(version, []byte("changed"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := entrypoint(t, env, "restore", "--from", url, "--discard-current")
		if b, _ := os.ReadFile(version); code != 0 || string(b) != "v2" || strings.TrimSpace(out) != keys[1] {
			t.Fatalf("restore --from latest: exit %d, %q, data %q: %s", code, out, b, errOut)
		}
		code, _, errOut = entrypoint(t, env, "restore", "--discard-current", "--from", url, keys[0])
		if b, _ := os.ReadFile(version); code != 0 || string(b) != "v1" {
			t.Fatalf("restore --from NAME: exit %d, data %q: %s", code, b, errOut)
		}
		if got := entriesOf(root); len(got) != 1 {
			t.Errorf("beside the data after restores: %v (downloads must be deleted)", got)
		}
	})
	t.Run("restore --from latest skips a snapshot that does not verify", func(t *testing.T) {
		s, err := store.Open(context.Background(), url, store.Config{S3AccessKey: storetest.MinIOUser, S3SecretKey: storetest.MinIOPassword}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		garbage := strings.Repeat("not an archive ", 100)
		if err := s.Put(context.Background(), keys[1], strings.NewReader(garbage), int64(len(garbage))); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := entrypoint(t, env, "restore", "--from", url, "--discard-current", "latest")
		if b, _ := os.ReadFile(version); code != 0 || string(b) != "v1" || strings.TrimSpace(out) != keys[0] {
			t.Fatalf("restore --from latest over a corrupt newest: exit %d, %q, data %q: %s", code, out, b, errOut)
		}
		code, _, errOut = entrypoint(t, env, "restore", "--from", url, keys[1])
		if code != exitFailure || !strings.Contains(errOut, "checksum") {
			t.Errorf("restore --from a corrupt NAME: exit %d: %s", code, errOut)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			code int
			want string
		}{
			{"bad URL", []string{"list", "--remote", "ftp://x/y"}, exitConfig, "SNAPVISOR_REMOTES"},
			{"password in the URL", []string{"list", "--remote", "sftp://u:secret-Xy7Qz@h/p"}, exitConfig, "SNAPVISOR_SFTP_PASSWORD"},
			{"unreachable", []string{"restore", "--from", "s3://snapvisor/x?endpoint=" + storetest.DeadAddr(t) + "&tls=false"}, exitFailure, "could not be listed"},
			{"path as NAME", []string{"restore", "--from", url, "/tmp/x.tar.gz"}, exitUsage, "not a path"},
			{"local list in streaming mode", []string{"list"}, exitUsage, "list --remote"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, _, errOut := entrypoint(t, env, tc.args...)
				if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "secret-Xy7Qz") {
					t.Errorf("exit %d, want %d mentioning %q: %s", code, tc.code, tc.want, errOut)
				}
			})
		}
	})
}

// TestEntrypoint_RemoteConfigAndStart: streaming mode without a remote is a
// configuration error naming both variables; a remote that cannot be read at
// start, with an empty data directory, stops the start (the service must not
// run on empty data while its snapshots may be out there).
func TestEntrypoint_RemoteConfigAndStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     []string
		code    int
		mention []string
	}{
		{"streaming without remotes", []string{"SNAPVISOR_DIR="}, exitConfig, []string{"SNAPVISOR_DIR", "SNAPVISOR_REMOTES"}},
		{"remote down at start", []string{"SNAPVISOR_DIR=", "SNAPVISOR_REMOTE_RETRIES=1", "SNAPVISOR_REMOTE_BACKOFF=10ms",
			"SNAPVISOR_REMOTES=s3://snapvisor/x?endpoint=" + storetest.DeadAddr(t) + "&tls=false&region=us-east-1",
			"AWS_ACCESS_KEY_ID=k", "AWS_SECRET_ACCESS_KEY=s"}, exitFailure, []string{"could not be listed", "SNAPVISOR_RESTORE=never"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			marker := filepath.Join(root, "started")
			env := append([]string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_SOURCE=" + filepath.Join(root, "data"),
				"SNAPVISOR_CONTROL_SOCKET=" + filepath.Join(root, "ctl.sock")}, tc.env...)
			p := start(t, env, binPath, "--", "touch", marker)
			if got := p.wait(t, 30*time.Second); got != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", got, tc.code, p.stderr)
			}
			for _, s := range tc.mention {
				if !strings.Contains(p.stderr.String(), s) {
					t.Errorf("error does not mention %s:\n%s", s, p.stderr)
				}
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the service started")
			}
		})
	}
}
