//go:build !initonly

package main

// PID-1 tests of the init's parity with tini and dumb-init: fault signals,
// inherited signal state, a quiet pure init, signal rewriting and success
// exit codes, a stop during auto-restore, and secrets out of /proc/1/environ.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"snapvisor/internal/testutil"
)

// execWithSignalState is the "sigstate" helper: it sets SIG_IGN for the
// signals in ign and blocks those in blk (comma-separated numbers), then execs
// argv, which inherits both (execve keeps SIG_IGN and the mask).
func execWithSignalState(ign, blk string, argv []string) error {
	runtime.LockOSThread() // the mask is per thread: set it on the one that execs
	ignored, err := parseSignalList(ign)
	if err != nil {
		return err
	}
	blocked, err := parseSignalList(blk)
	if err != nil {
		return err
	}
	// Only what the test asks for: a signal ignored by whatever started
	// the test (the CI runner's shell, say) goes back to SIG_DFL.
	for sig := 1; sig <= 64; sig++ {
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) || slices.Contains(ignored, syscall.Signal(sig)) {
			continue
		}
		var old [4]uint64
		if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
			return fmt.Errorf("disposition of signal %d: %w", sig, e)
		}
		if old[0] == 1 { // SIG_IGN
			dfl := [4]uint64{0}
			if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0); e != 0 {
				return fmt.Errorf("default signal %d: %w", sig, e)
			}
		}
	}
	for _, sig := range ignored {
		// os/signal cannot ignore the signals the Go runtime keeps (ILL,
		// TRAP, ...): set the disposition with rt_sigaction directly.
		act := [4]uint64{1} // sa_handler = SIG_IGN
		if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0); e != 0 {
			return fmt.Errorf("ignore %v: %w", sig, e)
		}
	}
	var set unix.Sigset_t
	for _, sig := range blocked {
		set.Val[0] |= 1 << (sig - 1)
	}
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &set, nil); err != nil {
		return fmt.Errorf("block: %w", err)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	os.Unsetenv("SVTEST_HELPER")
	return syscall.Exec(path, argv, os.Environ())
}

func parseSignalList(s string) ([]syscall.Signal, error) {
	var out []syscall.Signal
	for _, f := range strings.Split(s, ",") {
		if f == "" || f == "-" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 64 {
			return nil, fmt.Errorf("bad signal %q", f)
		}
		out = append(out, syscall.Signal(n))
	}
	return out, nil
}

func sigMask(sigs ...syscall.Signal) uint64 {
	var m uint64
	for _, s := range sigs {
		m |= 1 << (s - 1)
	}
	return m
}

func sigList(sigs ...syscall.Signal) string {
	var f []string
	for _, s := range sigs {
		f = append(f, strconv.Itoa(int(s)))
	}
	return strings.Join(f, ",")
}

// maskNames names the signals of a mask, for failure messages.
func maskNames(m uint64) string {
	var f []string
	for n := 1; n <= 64; n++ {
		if m&(1<<(n-1)) != 0 {
			f = append(f, unix.SignalName(syscall.Signal(n))+"("+strconv.Itoa(n)+")")
		}
	}
	return "{" + strings.Join(f, " ") + "}"
}

// waitReady waits until the file path exists (a service's "I am up").
func waitReady(t *testing.T, path string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "service ready", func() bool { _, err := os.Stat(path); return err == nil })
}

