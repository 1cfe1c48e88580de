//go:build !initonly

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapvisor/internal/testutil"
)

// binPath is the entrypoint binary built once by TestMain.
var binPath string

func TestMain(m *testing.M) {
	if mode := os.Getenv("SVTEST_HELPER"); mode != "" {
		os.Exit(helper(mode, os.Args[1:]))
	}
	// The entrypoint passes an ignored HUP or INT on to its service, as tini
	// does. A test run started with them ignored (a background job of a
	// script) would start every entrypoint so, and the tests that send them
	// would fail: keep ignoring them here, but through a handler, which the
	// children do not inherit.
	for _, sig := range []os.Signal{syscall.SIGHUP, syscall.SIGINT} {
		if signal.Ignored(sig) {
			signal.Notify(make(chan os.Signal, 1), sig)
		}
	}
	// SVTEST_ENTRYPOINT runs the tests against a given binary (the one
	// before a fix, say) instead of building this package.
	binPath = os.Getenv("SVTEST_ENTRYPOINT")
	if binPath != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "snapvisor-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "entrypoint")
	build := exec.Command("go", "build", "-trimpath", "-o", binPath, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build entrypoint:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// helper is the test binary acting as a service or as a parent:
//   - "record FILE": writes "ready", then appends the name of every signal it
//     receives; exits 0 on TERM or QUIT.
//   - "sigstate IGN BLK CMD ARGS...": execs CMD with the signals in IGN
//     ignored and those in BLK blocked (comma-separated numbers, "-" for
//     none), as a shell's empty trap or a parent's sigprocmask leaves them.
func helper(mode string, args []string) int {
	switch mode {
	case "record":
		f, err := os.OpenFile(args[0], os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return 2
		}
		ch := make(chan os.Signal, 16)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGINT, syscall.SIGWINCH, syscall.SIGQUIT)
		fmt.Fprintf(f, "ready %d\n", os.Getpid())
		for s := range ch {
			fmt.Fprintln(f, s.(syscall.Signal).String())
			if s == syscall.SIGTERM || s == syscall.SIGQUIT {
				return 0
			}
		}
	case "sigstate":
		if err := execWithSignalState(args[0], args[1], args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "sigstate:", err)
			return 4
		}
	}
	return 3
}

// requireRoot skips (or fails in CI) tests that need root for unshare.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("unshare"); err == nil {
			return
		}
	}
	testutil.Unavailable(t, "PID-1 tests need root and unshare(1) (util-linux)")
}

type proc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{}
	code   int
}

// startPID1 runs the entrypoint as PID 1 of a new PID namespace.
func startPID1(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startPID1Bin(t, binPath, env, args...)
}

// startPID1Bin runs the entrypoint binary bin as PID 1 of a new PID namespace.
func startPID1Bin(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	requireRoot(t)
	return start(t, env, append([]string{"unshare", "--pid", "--fork", "--kill-child", "--mount-proc", bin}, args...)...)
}

func start(t *testing.T, env []string, argv ...string) *proc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	return startCmd(t, cmd)
}

// startCmd starts cmd (stdout to the test's unless set, stderr kept) and kills it at the end of the test.
func startCmd(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	cmd.WaitDelay = 5 * time.Second // a stray grandchild holding stderr never hangs the test
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", filepath.Base(cmd.Path), p.stderr)
		}
	})
	return p
}

func (p *proc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(within):
		t.Fatalf("entrypoint did not exit within %v; stderr:\n%s", within, p.stderr)
		return -1
	}
}

// pid1 finds the host PID of the namespace's PID 1 (unshare's only child).
func (p *proc) pid1(t *testing.T) int {
	t.Helper()
	upid := p.cmd.Process.Pid
	var pid int
	testutil.Eventually(t, 5*time.Second, "unshare's child appears", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", upid, upid))
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return false
		}
		pid, _ = strconv.Atoi(f[0])
		return pid > 0
	})
	return pid
}

func fileHas(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(b), s)
}

// exitCase is a service command line and the exit code the entrypoint
// must end with.
type exitCase struct {
	name string
	env  []string
	args []string
	want int
}

// exitCases are the exit codes every build of the entrypoint passes on.
func exitCases() []exitCase {
	return []exitCase{
		{"zero", nil, []string{"--", "true"}, 0},
		{"forty-two", nil, []string{"--", "sh", "-c", "exit 42"}, 42},
		{"killed by signal 9", nil, []string{"sh", "-c", "kill -9 $$"}, 128 + 9},
		{"not found", nil, []string{"--", "/nonexistent/service"}, 127},
		{"not executable", nil, []string{"--", "/etc/hostname"}, 126},
	}
}

func TestEntrypoint_ExitCodes(t *testing.T) {
	for _, tc := range exitCases() {
		t.Run(tc.name, func(t *testing.T) {
			p := startPID1(t, tc.env, tc.args...)
			if got := p.wait(t, 10*time.Second); got != tc.want {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", got, tc.want, p.stderr)
			}
		})
	}
}

