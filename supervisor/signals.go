package supervisor

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Signals relayed to the service. Not relayed: SIGCHLD (ours), SIGPIPE (our
// own broken pipes raise it too, and os/signal cannot tell them from a
// kill(2)), SIGURG (the Go runtime's own preemption signal, sent to itself
// many times a second), SIGPROF (the Go runtime keeps it for its profiler and
// never hands it to os/signal) and 32-34 (the Go runtime leaves them to the C
// library and installs no handler, so os/signal never sees them: as PID 1 the
// kernel drops them, otherwise their default action ends the process). A
// signal the entrypoint was started with ignored is not relayed either (see
// Inherited).
//
// The fault signals (SEGV, BUS, FPE, ILL, TRAP, ABRT, SYS) are relayed when
// another process sends them with kill(2): the Go runtime hands them to
// os/signal only when their si_code says SI_USER or SI_TKILL, and still
// crashes on a real fault of our own (runtime/signal_unix.go sighandler).
// Unregistered, a kill(2) of one of them (or of SIGSTKFLT) kills the process
// with a Go runtime dump, so they are registered before the service starts,
// with the common ones; the rest right after: each registration of a signal
// the Go runtime does not already handle costs a round trip to its signal
// thread (tens of microseconds), and until registered such a signal is
// ignored by the Go runtime, never fatal.
var (
	commonSignals = []syscall.Signal{
		unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2,
		unix.SIGWINCH, unix.SIGCONT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU,
		unix.SIGSTKFLT,
		unix.SIGSEGV, unix.SIGBUS, unix.SIGFPE, unix.SIGILL, unix.SIGTRAP, unix.SIGABRT, unix.SIGSYS,
	}
	rareSignals = func() []syscall.Signal {
		sigs := []syscall.Signal{unix.SIGALRM, unix.SIGXCPU, unix.SIGXFSZ, unix.SIGVTALRM, unix.SIGIO, unix.SIGPWR}
		for n := 35; n <= 64; n++ {
			sigs = append(sigs, syscall.Signal(n))
		}
		return sigs
	}()
)

// forwardable reports whether sig is one the supervisor relays to the service.
func forwardable(sig syscall.Signal) bool {
	for _, list := range [][]syscall.Signal{commonSignals, rareSignals} {
		for _, s := range list {
			if s == sig {
				return true
			}
		}
	}
	return false
}

// isStop reports whether sig starts the stop logic (STOP_TIMEOUT, then KILL).
func isStop(sig syscall.Signal) bool { return sig == unix.SIGTERM || sig == unix.SIGINT }

// SignalName names a signal for people: "SIGKILL", or "signal 40" for one
// without a name (the real-time signals).
func SignalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return "signal " + strconv.Itoa(int(sig))
}

// parseSignal reads a signal number (0-64) or name (TERM, SIGTERM, term).
func parseSignal(s string) (syscall.Signal, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 64 {
			return 0, fmt.Errorf("signal number %d out of range 0-64", n)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// parseSignalRewrite reads SNAPVISOR_SIGNAL_REWRITE: comma-separated FROM:TO
// pairs (numbers or names, as dumb-init -r s:r). TO 0 means "do not forward".
// FROM must be a signal the supervisor forwards.
func parseSignalRewrite(s string) (map[syscall.Signal]syscall.Signal, error) {
	out := map[syscall.Signal]syscall.Signal{}
	for _, pair := range strings.Split(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		from, to, ok := strings.Cut(pair, ":")
		if !ok {
			return nil, fmt.Errorf("%q is not FROM:TO", strings.TrimSpace(pair))
		}
		f, err := parseSignal(from)
		if err != nil {
			return nil, err
		}
		t, err := parseSignal(to)
		if err != nil {
			return nil, err
		}
		if !forwardable(f) {
			return nil, fmt.Errorf("%s is never forwarded to the service, so it cannot be rewritten", SignalName(f))
		}
		if _, dup := out[f]; dup {
			return nil, fmt.Errorf("%s is rewritten twice", SignalName(f))
		}
		out[f] = t
	}
	return out, nil
}

// parseSuccessCodes reads SNAPVISOR_SUCCESS_CODES: comma-separated exit codes
// 0-255 (tini -e) that count as success.
func parseSuccessCodes(s string) (map[int]bool, error) {
	out := map[int]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > 255 {
			return nil, fmt.Errorf("%q is not an exit code from 0 to 255", f)
		}
		out[n] = true
	}
	return out, nil
}

// Inherited is the signal state this process was started with, as far as
// the Go runtime lets it be seen (bit N-1 stands for signal N).
//
// Ignored: the Go runtime installs its own handler over an inherited SIG_IGN
// before main runs, except for HUP and INT (runtime sigInstallGoHandler) and
// the job-control signals CONT, TSTP, TTIN and TTOU it never handles unless
// asked to; only those can be seen here. Blocked: the Go runtime unblocks,
// in every thread before main, the signals it must receive itself (HUP, INT,
// QUIT, ILL, TRAP, ABRT, BUS, FPE, SEGV, TERM, STKFLT, CHLD, PROF, URG, SYS
// and 32-34: runtime blockableSig); the rest of the inherited mask is still
// in place, and a child forked from any thread but the runtime's signal
// thread inherits it.
type Inherited struct {
	Ignored uint64
	Blocked uint64
}

// IsIgnored reports whether sig was ignored when the process started.
func (in Inherited) IsIgnored(sig syscall.Signal) bool {
	return sig >= 1 && sig <= 64 && in.Ignored&(1<<(sig-1)) != 0
}

// Default reports whether nothing was ignored or blocked (a container start).
func (in Inherited) Default() bool { return in.Ignored == 0 && in.Blocked == 0 }

// signalNames lists the signals of a mask, for logs.
func signalNames(mask uint64) []string {
	var out []string
	for n := 1; n <= 64; n++ {
		if mask&(1<<(n-1)) != 0 {
			out = append(out, SignalName(syscall.Signal(n)))
		}
	}
	return out
}

// CaptureInherited reads the signal state this process was started with. Call
// it at the start of main, before any signal.Notify (which installs a handler
// and unblocks the signal on the runtime's signal thread). A query the kernel
// refuses leaves its bits clear: the default state, as in a container start.
func CaptureInherited() Inherited {
	var in Inherited
	for n := 1; n <= 64; n++ {
		if n == int(unix.SIGKILL) || n == int(unix.SIGSTOP) {
			continue
		}
		if h, err := sigHandler(syscall.Signal(n)); err == nil && h == sigIgn {
			in.Ignored |= 1 << (n - 1)
		}
	}
	var cur unix.Sigset_t
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, nil, &cur); err == nil {
		in.Blocked = cur.Val[0]
	}
	return in
}

const sigIgn = 1 // SIG_IGN

// sigHandler returns the current handler of sig (0 SIG_DFL, 1 SIG_IGN, else a
// function). golang.org/x/sys has no rt_sigaction wrapper: the kernel's
// struct sigaction starts with the handler on every architecture Go supports
// on Linux except mips, where it follows a 4-byte flags word; the buffer is
// as large as the largest layout, and only the handler is read.
func sigHandler(sig syscall.Signal) (uintptr, error) {
	if strings.HasPrefix(runtime.GOARCH, "mips") {
		return 0, errors.ErrUnsupported
	}
	var old [4]uint64
	_, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0)
	if e != 0 {
		return 0, e
	}
	return uintptr(old[0]), nil
}