// TestEntrypoint_FaultSignals: a kill(2) of a fault signal to PID 1 is
// forwarded like any other (tini survives it; dumb-init forwards it). The
// service, a `sleep` with the default action, dies of it and the entrypoint
// exits 128+N. PIPE and PROF are not forwarded (README): the service then
// dies of the TERM that follows.
func TestEntrypoint_FaultSignals(t *testing.T) {
	service := func(ready string) []string {
		return []string{"--", "sh", "-c", "ulimit -c 0; touch " + ready + "; exec sleep 30"}
	}
	for _, sig := range []syscall.Signal{unix.SIGSEGV, unix.SIGABRT, unix.SIGILL, unix.SIGTRAP, unix.SIGBUS, unix.SIGFPE, unix.SIGSYS} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			ready := filepath.Join(t.TempDir(), "ready")
			p := startPID1(t, nil, service(ready)...)
			pid1 := p.pid1(t)
			waitReady(t, ready)
			if err := syscall.Kill(pid1, sig); err != nil {
				t.Fatal(err)
			}
			if got := p.wait(t, 10*time.Second); got != 128+int(sig) {
				t.Fatalf("exit code %d, want %d (the service killed by the forwarded %v); stderr:\n%s", got, 128+int(sig), unix.SignalName(sig), p.stderr)
			}
			if strings.Contains(p.stderr.String(), "goroutine ") {
				t.Errorf("Go runtime dump on stderr:\n%s", p.stderr)
			}
		})
	}
	t.Run("PIPE URG PROF are not forwarded", func(t *testing.T) {
		ready := filepath.Join(t.TempDir(), "ready")
		p := startPID1(t, []string{"SNAPVISOR_LOG_LEVEL=debug"}, service(ready)...)
		pid1 := p.pid1(t)
		waitReady(t, ready)
		for _, sig := range []syscall.Signal{unix.SIGPIPE, unix.SIGURG, unix.SIGPROF} {
			if err := syscall.Kill(pid1, sig); err != nil {
				t.Fatal(err)
			}
		}
		// USR2 (default action: terminate) after them: had PIPE or PROF been
		// forwarded, sleep would have died of it first.
		if err := syscall.Kill(pid1, unix.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		if got := p.wait(t, 10*time.Second); got != 128+int(unix.SIGUSR2) {
			t.Fatalf("exit code %d, want %d (killed by the USR2 sent after PIPE/URG/PROF); stderr:\n%s", got, 128+int(unix.SIGUSR2), p.stderr)
		}
	})
}

// procSignalState runs argv (a `grep` of /proc/self/status) as PID 1's
// service under the given init, started by a parent that ignored ign and
// blocked blk, and returns the service's SigIgn and SigBlk.
func procSignalState(t *testing.T, ign, blk []syscall.Signal, init ...string) (sigIgn, sigBlk uint64) {
	t.Helper()
	requireRoot(t)
	var out bytes.Buffer
	argv := append([]string{"unshare", "--pid", "--fork", "--kill-child", "--mount-proc", os.Args[0], sigList(ign...), sigList(blk...)}, init...)
	argv = append(argv, "grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "SVTEST_HELPER=sigstate")
	cmd.Stdout = &out
	p := startCmd(t, cmd)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("%v: exit %d; stderr:\n%s", init, code, p.stderr)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			t.Fatalf("%v: bad line %q", init, line)
		}
		switch k {
		case "SigIgn":
			sigIgn = n
		case "SigBlk":
			sigBlk = n
		}
	}
	return sigIgn, sigBlk
}