func TestEntrypoint_Usage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"no command", nil, exitUsage},
		{"dash dash alone", []string{"--"}, exitUsage},
		{"unknown flag", []string{"--frobnicate"}, exitUsage},
		{"help", []string{"help"}, 0},
		{"version", []string{"--version"}, 0},
		{"env", []string{"env"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, nil, append([]string{binPath}, tc.args...)...)
			if got := p.wait(t, 10*time.Second); got != tc.want {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", got, tc.want, p.stderr)
			}
		})
	}
}

func TestEntrypoint_ConfigErrorBeforeStart(t *testing.T) {
	for _, tc := range []struct{ name, env, mention string }{
		{"bad duration", "SNAPVISOR_STOP_TIMEOUT=soon", "SNAPVISOR_STOP_TIMEOUT"},
		{"bad bool", "SNAPVISOR_SIGNAL_GROUP=maybe", "SNAPVISOR_SIGNAL_GROUP"},
		{"bad log format", "SNAPVISOR_LOG_FORMAT=xml", "SNAPVISOR_LOG_FORMAT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "started")
			p := startPID1(t, []string{tc.env}, "--", "touch", marker)
			if got := p.wait(t, 10*time.Second); got != exitConfig {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", got, exitConfig, p.stderr)
			}
			if !strings.Contains(p.stderr.String(), tc.mention) {
				t.Errorf("error does not name %s:\n%s", tc.mention, p.stderr)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the service was started despite the configuration error")
			}
		})
	}
}

func TestEntrypoint_SignalForwarding(t *testing.T) {
	for _, group := range []string{"false", "true"} {
		t.Run("group="+group, func(t *testing.T) {
			rec := filepath.Join(t.TempDir(), "signals")
			p := startPID1(t, []string{"SVTEST_HELPER=record", "SNAPVISOR_SIGNAL_GROUP=" + group}, "--", os.Args[0], rec)
			pid1 := p.pid1(t)
			testutil.Eventually(t, 10*time.Second, "service ready", func() bool { return fileHas(rec, "ready") })
			for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGWINCH} {
				if err := syscall.Kill(pid1, sig); err != nil {
					t.Fatal(err)
				}
				testutil.Eventually(t, 5*time.Second, sig.String()+" recorded", func() bool { return fileHas(rec, sig.String()) })
			}
			if err := syscall.Kill(pid1, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if got := p.wait(t, 10*time.Second); got != 0 {
				t.Fatalf("exit code %d, want 0; stderr:\n%s", got, p.stderr)
			}
			if !fileHas(rec, syscall.SIGTERM.String()) {
				t.Error("service did not record SIGTERM")
			}
		})
	}
}

func TestEntrypoint_StopTimeout(t *testing.T) {
	t.Run("escalates to SIGKILL after the timeout", func(t *testing.T) {
		ready := filepath.Join(t.TempDir(), "ready")
		p := startPID1(t, []string{"SNAPVISOR_STOP_TIMEOUT=500ms"}, "--", "sh", "-c", "trap '' TERM; touch "+ready+"; while :; do sleep 0.05; done")
		pid1 := p.pid1(t)
		testutil.Eventually(t, 10*time.Second, "service ready", func() bool { _, err := os.Stat(ready); return err == nil })
		_ = syscall.Kill(pid1, syscall.SIGTERM)
		if got := p.wait(t, 10*time.Second); got != 128+9 {
			t.Fatalf("exit code %d, want 137; stderr:\n%s", got, p.stderr)
		}
	})
	t.Run("second TERM escalates at once", func(t *testing.T) {
		// The service survives TERM and records it: the entrypoint forwards
		// it only once it has taken it as the first stop signal.
		ready, rec := filepath.Join(t.TempDir(), "ready"), filepath.Join(t.TempDir(), "signals")
		p := startPID1(t, []string{"SNAPVISOR_STOP_TIMEOUT=1h"}, "--", "sh", "-c", "trap 'echo TERM >> "+rec+"' TERM; trap '' INT; touch "+ready+"; while :; do sleep 0.05; done")
		pid1 := p.pid1(t)
		testutil.Eventually(t, 10*time.Second, "service ready", func() bool { _, err := os.Stat(ready); return err == nil })
		_ = syscall.Kill(pid1, syscall.SIGTERM)
		testutil.Eventually(t, 5*time.Second, "the first TERM reached the service", func() bool { return fileHas(rec, "TERM") })
		_ = syscall.Kill(pid1, syscall.SIGINT)
		if got := p.wait(t, 10*time.Second); got != 128+9 {
			t.Fatalf("exit code %d, want 137; stderr:\n%s", got, p.stderr)
		}
	})
}

