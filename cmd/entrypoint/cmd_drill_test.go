//go:build !initonly

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapvisor/internal/testutil"
	"snapvisor/jobs"
	"snapvisor/store/storetest"
)

// drillSetup: data with a file, a local snapshot directory and a file://
// remote holding one snapshot (taken by `entrypoint snapshot`).
func drillSetup(t *testing.T, extra ...string) (env []string, data, remoteDir string) {
	t.Helper()
	root := t.TempDir()
	data, remoteDir = filepath.Join(root, "data"), filepath.Join(root, "remote")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	storetest.MustWrite(t, filepath.Join(data, "dump.rdb"), []byte("REDIS0011 precious"))
	env = append([]string{"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + filepath.Join(root, "backups"), "SNAPVISOR_NAME=db",
		"SNAPVISOR_REMOTES=file://" + remoteDir, "SNAPVISOR_CONTROL_SOCKET=" + sockPath(t),
		"SNAPVISOR_REMOTE_RETRIES=1", "SNAPVISOR_REMOTE_BACKOFF=10ms"}, extra...)
	if code, _, errOut := entrypoint(t, env, "snapshot"); code != 0 {
		t.Fatalf("snapshot: exit %d: %s", code, errOut)
	}
	return env, data, remoteDir
}

func TestCmdDrill(t *testing.T) {
	t.Run("StandaloneExitCodes", func(t *testing.T) {
		env, data, remoteDir := drillSetup(t, "SNAPVISOR_DRILL_COMMAND=grep -q precious $SNAPVISOR_DRILL_DIR/data/dump.rdb")
		url := "file://" + remoteDir
		code, out, errOut := entrypoint(t, env, "drill", "--from", url)
		if code != 0 || !strings.HasPrefix(out, "drill passed: db-") || !strings.Contains(out, url) {
			t.Fatalf("drill --from: exit %d: %s %s", code, out, errOut)
		}
		code, out, errOut = entrypoint(t, env, "drill", "--json")
		var res jobs.DrillResult
		if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || !res.OK() || res.Remote != url || res.Bytes == 0 {
			t.Fatalf("drill --json: exit %d, %v: %s %s", code, err, out, errOut)
		}

		// A remote without a snapshot, a failing command: exit 1.
		if code, out, errOut := entrypoint(t, env, "drill", "--from", "file://"+t.TempDir()); code != exitFailure || !strings.Contains(errOut, "no complete snapshot") {
			t.Errorf("drill of an empty remote: exit %d: %s %s", code, out, errOut)
		}
		if code, _, errOut := entrypoint(t, append(env, "SNAPVISOR_DRILL_COMMAND=exit 3"), "drill"); code != exitFailure || !strings.Contains(errOut, "SNAPVISOR_DRILL_COMMAND") {
			t.Errorf("drill with a failing command: exit %d: %s", code, errOut)
		}
		// A scratch directory inside the source: a configuration error.
		if code, _, errOut := entrypoint(t, append(env, "SNAPVISOR_DRILL_DIR="+filepath.Join(data, "x")), "drill"); code != exitConfig || !strings.Contains(errOut, "SNAPVISOR_DRILL_DIR") {
			t.Errorf("SNAPVISOR_DRILL_DIR inside the source: exit %d: %s", code, errOut)
		}
		// Altered after upload (same size, the old .sha256): exit 1.
		archives := snapshotsNamed(remoteDir, "db")
		p := filepath.Join(remoteDir, archives[0])
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		storetest.MustWrite(t, p, b)
		if code, _, errOut := entrypoint(t, env, "drill", "--from", url); code != exitFailure || !strings.Contains(errOut, "sha256") {
			t.Errorf("drill of an altered snapshot: exit %d: %s", code, errOut)
		}
		if ents, _ := os.ReadDir(filepath.Join(filepath.Dir(data), "backups", ".drill")); len(ents) != 0 {
			t.Errorf("scratch directory left: %v", ents)
		}
		if code, out, _ := entrypoint(t, nil, "help"); code != 0 || !strings.Contains(out, "drill") {
			t.Errorf("help does not list drill: %s", out)
		}
	})

	t.Run("RunningEntrypoint", func(t *testing.T) {
		addr := fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t))
		env, _, remoteDir := drillSetup(t, "SNAPVISOR_BACKUP=true", "SNAPVISOR_METRICS_ADDR="+addr,
			"SNAPVISOR_HEALTH_DRILL_MAX_AGE=1h", "SNAPVISOR_DRILL_COMMAND=test -s $SNAPVISOR_DRILL_DIR/data/dump.rdb")
		p := startPID1(t, env, "sleep", "1000")
		name := "file://" + remoteDir
		testutil.Eventually(t, 30*time.Second, "metrics answer", func() bool { return metric(addr, "snapvisor_snapshot_running") != "" })
		code, out, errOut := entrypoint(t, env, "drill")
		if code != 0 || !strings.HasPrefix(out, "drill passed") {
			t.Fatalf("drill via the control socket: exit %d: %s %s\n%s", code, out, errOut, p.stderr)
		}
		line := metric(addr, `snapvisor_drill_last_success_timestamp_seconds{remote="`+name+`"}`)
		if f := strings.Fields(line); len(f) != 2 || f[1] == "0" {
			t.Fatalf("metric after the drill: %q", line)
		}
		if ok := metric(addr, `snapvisor_drill_last_ok{remote="`+name+`"}`); !strings.HasSuffix(ok, " 1") {
			t.Fatalf("last_ok: %q", ok)
		}
		// Not one of the running entrypoint's remotes: refused, exit 1.
		if code, _, errOut := entrypoint(t, env, "drill", "--from", "file://"+t.TempDir()); code != exitFailure || !strings.Contains(errOut, "SNAPVISOR_REMOTES") {
			t.Errorf("drill --from another remote: exit %d: %s", code, errOut)
		}
		// A failing drill flips last_ok and health.
		archives := snapshotsNamed(remoteDir, "db")
		ap := filepath.Join(remoteDir, archives[0])
		b, _ := os.ReadFile(ap)
		b[len(b)/2] ^= 0xff
		storetest.MustWrite(t, ap, b)
		if code, _, _ := entrypoint(t, env, "drill"); code != exitFailure {
			t.Errorf("drill of an altered snapshot via the socket: exit %d", code)
		}
		if ok := metric(addr, `snapvisor_drill_last_ok{remote="`+name+`"}`); !strings.HasSuffix(ok, " 0") {
			t.Errorf("last_ok after a failed drill: %q", ok)
		}
		if ok, out := health(t, env); ok || !strings.Contains(out, "SNAPVISOR_HEALTH_DRILL_MAX_AGE") {
			t.Errorf("health after a failed drill: %v %s", ok, out)
		}
	})
}