// TestEntrypoint_InheritedSignals: the service inherits the ignored and
// blocked signals the entrypoint was started with, as under tini (the
// oracle), except where the Go runtime hides them (README, "How the init
// behaves"): only HUP, INT, CONT, TSTP, TTIN and TTOU keep an inherited
// SIG_IGN visible, and the runtime unblocks its own signals before main.
func TestEntrypoint_InheritedSignals(t *testing.T) {
	testutil.RequireTool(t, "tini")
	ign := []syscall.Signal{unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGUSR2, unix.SIGTERM, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU}
	blk := []syscall.Signal{unix.SIGUSR1, unix.SIGTERM, unix.SIGALRM, unix.SIGWINCH, unix.SIGQUIT, 40}
	goVisibleIgn := sigMask(unix.SIGHUP, unix.SIGINT, unix.SIGCONT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU)
	goUnblocks := sigMask(unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGILL, unix.SIGTRAP, unix.SIGABRT, unix.SIGBUS, unix.SIGFPE,
		unix.SIGSEGV, unix.SIGTERM, unix.SIGSTKFLT, unix.SIGCHLD, unix.SIGPROF, unix.SIGURG, unix.SIGSYS, 32, 33, 34)

	tIgn, tBlk := procSignalState(t, ign, blk, "tini", "--")
	if tIgn != sigMask(ign...) || tBlk != sigMask(blk...) {
		t.Fatalf("oracle: under tini SigIgn %s SigBlk %s, want %s %s", maskNames(tIgn), maskNames(tBlk), maskNames(sigMask(ign...)), maskNames(sigMask(blk...)))
	}
	oIgn, oBlk := procSignalState(t, ign, blk, binPath, "--")
	if want := tIgn & goVisibleIgn; oIgn != want {
		t.Errorf("SigIgn of the service %s, want %s (tini's %s minus what Go hides)", maskNames(oIgn), maskNames(want), maskNames(tIgn))
	}
	if want := tBlk &^ goUnblocks; oBlk != want {
		t.Errorf("SigBlk of the service %s, want %s (tini's %s minus what Go unblocks)", maskNames(oBlk), maskNames(want), maskNames(tBlk))
	}

	t.Run("nothing inherited: nothing ignored or blocked", func(t *testing.T) {
		oIgn, oBlk := procSignalState(t, nil, nil, binPath, "--")
		if oIgn != 0 || oBlk != 0 {
			t.Errorf("SigIgn %s SigBlk %s, want none", maskNames(oIgn), maskNames(oBlk))
		}
	})

	t.Run("an ignored signal is not forwarded", func(t *testing.T) {
		requireRoot(t)
		rec := filepath.Join(t.TempDir(), "signals")
		cmd := exec.Command("unshare", "--pid", "--fork", "--kill-child", "--mount-proc", os.Args[0], sigList(unix.SIGHUP), "-",
			binPath, "--", "env", "SVTEST_HELPER=record", os.Args[0], rec)
		cmd.Env = append(os.Environ(), "SVTEST_HELPER=sigstate")
		p := startCmd(t, cmd)
		pid1 := p.pid1(t)
		testutil.Eventually(t, 10*time.Second, "service ready", func() bool { return fileHas(rec, "ready") })
		_ = syscall.Kill(pid1, syscall.SIGHUP)
		_ = syscall.Kill(pid1, syscall.SIGUSR1) // forwarded: it marks that the HUP had its chance
		testutil.Eventually(t, 5*time.Second, "USR1 recorded", func() bool { return fileHas(rec, syscall.SIGUSR1.String()) })
		_ = syscall.Kill(pid1, syscall.SIGTERM)
		if got := p.wait(t, 10*time.Second); got != 0 {
			t.Fatalf("exit code %d, want 0; stderr:\n%s", got, p.stderr)
		}
		if fileHas(rec, syscall.SIGHUP.String()) {
			t.Error("the service received the HUP the entrypoint was started with ignored")
		}
	})
}

// TestEntrypoint_QuietInit: with snapshots off the entrypoint prints nothing
// of its own, as tini; an explicit level or snapshots on bring the info lines back.
func TestEntrypoint_QuietInit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    []string
		silent bool
	}{
		{"snapshots off", nil, true},
		{"snapshots off LOG_LEVEL empty", []string{"SNAPVISOR_LOG_LEVEL="}, true},
		{"snapshots off LOG_LEVEL=info", []string{"SNAPVISOR_LOG_LEVEL=info"}, false},
		{"snapshots on", []string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_RESTORE=never"}, false},
		{"snapshots on LOG_LEVEL=warn", []string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_RESTORE=never", "SNAPVISOR_LOG_LEVEL=warn"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// The source exists: a missing one is warned about, even at warn (and
			// the subtests name no comma: SNAPVISOR_SOURCE is a comma-separated list).
			if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
				t.Fatal(err)
			}
			env := append([]string{"SNAPVISOR_SOURCE=" + filepath.Join(dir, "data"), "SNAPVISOR_DIR=" + filepath.Join(dir, "bk"),
				"SNAPVISOR_CONTROL_SOCKET=" + sockPath(t)}, tc.env...)
			p := startPID1(t, env, "--", "true")
			if got := p.wait(t, 10*time.Second); got != 0 {
				t.Fatalf("exit code %d; stderr:\n%s", got, p.stderr)
			}
			if silent := p.stderr.Len() == 0; silent != tc.silent {
				t.Errorf("stderr silent=%v, want %v:\n%s", silent, tc.silent, p.stderr)
			}
		})
	}
	t.Run("env shows the default", func(t *testing.T) {
		code, out, _ := entrypoint(t, nil, "env")
		if code != 0 {
			t.Fatal(code)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "SNAPVISOR_LOG_LEVEL ") {
				if !strings.Contains(line, "warn") || !strings.Contains(line, "info") {
					t.Errorf("env does not say when the default is warn and when info: %q", line)
				}
				return
			}
		}
		t.Errorf("env lacks SNAPVISOR_LOG_LEVEL:\n%s", out)
	})
}