// TestEntrypoint_ReapsOrphans makes 1,000 orphans that exit after being
// re-parented to the entrypoint; the service itself counts zombies in /proc.
func TestEntrypoint_ReapsOrphans(t *testing.T) {
	script := orphansScript(1000)
	t.Run("as PID 1", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "zombies")
		p := startPID1(t, []string{"OUT=" + out}, "--", "sh", "-c", script)
		if got := p.wait(t, 60*time.Second); got != 0 {
			b, _ := os.ReadFile(out)
			t.Fatalf("exit code %d (zombies left: %s); stderr:\n%s", got, b, p.stderr)
		}
	})
	t.Run("as subreaper when not PID 1", func(t *testing.T) {
		// Not in a PID namespace: count only zombies whose parent is the entrypoint.
		out := filepath.Join(t.TempDir(), "zombies")
		sub := `
for i in $(seq 300); do ( sleep 0.3 & ) ; done
sleep 0.5
ep=$PPID
end=$(( $(date +%s) + 20 ))
while :; do
  z=$(grep -l "^PPid:[[:space:]]*$ep\$" /proc/[0-9]*/status 2>/dev/null | xargs -r grep -l '^State:[[:space:]]*Z' 2>/dev/null | wc -l)
  n=$(grep -l "^PPid:[[:space:]]*$ep\$" /proc/[0-9]*/status 2>/dev/null | wc -l)
  echo "zombies=$z children=$n" > "$OUT"
  [ "$z" -eq 0 ] && [ "$n" -le 1 ] && exit 0
  [ "$(date +%s)" -ge "$end" ] && exit 1
  sleep 0.2
done`
		p := start(t, []string{"OUT=" + out}, binPath, "--", "sh", "-c", sub)
		if got := p.wait(t, 60*time.Second); got != 0 {
			b, _ := os.ReadFile(out)
			t.Fatalf("exit code %d (%s); stderr:\n%s", got, b, p.stderr)
		}
	})
}

// orphansScript is a service, for a PID namespace of its own, that makes n
// orphans (re-parented to PID 1) which exit at once, then counts zombies in
// /proc into $OUT until none is left (exit 0) or 20 s have passed (exit 1).
func orphansScript(n int) string {
	return fmt.Sprintf(`
for i in $(seq %d); do ( sleep 0.3 & ) ; done
sleep 0.5
end=$(( $(date +%%s) + 20 ))
while :; do
  z=0
  for s in /proc/[0-9]*/stat; do
    st=$(cut -d')' -f2 "$s" 2>/dev/null | cut -d' ' -f2)
    [ "$st" = Z ] && z=$((z+1))
  done
  echo "$z" > "$OUT"
  [ "$z" -eq 0 ] && exit 0
  [ "$(date +%%s)" -ge "$end" ] && exit 1
  sleep 0.2
done`, n)
}

// TestEntrypoint_CleansUpDescendants: when the service exits, a daemon it left
// behind gets a graceful TERM (it records it) before the entrypoint exits.
func TestEntrypoint_CleansUpDescendants(t *testing.T) {
	for _, mode := range []string{"pid1", "subreaper"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			rec := filepath.Join(dir, "daemon")
			daemon := fmt.Sprintf(`setsid sh -c 'trap "echo TERM > %s; exit 0" TERM; echo up > %s; while :; do sleep 0.05; done' &
while [ ! -s %s ]; do sleep 0.02; done
exit 5`, rec, rec, rec)
			env := []string{"SNAPVISOR_STOP_TIMEOUT=5s"}
			var p *proc
			if mode == "pid1" {
				p = startPID1(t, env, "--", "sh", "-c", daemon)
			} else {
				p = start(t, env, binPath, "--", "sh", "-c", daemon)
			}
			if got := p.wait(t, 20*time.Second); got != 5 {
				t.Fatalf("exit code %d, want 5; stderr:\n%s", got, p.stderr)
			}
			if !fileHas(rec, "TERM") {
				t.Fatalf("left-over daemon did not get SIGTERM; stderr:\n%s", p.stderr)
			}
		})
	}
}

// TestEntrypoint_ServiceEnv: the container's environment reaches the service.
func TestEntrypoint_ServiceEnv(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	p := start(t, []string{"KEEP_ME=1"}, binPath, "--", "sh", "-c", "env > "+out)
	if got := p.wait(t, 10*time.Second); got != 0 {
		t.Fatalf("exit %d: %s", got, p.stderr)
	}
	if !fileHas(out, "KEEP_ME=1") {
		t.Error("ordinary variable missing from the service's environment")
	}
}

func TestServiceEnv(t *testing.T) {
	got := serviceEnv([]string{"A=1", "SNAPVISOR_X_KEY=s", "SNAPVISOR_X_KEY_FILE=/run/k", "B=2=3"}, []string{"SNAPVISOR_X_KEY", "SNAPVISOR_X_KEY_FILE"})
	want := []string{"A=1", "B=2=3"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("serviceEnv = %q, want %q", got, want)
	}
}
