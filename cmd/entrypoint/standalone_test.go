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
	"snapvisor/jobs"
	"snapvisor/remote"
)

// TestCmdSnapshot_Standalone is item 17: `entrypoint snapshot` with no
// entrypoint running (a CronJob, docker run --rm) runs the pipeline of a
// scheduled run: hooks, push to the remotes, rotation local and remote;
// freezing is refused, a failed push is a failure.
func TestCmdSnapshot_Standalone(t *testing.T) {
	setup := func(t *testing.T, extra ...string) (env []string, data, backups, remote, hooks string) {
		root := t.TempDir()
		data, backups, remote = filepath.Join(root, "data"), filepath.Join(root, "backups"), filepath.Join(root, "remote")
		hooks = filepath.Join(root, "hooks")
		if err := os.MkdirAll(data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "f"), []byte("precious"), 0o644); err != nil {
			t.Fatal(err)
		}
		env = append([]string{"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + backups, "SNAPVISOR_REMOTES=file://" + remote,
			"SNAPVISOR_KEEP=2", "SNAPVISOR_CONTROL_SOCKET=" + filepath.Join(root, "none.sock"),
			"SNAPVISOR_PRE_COMMAND=echo pre >> " + hooks, "SNAPVISOR_POST_COMMAND=echo post >> " + hooks,
			"SNAPVISOR_REMOTE_RETRIES=1", "SNAPVISOR_REMOTE_BACKOFF=10ms"}, extra...)
		return env, data, backups, remote, hooks
	}

	t.Run("PushRotateHooks", func(t *testing.T) {
		env, _, backups, remoteDir, hooks := setup(t)
		var paths []string
		for range 3 {
			code, out, errOut := entrypoint(t, env, "snapshot")
			if code != 0 {
				t.Fatalf("snapshot: exit %d: %s", code, errOut)
			}
			p := strings.TrimSpace(out)
			if filepath.Dir(p) != backups {
				t.Fatalf("snapshot printed %q, want one path in %s", out, backups)
			}
			paths = append(paths, filepath.Base(p))
		}
		local, remoteSnaps := snapshotsNamed(backups, "snapshot"), snapshotsNamed(remoteDir, "snapshot")
		want := paths[1:] // KEEP=2: the newest two
		if strings.Join(local, " ") != strings.Join(want, " ") {
			t.Errorf("local snapshots %v, want %v (rotated to SNAPVISOR_KEEP)", local, want)
		}
		if strings.Join(remoteSnaps, " ") != strings.Join(want, " ") {
			t.Errorf("remote snapshots %v, want %v (pushed and rotated to SNAPVISOR_KEEP)", remoteSnaps, want)
		}
		// A CronJob's next pod is another writer: a finished standalone run
		// leaves no lease that would refuse it for SNAPVISOR_LEASE_TTL.
		if _, ok, err := remote.ReadLease(t.Context(), mustOpenFile(t, "file://"+remoteDir), "snapshot"); ok || err != nil {
			t.Errorf("lease left on the remote after a standalone snapshot (err %v)", err)
		}
		if b, _ := os.ReadFile(hooks); string(b) != strings.Repeat("pre\npost\n", 3) {
			t.Errorf("hooks ran: %q, want pre and post for each snapshot", b)
		}

		code, out, errOut := entrypoint(t, env, "snapshot", "--json")
		var res jobs.Result
		if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || !res.OK() || res.Reason != jobs.ReasonStandalone ||
			len(res.Remotes) != 1 || res.Remotes[0].Error != "" {
			t.Fatalf("snapshot --json: exit %d, %v: %s %s", code, err, out, errOut)
		}
	})

	t.Run("StreamingMode", func(t *testing.T) {
		env, _, _, remote, _ := setup(t, "SNAPVISOR_DIR=", "SNAPVISOR_ENCRYPTION=aes256-gcm", "SNAPVISOR_ENCRYPTION_KEY="+testKey(t))
		var names []string
		for range 3 {
			code, out, errOut := entrypoint(t, env, "snapshot")
			if code != 0 || !strings.HasPrefix(strings.TrimSpace(out), "file://"+remote+"/snapshot-") || strings.Count(out, "\n") != 1 {
				t.Fatalf("streamed snapshot: exit %d, printed %q: %s", code, out, errOut)
			}
			names = append(names, filepath.Base(strings.TrimSpace(out)))
		}
		got := snapshotsNamed(remote, "snapshot")
		if strings.Join(got, " ") != strings.Join(names[1:], " ") || !strings.HasSuffix(got[0], ".aes256gcm") {
			t.Errorf("remote snapshots %v, want the newest two encrypted ones of %v", got, names)
		}
	})

	t.Run("FreezeRefused", func(t *testing.T) {
		for _, freeze := range []string{"pause", "stop"} {
			env, _, backups, _, hooks := setup(t, "SNAPVISOR_FREEZE="+freeze)
			code, _, errOut := entrypoint(t, env, "snapshot")
			if code != exitConfig || !strings.Contains(errOut, "SNAPVISOR_FREEZE") || !strings.Contains(errOut, "SNAPVISOR_FREEZE=none") {
				t.Errorf("FREEZE=%s standalone: exit %d, want 78 naming SNAPVISOR_FREEZE and what to do: %s", freeze, code, errOut)
			}
			if got := snapshotsNamed(backups, "snapshot"); len(got) > 0 {
				t.Errorf("FREEZE=%s standalone wrote %v", freeze, got)
			}
			if _, err := os.Stat(hooks); err == nil {
				t.Errorf("FREEZE=%s standalone ran the hooks", freeze)
			}
		}
	})

	t.Run("FailedPush", func(t *testing.T) {
		env, _, backups, _, _ := setup(t)
		blocker := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(blocker, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		env = append(env, "SNAPVISOR_REMOTES=file://"+filepath.Join(blocker, "remote"))
		code, out, errOut := entrypoint(t, env, "snapshot")
		if code != exitFailure || !strings.Contains(errOut, "remote") {
			t.Errorf("snapshot with a failing remote: exit %d, want 1 with a message: %s", code, errOut)
		}
		if got := snapshotsNamed(backups, "snapshot"); len(got) != 1 || strings.TrimSpace(out) != filepath.Join(backups, got[0]) {
			t.Errorf("local snapshots %v, printed %q: the local snapshot is kept and its path printed", got, out)
		}
	})
}