// TestEntrypoint_SignalRewrite: SNAPVISOR_SIGNAL_REWRITE (dumb-init -r)
// rewrites a signal before it is forwarded; a rewrite to 0 drops it; the stop
// timeout still follows the TERM received.
func TestEntrypoint_SignalRewrite(t *testing.T) {
	record := func(t *testing.T, env ...string) (*proc, int, string) {
		rec := filepath.Join(t.TempDir(), "signals")
		p := startPID1(t, append([]string{"SVTEST_HELPER=record"}, env...), "--", os.Args[0], rec)
		pid1 := p.pid1(t)
		testutil.Eventually(t, 10*time.Second, "service ready", func() bool { return fileHas(rec, "ready") })
		return p, pid1, rec
	}
	t.Run("numbers and names", func(t *testing.T) {
		p, pid1, rec := record(t, "SNAPVISOR_SIGNAL_REWRITE=10:12,TERM:QUIT")
		_ = syscall.Kill(pid1, syscall.SIGUSR1)
		testutil.Eventually(t, 5*time.Second, "USR1 arrives as USR2", func() bool { return fileHas(rec, syscall.SIGUSR2.String()) })
		_ = syscall.Kill(pid1, syscall.SIGTERM)
		if got := p.wait(t, 10*time.Second); got != 0 {
			t.Fatalf("exit code %d, want 0 (the service exits 0 on QUIT); stderr:\n%s", got, p.stderr)
		}
		b, _ := os.ReadFile(rec)
		if !strings.Contains(string(b), syscall.SIGQUIT.String()) || strings.Contains(string(b), syscall.SIGTERM.String()) ||
			strings.Contains(string(b), syscall.SIGUSR1.String()+"\n") {
			t.Errorf("recorded:\n%s\nwant USR2 and QUIT only", b)
		}
	})
	t.Run("rewrite to 0 drops the signal", func(t *testing.T) {
		p, pid1, rec := record(t, "SNAPVISOR_SIGNAL_REWRITE=HUP:0")
		_ = syscall.Kill(pid1, syscall.SIGHUP)
		_ = syscall.Kill(pid1, syscall.SIGWINCH)
		testutil.Eventually(t, 5*time.Second, "WINCH recorded", func() bool { return fileHas(rec, syscall.SIGWINCH.String()) })
		_ = syscall.Kill(pid1, syscall.SIGTERM)
		if got := p.wait(t, 10*time.Second); got != 0 {
			t.Fatalf("exit code %d, want 0; stderr:\n%s", got, p.stderr)
		}
		if fileHas(rec, syscall.SIGHUP.String()) {
			t.Error("HUP reached the service despite HUP:0")
		}
	})
	t.Run("TERM dropped still stops the service after the stop timeout", func(t *testing.T) {
		p, pid1, rec := record(t, "SNAPVISOR_SIGNAL_REWRITE=TERM:0", "SNAPVISOR_STOP_TIMEOUT=300ms")
		_ = syscall.Kill(pid1, syscall.SIGTERM)
		if got := p.wait(t, 10*time.Second); got != 128+9 {
			t.Fatalf("exit code %d, want 137 (killed at the stop timeout); stderr:\n%s", got, p.stderr)
		}
		if fileHas(rec, syscall.SIGTERM.String()) {
			t.Error("TERM reached the service despite TERM:0")
		}
	})
}

