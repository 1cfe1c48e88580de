//go:build !initonly

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"snapvisor/internal/testutil"
)

// openPTY returns a new pseudo-terminal's master and slave ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestEntrypoint_TerminalAfterFreezeStop: with a terminal (docker run -it),
// the service owns its foreground, and so does the instance started again
// after a freeze=stop snapshot.
func TestEntrypoint_TerminalAfterFreezeStop(t *testing.T) {
	root := t.TempDir()
	data, backups, out := filepath.Join(root, "data"), filepath.Join(root, "backups"), filepath.Join(root, "pgrps")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	_, slave := openPTY(t)
	env := []string{
		"SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@yearly", "SNAPVISOR_FREEZE=stop",
		"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + backups, "SNAPVISOR_CONTROL_SOCKET=" + sockPath(t), "OUT=" + out,
	}
	// Every instance records its process group and the terminal's foreground group (stat fields 5 and 8).
	cmd := exec.Command(binPath, "--", "sh", "-c", `cut -d' ' -f5,8 /proc/$$/stat >>"$OUT"; exec sleep 1000`)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0} // the pty is its controlling terminal
	p := startCmd(t, cmd)

	lines := func() []string {
		b, _ := os.ReadFile(out)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	testutil.Eventually(t, 5*time.Second, "service started", func() bool { return len(lines()) >= 1 && lines()[0] != "" })
	if res := clientSnapshot(t, env); res.code != 0 {
		t.Fatalf("snapshot: exit %d\n%s", res.code, res.stderr)
	}
	testutil.Eventually(t, 10*time.Second, "service started again", func() bool { return len(lines()) >= 2 })
	for i, l := range lines() {
		f := strings.Fields(l)
		if len(f) != 2 || f[0] != f[1] {
			t.Errorf("instance %d: process group and terminal foreground group %q, want equal", i+1, l)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if got := p.wait(t, 15*time.Second); got != 128+15 {
		t.Errorf("exit %d, want 143 (sleep killed by TERM)", got)
	}
}
