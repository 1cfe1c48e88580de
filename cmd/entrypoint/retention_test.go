//go:build !initonly

package main

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapvisor/internal/testutil"
	"snapvisor/jobs"
)

// statusOf is `entrypoint status --json` of the running entrypoint (zero when it does not answer).
func statusOf(t *testing.T, env []string) jobs.Status {
	t.Helper()
	var st jobs.Status
	if code, out, _ := entrypoint(t, env, "status", "--json"); code == 0 {
		_ = json.Unmarshal([]byte(out), &st)
	}
	return st
}

// TestEntrypoint_ShrinkGuard is the fresh-volume story of the rotation: good
// snapshots here and on a file:// remote, then the entrypoint restarted on an
// empty source without auto-restore, snapshotting every second with KEEP=2:
// every good snapshot survives the runs, locally and on the remote, and health
// fails; with SNAPVISOR_ALLOW_SHRINK=true they are rotated away as usual.
func TestEntrypoint_ShrinkGuard(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	data, backups, remote := filepath.Join(root, "data"), filepath.Join(root, "backups"), filepath.Join(root, "remote")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	precious := make([]byte, 1<<20)
	_, _ = rand.Read(precious)
	if err := os.WriteFile(filepath.Join(data, "db"), precious, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@every 1s", "SNAPVISOR_KEEP=2",
		"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + backups, "SNAPVISOR_REMOTES=file://" + remote,
		"SNAPVISOR_CONTROL_SOCKET=" + sockPath(t), "SNAPVISOR_RESTORE=never", "SNAPVISOR_HEALTH_MAX_AGE=1m",
	}
	service := []string{"--", "sh", "-c", `trap 'exit 0' TERM; while :; do sleep 0.1; done`}
	// runFor starts the entrypoint with extra, waits until it has finished
	// runs snapshots and cond holds, and stops it.
	runFor := func(t *testing.T, extra []string, runs int, what string, cond func() bool) {
		t.Helper()
		env := append(slices.Clone(env), extra...)
		p := startPID1(t, env, service...)
		pid1 := p.pid1(t)
		testutil.Eventually(t, 60*time.Second, what, func() bool { return statusOf(t, env).Runs >= runs && cond() })
		_ = syscall.Kill(pid1, syscall.SIGTERM)
		if got := p.wait(t, 30*time.Second); got != 0 {
			t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
		}
	}

	// The old node: good snapshots here and on the remote.
	runFor(t, nil, 3, "good snapshots here and on the remote", func() bool {
		return len(snapshots(t, backups)) == 2 && len(snapshots(t, remote)) == 2
	})
	goodLocal, goodRemote := snapshots(t, backups), snapshots(t, remote)
	if len(goodLocal) != 2 || !slices.Equal(goodLocal, goodRemote) {
		t.Fatalf("good snapshots: local %v, remote %v; want the same 2", goodLocal, goodRemote)
	}

	// A fresh volume: the source is empty, auto-restore is off.
	if err := os.Remove(filepath.Join(data, "db")); err != nil {
		t.Fatal(err)
	}
	t.Run("empty source: every good snapshot kept, health fails", func(t *testing.T) {
		env := append(slices.Clone(env), "SNAPVISOR_ALLOW_SHRINK=false")
		p := startPID1(t, env, service...)
		pid1 := p.pid1(t)
		testutil.Eventually(t, 60*time.Second, "5 snapshots of the empty source", func() bool { return statusOf(t, env).Runs >= 5 })
		code, out, errOut := entrypoint(t, env, "health")
		if code != 1 || !strings.Contains(out+errOut, "SNAPVISOR_ALLOW_SHRINK") {
			t.Errorf("health: exit %d, %q %q; want 1 naming SNAPVISOR_ALLOW_SHRINK", code, out, errOut)
		}
		_ = syscall.Kill(pid1, syscall.SIGTERM)
		if got := p.wait(t, 30*time.Second); got != 0 {
			t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
		}
		for where, dir := range map[string]string{"locally": backups, "on the remote": remote} {
			got := snapshots(t, dir)
			for _, g := range goodLocal {
				if !slices.Contains(got, g) {
					t.Errorf("good snapshot %s deleted %s: %v", g, where, got)
				}
			}
			if len(got) != 4 {
				t.Errorf("%s: %v, want the 2 good and KEEP=2 empty ones", where, got)
			}
		}
		if !strings.Contains(p.stderr.String(), "empty or shrunk source") {
			t.Errorf("no warning about the empty source; stderr:\n%s", p.stderr)
		}
	})

	t.Run("SNAPVISOR_ALLOW_SHRINK=true: rotated as usual, healthy", func(t *testing.T) {
		env := append(slices.Clone(env), "SNAPVISOR_ALLOW_SHRINK=true")
		p := startPID1(t, env, service...)
		pid1 := p.pid1(t)
		gone := func(dir string) bool {
			got := snapshots(t, dir)
			return len(got) == 2 && !slices.Contains(got, goodLocal[0]) && !slices.Contains(got, goodLocal[1])
		}
		testutil.Eventually(t, 60*time.Second, "good snapshots rotated away here and on the remote", func() bool {
			return statusOf(t, env).Runs >= 1 && gone(backups) && gone(remote)
		})
		if code, out, errOut := entrypoint(t, env, "health"); code != 0 {
			t.Errorf("health: exit %d, %q %q; want 0", code, out, errOut)
		}
		_ = syscall.Kill(pid1, syscall.SIGTERM)
		if got := p.wait(t, 30*time.Second); got != 0 {
			t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
		}
	})
}

func TestEntrypoint_InvalidRetentionConfig(t *testing.T) {
	for _, tc := range []struct{ name, env, mention string }{
		{"invalid rotate before", "SNAPVISOR_ROTATE_BEFORE=always", "SNAPVISOR_ROTATE_BEFORE"},
		{"invalid allow shrink", "SNAPVISOR_ALLOW_SHRINK=perhaps", "SNAPVISOR_ALLOW_SHRINK"},
		{"invalid max age, shown as written", "SNAPVISOR_MAX_AGE=30 days", `SNAPVISOR_MAX_AGE="30 days" is invalid`},
		{"invalid key rotation, shown as written", "SNAPVISOR_KEY_ROTATION=12 w", `SNAPVISOR_KEY_ROTATION="12 w" is invalid`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "started")
			env := []string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_DIR=" + t.TempDir(), "SNAPVISOR_CONTROL_SOCKET=" + sockPath(t), tc.env}
			p := start(t, env, binPath, "--", "touch", marker)
			if got := p.wait(t, 10*time.Second); got != exitConfig {
				t.Fatalf("exit %d, want 78; stderr:\n%s", got, p.stderr)
			}
			if !strings.Contains(p.stderr.String(), tc.mention) {
				t.Errorf("error does not name %s:\n%s", tc.mention, p.stderr)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("service started despite the configuration error")
			}
		})
	}
}