// TestEntrypoint_SuccessCodes: SNAPVISOR_SUCCESS_CODES (tini -e) maps the
// service's code to 0 for the entrypoint's exit code and for SNAPVISOR_ON_EXIT.
func TestEntrypoint_SuccessCodes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env       []string
		onExit    bool
		want      int
		snapshots int
	}{
		{"mapped", []string{"SNAPVISOR_SUCCESS_CODES=3,143"}, false, 0, 0},
		{"not listed", []string{"SNAPVISOR_SUCCESS_CODES=3"}, false, 143, 0},
		{"unset", nil, false, 143, 0},
		{"mapped with ON_EXIT: final snapshot", []string{"SNAPVISOR_SUCCESS_CODES=143"}, true, 0, 1},
		{"unset with ON_EXIT: no final snapshot", nil, true, 143, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bk := filepath.Join(dir, "bk")
			env := tc.env
			if tc.onExit {
				data := filepath.Join(dir, "data")
				if err := os.MkdirAll(data, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(data, "f"), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
				env = append(env, "SNAPVISOR_BACKUP=true", "SNAPVISOR_ON_EXIT=true", "SNAPVISOR_SOURCE="+data,
					"SNAPVISOR_DIR="+bk, "SNAPVISOR_CONTROL_SOCKET="+sockPath(t))
			}
			// The JVM case: the service dies of the TERM it gets.
			ready := filepath.Join(dir, "ready")
			p := startPID1(t, env, "--", "sh", "-c", "touch "+ready+"; exec sleep 30")
			pid1 := p.pid1(t)
			waitReady(t, ready)
			_ = syscall.Kill(pid1, syscall.SIGTERM)
			if got := p.wait(t, 60*time.Second); got != tc.want {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", got, tc.want, p.stderr)
			}
			if n := len(snapshots(t, bk)); n != tc.snapshots {
				t.Errorf("%d final snapshots, want %d; stderr:\n%s", n, tc.snapshots, p.stderr)
			}
		})
	}
}

// TestEntrypoint_InitConfigErrors: bad rewrite or success codes exit 78
// naming the variable before the service starts.
func TestEntrypoint_InitConfigErrors(t *testing.T) {
	for _, env := range []string{
		"SNAPVISOR_SIGNAL_REWRITE=15", "SNAPVISOR_SIGNAL_REWRITE=15:99", "SNAPVISOR_SIGNAL_REWRITE=FOO:3",
		"SNAPVISOR_SIGNAL_REWRITE=9:3", "SNAPVISOR_SIGNAL_REWRITE=15:3,TERM:2",
		"SNAPVISOR_SUCCESS_CODES=256", "SNAPVISOR_SUCCESS_CODES=abc", "SNAPVISOR_SUCCESS_CODES=-1",
	} {
		t.Run(env, func(t *testing.T) {
			name, _, _ := strings.Cut(env, "=")
			marker := filepath.Join(t.TempDir(), "started")
			p := startPID1(t, []string{env}, "--", "touch", marker)
			if got := p.wait(t, 10*time.Second); got != exitConfig {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", got, exitConfig, p.stderr)
			}
			if !strings.Contains(p.stderr.String(), name) {
				t.Errorf("error does not name %s:\n%s", name, p.stderr)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the service was started despite the configuration error")
			}
		})
	}
}

