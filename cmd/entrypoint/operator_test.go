//go:build !initonly

package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"snapvisor/internal/testutil"
)

// bigData writes n MiB of incompressible files into dir, so that a snapshot
// or a restore lasts several progress redraws.
func bigData(t *testing.T, dir string, mib int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/dev/urandom")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := range mib {
		b := make([]byte, 1<<20)
		if _, err := io.ReadFull(f, b); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "blob"+string(rune('a'+i%26))+strings.Repeat("x", i/26)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// onPTY runs the binary with stdout and stderr on a new pseudo-terminal and
// returns its exit code and everything the terminal showed.
func onPTY(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	master, slave := openPTY(t)
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	var out bytes.Buffer
	var mu sync.Mutex
	read := make(chan struct{})
	go func() {
		defer close(read)
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			mu.Lock()
			out.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	slave.Close()
	// The reader ends with EIO once the slave side is closed and drained.
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("the terminal's output did not drain")
	}
	code := 0
	if err != nil {
		code = cmd.ProcessState.ExitCode()
	}
	mu.Lock()
	defer mu.Unlock()
	return code, out.String()
}

// TestEntrypoint_Progress: at a terminal, snapshot, verify and restore draw
// a live progress line with the phase, the bytes and (where the total is
// known) the percentage, ending in its final state; --no-progress, --json
// and a stdout that is not a terminal draw none.
func TestEntrypoint_Progress(t *testing.T) {
	root := t.TempDir()
	data, backups := filepath.Join(root, "data"), filepath.Join(root, "backups")
	bigData(t, data, 48)
	env := []string{"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + backups, "SNAPVISOR_CONTROL_SOCKET=" + sockPath(t),
		"SNAPVISOR_COMPRESSION_LEVEL=9"}

	code, screen := onPTY(t, env, "snapshot")
	if code != 0 {
		t.Fatalf("snapshot at a terminal: exit %d\n%s", code, screen)
	}
	if !strings.Contains(screen, "snapshot") || !strings.Contains(screen, "MiB") {
		t.Errorf("snapshot at a terminal shows no progress line with bytes:\n%q", screen)
	}
	t.Logf("snapshot at a terminal:\n%s", screen)

	code, screen = onPTY(t, env, "verify")
	if code != 0 {
		t.Fatalf("verify at a terminal: exit %d\n%s", code, screen)
	}
	if !strings.Contains(screen, "verify snapshot-") || !strings.Contains(screen, "100%") {
		t.Errorf("verify at a terminal: no progress line ending at 100%%:\n%q", screen)
	}

	target := filepath.Join(root, "inspect")
	code, screen = onPTY(t, env, "restore", "--target", target)
	if code != 0 {
		t.Fatalf("restore --target at a terminal: exit %d\n%s", code, screen)
	}
	if !strings.Contains(screen, "restore snapshot-") || !strings.Contains(screen, "100%") {
		t.Errorf("restore at a terminal: no progress line ending at 100%%:\n%q", screen)
	}
	testutil.SameTree(t, data, filepath.Join(target, "data"))

	t.Run("off", func(t *testing.T) {
		for _, args := range [][]string{{"verify", "--no-progress"}, {"snapshot", "--json"}} {
			code, screen := onPTY(t, env, args...)
			if code != 0 {
				t.Fatalf("%v: exit %d\n%s", args, code, screen)
			}
			if strings.Contains(screen, "MiB") || strings.Contains(screen, "%") {
				t.Errorf("%v at a terminal drew progress:\n%q", args, screen)
			}
		}
		// Not a terminal: nothing but the result.
		code, out, errOut := entrypoint(t, env, "verify")
		if code != 0 || strings.Contains(out+errOut, "%") || strings.Contains(out+errOut, "\r") {
			t.Errorf("verify without a terminal: exit %d, output %q %q", code, out, errOut)
		}
	})
}

// TestEntrypoint_RestoreTarget: restore --target DIR extracts into DIR,
// never touching the data; DIR must be empty or absent and apart from the
// sources.
func TestEntrypoint_RestoreTarget(t *testing.T) {
	root := t.TempDir()
	data, backups, remoteDir := filepath.Join(root, "data"), filepath.Join(root, "backups"), filepath.Join(root, "remote")
	testutil.RichTree(t, data)
	env := []string{"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + backups, "SNAPVISOR_CONTROL_SOCKET=" + sockPath(t),
		"SNAPVISOR_REMOTES=file://" + remoteDir}
	if code, _, errOut := entrypoint(t, env, "snapshot"); code != 0 {
		t.Fatalf("snapshot: exit %d: %s", code, errOut)
	}
	snapped := testutil.TreeState(t, data)
	// The data changes after the snapshot: restoring elsewhere must not undo it.
	if err := os.WriteFile(filepath.Join(data, "after.txt"), []byte("written after the snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	current := testutil.TreeState(t, data)

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"local", nil},
		{"fromRemote", []string{"--from", "file://" + remoteDir}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(root, "inspect-"+tc.name, "deeper")
			code, out, errOut := entrypoint(t, env, append(append([]string{"restore", "--target", target}, tc.args...), "latest")...)
			if code != 0 {
				t.Fatalf("restore --target: exit %d: %s", code, errOut)
			}
			if !strings.Contains(out, "snapshot-") {
				t.Errorf("restore --target printed %q, want the snapshot's name", out)
			}
			testutil.SameState(t, snapped, testutil.TreeState(t, filepath.Join(target, "data")))
			testutil.SameState(t, current, testutil.TreeState(t, data))
			if ents, _ := os.ReadDir(target); len(ents) != 1 {
				t.Errorf("target holds %d entries, want only data/: %v", len(ents), ents)
			}
			if m, _ := filepath.Glob(data + ".pre-restore-*"); len(m) > 0 {
				t.Errorf("restore --target set the data aside: %v", m)
			}
		})
	}

	t.Run("refused", func(t *testing.T) {
		full := filepath.Join(root, "full")
		if err := os.MkdirAll(full, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(full, "keep.txt"), []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, target := range []string{full, filepath.Join(data, "sub"), root} {
			code, _, errOut := entrypoint(t, env, "restore", "--target", target)
			if code != exitUsage {
				t.Errorf("restore --target %s: exit %d, want %d: %s", target, code, exitUsage, errOut)
			}
			if !strings.Contains(errOut, "--target") {
				t.Errorf("restore --target %s: the error does not name the flag: %s", target, errOut)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(full, "keep.txt")); string(b) != "mine" {
			t.Error("a refused restore --target touched the directory")
		}
		testutil.SameState(t, current, testutil.TreeState(t, data))
	})

	t.Run("failedLeavesNothing", func(t *testing.T) {
		target := filepath.Join(root, "nothing")
		code, _, errOut := entrypoint(t, env, "restore", "--target", target, "snapshot-20000101T000000Z.tar.gz")
		if code == 0 {
			t.Fatalf("restore of a missing snapshot succeeded: %s", errOut)
		}
		if _, err := os.Stat(target); err == nil {
			t.Error("a failed restore --target left the directory it created")
		}
	})
}

// TestEntrypoint_Sidecar: `entrypoint sidecar` runs the jobs with no
// service (a snapshot on request through its control socket, health), ends
// with 0 on TERM, and refuses a freeze (78). `entrypoint restore-if-empty`
// restores into an empty data directory and exits 0, and exits 0 with
// nothing to do when the data is there or no snapshot exists.
func TestEntrypoint_Sidecar(t *testing.T) {
	root := t.TempDir()
	data, backups := filepath.Join(root, "data"), filepath.Join(root, "backups")
	testutil.RichTree(t, data)
	sock := sockPath(t)
	env := []string{"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + backups, "SNAPVISOR_CONTROL_SOCKET=" + sock,
		"SNAPVISOR_SCHEDULE=@yearly", "SNAPVISOR_PRE_COMMAND=echo hook-ran >" + filepath.Join(root, "hook")}

	t.Run("freezeRefused", func(t *testing.T) {
		code, _, errOut := entrypoint(t, append(env, "SNAPVISOR_FREEZE=pause"), "sidecar")
		if code != exitConfig || !strings.Contains(errOut, "SNAPVISOR_FREEZE") || !strings.Contains(errOut, "sidecar") {
			t.Errorf("sidecar with a freeze: exit %d, want %d naming the variable: %s", code, exitConfig, errOut)
		}
	})

	cmd := exec.Command(binPath, "sidecar")
	cmd.Env = append(os.Environ(), env...)
	var errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &errOut, &errOut
	p := startCmd(t, cmd)
	testutil.Eventually(t, 30*time.Second, "the sidecar's control socket", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	code, out, serr := entrypoint(t, env, "snapshot")
	if code != 0 {
		t.Fatalf("snapshot through the sidecar: exit %d: %s %s", code, serr, errOut.String())
	}
	if _, err := os.Stat(strings.TrimSpace(out)); err != nil {
		t.Errorf("the sidecar's snapshot %q: %v", out, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "hook")); !strings.Contains(string(b), "hook-ran") {
		t.Error("the sidecar's snapshot ran no pre-hook")
	}
	if code, out, _ := entrypoint(t, env, "health"); code != 0 {
		t.Errorf("health of the sidecar: exit %d: %s", code, out)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the sidecar did not stop on TERM\n%s", errOut.String())
	}
	if c := cmd.ProcessState.ExitCode(); c != 0 {
		t.Errorf("sidecar after TERM: exit %d, want 0\n%s", c, errOut.String())
	}

	t.Run("restoreIfEmpty", func(t *testing.T) {
		want := testutil.TreeState(t, data)
		code, out, serr := entrypoint(t, env, "restore-if-empty")
		if code != 0 || !strings.Contains(out, "nothing to restore") {
			t.Errorf("restore-if-empty on present data: exit %d, %q %s", code, out, serr)
		}
		testutil.SameState(t, want, testutil.TreeState(t, data))

		if err := os.RemoveAll(data); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(data, 0o755); err != nil {
			t.Fatal(err)
		}
		code, out, serr = entrypoint(t, env, "restore-if-empty")
		if code != 0 || !strings.Contains(out, "snapshot-") {
			t.Fatalf("restore-if-empty on an empty directory: exit %d, %q %s", code, out, serr)
		}
		testutil.SameState(t, want, testutil.TreeState(t, data))

		fresh := filepath.Join(root, "fresh")
		code, out, serr = entrypoint(t, []string{"SNAPVISOR_SOURCE=" + fresh, "SNAPVISOR_DIR=" + filepath.Join(root, "none"),
			"SNAPVISOR_CONTROL_SOCKET=" + sock}, "restore-if-empty")
		if code != 0 || !strings.Contains(out, "nothing to restore") {
			t.Errorf("restore-if-empty with no snapshot anywhere: exit %d, %q %s", code, out, serr)
		}
	})
}