// entrypointWithin is entrypoint with a time limit: a hang is a failure, not a stuck test.
func entrypointWithin(t *testing.T, within time.Duration, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("entrypoint %v did not finish within %v: %s", args, within, se.String())
	}
	code := 0
	if err != nil {
		code = cmd.ProcessState.ExitCode()
	}
	return code, so.String(), se.String()
}

// TestEntrypoint_FutureSnapshot is finding 3 as PID 1: with a snapshot named
// an hour ahead in SNAPVISOR_DIR, `entrypoint snapshot` answers promptly,
// health counts the new snapshot, not the future one, and the exit is prompt.
func TestEntrypoint_FutureSnapshot(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	data, backups := filepath.Join(root, "data"), filepath.Join(root, "backups")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "f"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := sockPath(t)
	env := []string{"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + backups, "SNAPVISOR_CONTROL_SOCKET=" + sock}
	code, out, errOut := entrypointWithin(t, 30*time.Second, env, "snapshot")
	if code != 0 {
		t.Fatalf("snapshot: exit %d: %s", code, errOut)
	}
	first := strings.TrimSpace(out)
	future := "snapshot-" + time.Now().UTC().Add(time.Hour).Format("20060102T150405Z") + ".tar.gz"
	copyAs(t, first, future)
	if err := os.Remove(first); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(first + ".sha256"); err != nil {
		t.Fatal(err)
	}

	env = append(env, "SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@every 2s", "SNAPVISOR_MIN_INTERVAL=0")
	p := startPID1(t, env, "--", "sleep", "1000")
	pid1 := p.pid1(t)
	testutil.Eventually(t, 10*time.Second, "control socket", func() bool { _, err := os.Stat(sock); return err == nil })
	code, out, errOut = entrypointWithin(t, 15*time.Second, env, "snapshot", "--json")
	var res jobs.Result
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || !res.OK() || res.Snapshot == future {
		t.Fatalf("snapshot with a future-dated one in DIR: exit %d, %v: %s %s", code, err, out, errOut)
	}
	code, out, errOut = entrypointWithin(t, 15*time.Second, env, "status", "--json")
	var st jobs.Status
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.LastGood == nil || st.LastGood.Snapshot == future {
		t.Fatalf("status: exit %d, %v: %s %s; want a last good snapshot that is not the future one", code, err, out, errOut)
	}
	if !strings.Contains(p.stderr.String(), future) || !strings.Contains(p.stderr.String(), "clock may have been stepped back") {
		t.Errorf("no warning naming %s:\n%s", future, p.stderr)
	}
	start := time.Now()
	_ = syscall.Kill(pid1, syscall.SIGTERM)
	if got := p.wait(t, 20*time.Second); got != 128+15 {
		t.Fatalf("exit %d, want 143; stderr:\n%s", got, p.stderr)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("exit took %v", d)
	}
}

// TestEntrypoint_MinInterval is finding 6 as PID 1: 8 `entrypoint snapshot`
// in a row with FREEZE=stop are one snapshot and one restart of the service.
func TestEntrypoint_MinInterval(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	data, backups, starts := filepath.Join(root, "data"), filepath.Join(root, "backups"), filepath.Join(root, "starts")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "f"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := sockPath(t)
	env := []string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@yearly", "SNAPVISOR_FREEZE=stop", "SNAPVISOR_KEEP=7",
		"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + backups, "SNAPVISOR_CONTROL_SOCKET=" + sock}
	p := startPID1(t, env, "--", "sh", "-c", `echo started >> `+starts+`; trap "exit 0" TERM; while :; do sleep 0.1; done`)
	pid1 := p.pid1(t)
	testutil.Eventually(t, 10*time.Second, "control socket", func() bool { _, err := os.Stat(sock); return err == nil })
	var outs []string
	for i := range 8 {
		code, out, errOut := entrypointWithin(t, 30*time.Second, env, "snapshot")
		if code != 0 {
			t.Fatalf("snapshot %d: exit %d: %s", i+1, code, errOut)
		}
		outs = append(outs, out)
	}
	if got := snapshots(t, backups); len(got) != 1 {
		t.Errorf("%d snapshots after 8 requests in a row, want 1: %v", len(got), got)
	}
	for i, out := range outs[1:] {
		if !strings.HasPrefix(out, filepath.Join(backups, "snapshot-")) || !strings.Contains(out, "SNAPVISOR_MIN_INTERVAL") {
			t.Errorf("snapshot %d printed %q, want the previous path and a note on SNAPVISOR_MIN_INTERVAL", i+2, out)
		}
	}
	if b, _ := os.ReadFile(starts); strings.Count(string(b), "started") != 2 {
		t.Errorf("the service started %d times, want 2 (the start and one restart)", strings.Count(string(b), "started"))
	}
	_ = syscall.Kill(pid1, syscall.SIGTERM)
	if got := p.wait(t, 15*time.Second); got != 0 {
		t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
	}
}