// TestEntrypoint_TermDuringAutoRestore: a TERM to PID 1 while it restores a
// large snapshot before the service starts cancels the restore: exit 143, no
// staging left, the target untouched, the service never started.
func TestEntrypoint_TermDuringAutoRestore(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	src, bk := filepath.Join(dir, "src", "data"), filepath.Join(dir, "bk")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	// Random data: no compression shortcut, so extraction takes a while.
	f, err := os.Create(filepath.Join(src, "big"))
	if err != nil {
		t.Fatal(err)
	}
	rnd, err := os.Open("/dev/urandom")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rnd, 300<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rnd.Close()
	base := []string{"SNAPVISOR_DIR=" + bk, "SNAPVISOR_CONTROL_SOCKET=" + sockPath(t), "SNAPVISOR_COMPRESSION=none"}
	if code, _, errOut := entrypoint(t, append(base, "SNAPVISOR_SOURCE="+src), "snapshot"); code != 0 {
		t.Fatalf("snapshot: exit %d: %s", code, errOut)
	}

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			parent := filepath.Join(t.TempDir(), "rt")
			target := filepath.Join(parent, "data")
			if err := os.MkdirAll(target, 0o755); err != nil { // empty: auto-restore runs
				t.Fatal(err)
			}
			marker := filepath.Join(t.TempDir(), "started")
			p := startPID1(t, append(base, "SNAPVISOR_SOURCE="+target, "SNAPVISOR_BACKUP=true"), "--", "touch", marker)
			pid1 := p.pid1(t)
			testutil.Eventually(t, 60*time.Second, "the restore stages the snapshot", func() bool {
				return len(entriesOf(parent)) > 1 // data and a staging directory beside it
			})
			if err := syscall.Kill(pid1, sig); err != nil {
				t.Fatal(err)
			}
			if got := p.wait(t, 60*time.Second); got != 128+int(sig) {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", got, 128+int(sig), p.stderr)
			}
			if left := entriesOf(parent); len(left) != 1 || left[0] != "data" {
				t.Errorf("left beside the target: %v, want only data", left)
			}
			if in := entriesOf(target); len(in) != 0 {
				t.Errorf("target holds %v, want it untouched (empty)", in)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the service was started")
			}
		})
	}
}

// TestEntrypoint_SecretsNotInProcEnviron: a service of the same uid reads
// /proc/1/environ; the secrets are not there, ordinary variables are, and
// the encrypted final snapshot made with the key still verifies.
func TestEntrypoint_SecretsNotInProcEnviron(t *testing.T) {
	dir := t.TempDir()
	data, bk, remote := filepath.Join(dir, "data"), filepath.Join(dir, "bk"), filepath.Join(dir, "remote")
	for _, d := range []string{data, remote} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(data, "f"), []byte("payload"), 0o644); err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	secrets := map[string]string{
		"SNAPVISOR_ENCRYPTION_KEY": key,
		"AWS_ACCESS_KEY_ID":        "AKIDCANARY0123456789",
		"AWS_SECRET_ACCESS_KEY":    "aws-secret-canary-0123456789abcdef",
		"SNAPVISOR_SFTP_PASSWORD":  "sftp-password-canary",
	}
	env := []string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_ON_EXIT=true", "SNAPVISOR_ENCRYPTION=aes256-gcm",
		"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + bk, "SNAPVISOR_REMOTES=file://" + remote,
		"SNAPVISOR_CONTROL_SOCKET=" + sockPath(t), "KEEP_ME=ordinary-value"}
	for k, v := range secrets {
		env = append(env, k+"="+v)
	}
	seen := filepath.Join(dir, "environ")
	p := startPID1(t, env, "--", "sh", "-c", "tr '\\0' '\\n' < /proc/1/environ > "+seen)
	if got := p.wait(t, 60*time.Second); got != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", got, p.stderr)
	}
	b, err := os.ReadFile(seen)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range secrets {
		if strings.Contains(string(b), v) {
			t.Errorf("the service read %s's value in /proc/1/environ", k)
		}
	}
	if !strings.Contains(string(b), "KEEP_ME=ordinary-value") || !strings.Contains(string(b), "SNAPVISOR_SOURCE="+data) {
		t.Errorf("ordinary variables missing from /proc/1/environ:\n%s", b)
	}
	// The key did its work: the final snapshot is encrypted with it.
	if m, _ := filepath.Glob(filepath.Join(bk, "snapshot-*.tar.gz.aes256gcm")); len(m) != 1 {
		t.Fatalf("encrypted snapshots %v, want the final one; stderr:\n%s", m, p.stderr)
	}
	if code, out, errOut := entrypoint(t, []string{"SNAPVISOR_DIR=" + bk, "SNAPVISOR_ENCRYPTION=aes256-gcm", "SNAPVISOR_ENCRYPTION_KEY=" + key}, "verify", "--all"); code != 0 {
		t.Fatalf("verify --all with the key: exit %d: %s %s", code, out, errOut)
	}
}
