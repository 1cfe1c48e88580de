// Package supervisor runs the service as PID 1 would: it starts the service as
// its child, forwards signals, reaps every zombie, stops descendants on exit and
// returns the service's exit code. It also runs helper commands (hooks) whose
// exit status is never stolen by the reaper, and can pause, resume, stop and
// start the service for consistent snapshots.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"snapvisor/config"
	"snapvisor/internal/zlog"
)

// Config holds the supervisor's settings (environment prefix SNAPVISOR_).
type Config struct {
	StopTimeout   time.Duration `envconfig:"SNAPVISOR_STOP_TIMEOUT" default:"10s" desc:"after a forwarded TERM/INT, and when cleaning up descendants, time before SIGKILL"`
	SignalGroup   bool          `envconfig:"SNAPVISOR_SIGNAL_GROUP" default:"false" desc:"forward signals to the service's whole process group (tini -g)"`
	SignalRewrite string        `envconfig:"SNAPVISOR_SIGNAL_REWRITE" desc:"comma-separated FROM:TO signal rewrites applied before forwarding, numbers or names (15:3 or TERM:QUIT; dumb-init -r); TO 0 means do not forward; the stop timeout still follows the TERM/INT received"`
	SuccessCodes  string        `envconfig:"SNAPVISOR_SUCCESS_CODES" desc:"comma-separated exit codes of the service (0-255) that count as success: the entrypoint exits 0 and SNAPVISOR_ON_EXIT takes its snapshot (tini -e; e.g. 143 for a JVM stopped by TERM)"`

	// Inherited is the signal state the process was started with (from
	// CaptureInherited at the start of main), not read from the environment.
	Inherited Inherited `ignored:"true"`

	// Set by Validate, for New: the parsed SignalRewrite and SuccessCodes.
	rewrite map[syscall.Signal]syscall.Signal
	success map[int]bool
	valid   bool
}

// Validate checks the stop timeout, the rewrites and the success codes, and
// keeps the parsed rewrites and codes in c: New uses them without parsing
// again.
func (c *Config) Validate() error {
	c.valid = false
	if c.StopTimeout <= 0 {
		return config.Invalid("STOP_TIMEOUT", c.StopTimeout.String(), "a positive duration such as 10s")
	}
	rewrite, err := parseSignalRewrite(c.SignalRewrite)
	if err != nil {
		e := config.Invalid("SIGNAL_REWRITE", c.SignalRewrite, "comma-separated FROM:TO pairs of signal numbers (1-64) or names, e.g. 15:3,2:3 or TERM:QUIT; TO 0 means do not forward")
		e.Err = err
		return e
	}
	success, err := parseSuccessCodes(c.SuccessCodes)
	if err != nil {
		e := config.Invalid("SUCCESS_CODES", c.SuccessCodes, "comma-separated exit codes from 0 to 255, e.g. 143 or 130,143")
		e.Err = err
		return e
	}
	c.rewrite, c.success, c.valid = rewrite, success, true
	return nil
}

// State is the service's state as seen by the supervisor.
type State string

// Service states.
const (
	StateStarting State = "starting"
	StateRunning  State = "running"
	StatePaused   State = "paused"
	StateStopped  State = "stopped"
	StateExited   State = "exited"
)

// ErrShuttingDown is returned by Start and Stop once the supervisor is stopping.
var ErrShuttingDown = errors.New("supervisor is shutting down")

// Status is a finished process's wait status.
type Status struct{ ws unix.WaitStatus }

// Code is the exit code a shell would report: the process's own, or 128+N when killed by signal N.
func (s Status) Code() int { return exitCode(s.ws) }

// Signaled reports whether the process was killed by a signal.
func (s Status) Signaled() bool { return s.ws.Signaled() }

func (s Status) String() string {
	if s.ws.Signaled() {
		return "killed by " + SignalName(s.ws.Signal())
	}
	return fmt.Sprintf("exit code %d", s.ws.ExitStatus())
}

// StoppedError is returned by Before and Run when a TERM or INT arrived
// before the service started: the service is not started, and the
// entrypoint exits 128+N as if the service had been killed by it.
type StoppedError struct {
	Signal syscall.Signal
	Err    error // what the work cut short by the signal returned (Before), if anything
}

func (e *StoppedError) Error() string {
	msg := SignalName(e.Signal) + " received before the service started: not starting it"
	if e.Err != nil {
		msg += " (" + e.Err.Error() + ")"
	}
	return msg
}

// Code is 128+N for signal N, as a shell reports a process killed by it.
func (e *StoppedError) Code() int { return 128 + int(e.Signal) }

// Supervisor runs one service. Create it with New and call Run once.
type Supervisor struct {
	cfg  Config
	log  zlog.Logger
	argv []string
	env  []string
	r    *reaper

	rewrite map[syscall.Signal]syscall.Signal // SNAPVISOR_SIGNAL_REWRITE, parsed
	success map[int]bool                      // SNAPVISOR_SUCCESS_CODES, parsed
	sig     *sigChans                         // signal registrations, once Listen ran (owner: the goroutine of Listen, Before and Run)
	early   syscall.Signal                    // a TERM/INT Before received: Run does not start the service

	mu       sync.Mutex
	svc      *instance     // current (or last) service process
	state    State         // guarded by mu
	stopping bool          // a TERM/INT (or ctx cancel) is being honoured
	killT    *time.Timer   // stop-timeout escalation
	restart  chan struct{} // a planned restart started a new instance (or failed: startErr)
	startErr error         // why Start could not start the service again (guarded by mu)
	started  chan struct{} // closed when the first instance is running
	restarts int
	// tty: the entrypoint had the foreground of its terminal (docker run
	// -it) when it was made, so every instance of the service gets it,
	// also one started again after a freeze=stop snapshot.
	tty bool
}

type instance struct {
	pid     int
	exited  chan struct{}   // closed once status is set
	status  unix.WaitStatus // valid after exited is closed
	planned bool            // stopped on purpose by Stop (guarded by Supervisor.mu)
}

// New checks argv (looked up in PATH when Run starts it) and prepares a supervisor
// with cfg as Validate parsed it; a cfg that has not passed Validate is
// validated here. env is the service's environment.
func New(cfg Config, argv, env []string, log zlog.Logger) (*Supervisor, error) {
	if len(argv) == 0 {
		return nil, errors.New("no service command given")
	}
	if !cfg.valid {
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
	}
	return &Supervisor{
		cfg: cfg, log: log, argv: argv, env: env,
		rewrite: cfg.rewrite, success: cfg.success,
		r:       newReaper(log),
		state:   StateStarting,
		restart: make(chan struct{}, 1),
		started: make(chan struct{}),
		tty:     isForegroundTTY(0),
	}, nil
}

// StartError is returned by Run when the service could not be started;
// Code is 127 when the command was not found and 126 when it is not executable.
type StartError struct {
	Cmd  string
	Code int
	Err  error
}

func (e *StartError) Error() string { return fmt.Sprintf("start service %q: %v", e.Cmd, e.Err) }
func (e *StartError) Unwrap() error { return e.Err }

// Started is closed once the first service process has been started.
func (s *Supervisor) Started() <-chan struct{} { return s.started }

// State reports the service's current state.
func (s *Supervisor) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// PID returns the current service process id (0 before start).
func (s *Supervisor) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.svc == nil {
		return 0
	}
	return s.svc.pid
}

// Restarts counts how often the service was started again by Start.
func (s *Supervisor) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// OrphansReaped counts zombies reaped that no caller was waiting for.
func (s *Supervisor) OrphansReaped() int64 { return s.r.orphans.Load() }

// Run starts the service and supervises it until it exits, returning its exit
// status. Cancelling ctx behaves like SIGTERM. Run must be called once.
//
// A TERM or INT that arrived before (since Before, or since Run was called)
// means the service is not started: Run then returns a *StoppedError.
func (s *Supervisor) Run(ctx context.Context) (Status, error) {
	s.Listen()
	chld, fwd, pipe := s.sig.chld, s.sig.fwd, s.sig.pipe
	// Unregistering costs as much as registering: the process is about to
	// exit, so do it off the exit path.
	defer func() {
		go func() {
			signal.Stop(chld)
			signal.Stop(fwd)
			signal.Stop(pipe)
		}()
	}()
	if sig := s.pendingStop(ctx); sig != 0 {
		return Status{}, &StoppedError{Signal: sig}
	}

	if _, err := s.spawn(); err != nil {
		return Status{}, err
	}
	close(s.started)
	go signal.Notify(fwd, s.notifiable(rareSignals)...)

	for {
		s.mu.Lock()
		inst := s.svc // Start may have made a new instance since the last pass
		exited := inst.exited
		if inst.planned && !s.stopping {
			exited = nil // Stop owns this exit; wait for Start's next instance
		}
		s.mu.Unlock()
		select {
		case <-chld:
			s.r.reap()
		case <-pipe:
		case sig := <-fwd:
			s.onSignal(sig.(syscall.Signal))
		case <-ctx.Done():
			ctx = context.Background() // once
			s.onSignal(unix.SIGTERM)
		case <-s.restart:
			s.mu.Lock()
			inst, err := s.svc, s.startErr
			s.mu.Unlock()
			if err != nil {
				// A restart after Stop failed: there is no service to wait
				// for, so end like an exit and report why.
				s.finish(Status{inst.status})
				return Status{}, err
			}
		case <-exited:
			st := Status{inst.status}
			s.finish(st)
			return st, nil
		}
	}
}

// sigChans are the supervisor's signal registrations.
type sigChans struct {
	chld, fwd, pipe chan os.Signal
}

// Listen makes this process the service's init now: it becomes a child
// subreaper (when not PID 1) and registers the signals it handles, so that
// from here on no signal kills it. Before and Run call it too; it runs once,
// and the registrations last until Run returns. Call it from the goroutine
// that calls Before and Run.
func (s *Supervisor) Listen() {
	if s.sig != nil {
		return
	}
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			s.log.Warn("cannot become child subreaper; orphans will not be reaped", zlog.Error(err))
		}
	}
	c := &sigChans{chld: make(chan os.Signal, 1), fwd: make(chan os.Signal, 64), pipe: make(chan os.Signal, 1)}
	signal.Notify(c.chld, unix.SIGCHLD)
	signal.Notify(c.fwd, s.notifiable(commonSignals)...)
	signal.Notify(c.pipe, unix.SIGPIPE) // caught so a broken pipe never kills PID 1
	s.sig = c
	if in := s.cfg.Inherited; !in.Default() {
		s.log.Info("started with signals ignored or blocked: the service inherits them, and ignored ones are not forwarded",
			zlog.Strings("ignored", signalNames(in.Ignored)), zlog.Strings("blocked", signalNames(in.Blocked)))
	}
}

// notifiable is sigs minus those the process was started with ignored: they
// stay ignored (the kernel drops them, as for tini), so the service inherits
// SIG_IGN for them too.
func (s *Supervisor) notifiable(sigs []syscall.Signal) []os.Signal {
	out := make([]os.Signal, 0, len(sigs))
	for _, sig := range sigs {
		if !s.cfg.Inherited.IsIgnored(sig) {
			out = append(out, sig)
		}
	}
	return out
}

// Before runs fn (an auto-restore) before the service starts, with the
// supervisor's signal handling already in place, so that no signal kills the
// process meanwhile. A TERM or INT cancels fn's context; once fn has
// returned, Before returns a *StoppedError holding fn's result, and Run will
// not start the service. A second one changes nothing: fn is left to finish
// cleanly. Other signals are dropped (there is no service to receive them).
func (s *Supervisor) Before(ctx context.Context, fn func(context.Context) error) error {
	s.Listen()
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn(fctx) }()
	var stop syscall.Signal
	for {
		select {
		case err := <-done:
			if stop != 0 {
				return &StoppedError{Signal: stop, Err: err}
			}
			return err
		case <-s.sig.chld:
			s.r.reap()
		case <-s.sig.pipe:
		case v := <-s.sig.fwd:
			sig := v.(syscall.Signal)
			switch {
			case !isStop(sig):
				s.log.Debug("signal before the service started: not forwarded", zlog.String("signal", SignalName(sig)))
			case stop == 0:
				stop, s.early = sig, sig
				cancel()
				s.log.Warn("stop signal before the service started: cancelling, the service will not be started", zlog.String("signal", SignalName(sig)))
			default:
				s.log.Warn("stop signal again: still waiting for the work before the service start to end cleanly", zlog.String("signal", SignalName(sig)))
			}
		}
	}
}

// pendingStop drains the signals that arrived before the service starts: it
// returns the first TERM or INT among them (or SIGTERM when ctx has ended),
// 0 when none. Other signals are dropped: there was no service to receive them.
func (s *Supervisor) pendingStop(ctx context.Context) syscall.Signal {
	stop := s.early
	if stop == 0 && ctx.Err() != nil {
		stop = unix.SIGTERM
	}
	for {
		select {
		case v := <-s.sig.fwd:
			if sig := v.(syscall.Signal); isStop(sig) && stop == 0 {
				stop = sig
			}
		default:
			return stop
		}
	}
}

// ExitCode is the entrypoint's exit code for the service's final status:
// its code (128+N when killed by signal N), or 0 when SNAPVISOR_SUCCESS_CODES lists it.
func (s *Supervisor) ExitCode(st Status) int {
	if c := st.Code(); !s.success[c] {
		return c
	}
	return 0
}

// forwardAs is the signal the service gets for sig (SNAPVISOR_SIGNAL_REWRITE);
// 0 means none.
func (s *Supervisor) forwardAs(sig syscall.Signal) syscall.Signal {
	if to, ok := s.rewrite[sig]; ok {
		return to
	}
	return sig
}

// spawn starts a service instance and makes it current.
//
// The service is started with syscall.ForkExec, not os/exec: we wait
// through the reaper, never through an os.Process, and os.StartProcess
// would add work to every start (the first one also probes pidfd support
// by forking a child of its own), about 0.4 ms on the init's start-to-exit.
func (s *Supervisor) spawn() (*instance, error) {
	path, err := exec.LookPath(s.argv[0]) // as exec.Command: PATH unless argv[0] holds a slash
	if err != nil {
		return nil, startError(s.argv[0], err)
	}
	env := s.env
	if env == nil {
		env = os.Environ() // as exec.Cmd with no Env
	}
	attr := &syscall.ProcAttr{Env: env, Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{Setpgid: true}}
	if s.tty {
		// docker run -it: give the terminal to the service's process group.
		// The child takes it before its signals are unblocked, so this works
		// also once an earlier instance had it and we are in the background.
		attr.Sys.Foreground = true
		attr.Sys.Ctty = 0
	}
	pid, done, err := s.r.start(func() (int, error) { return syscall.ForkExec(path, s.argv, attr) })
	if err != nil {
		return nil, startError(s.argv[0], err)
	}
	inst := &instance{pid: pid, exited: make(chan struct{})}
	go func() { // ends when the reaper routes the status
		inst.status = <-done
		close(inst.exited)
	}()
	s.mu.Lock()
	s.svc = inst
	s.state = StateRunning
	s.mu.Unlock()
	s.log.Info("service started", zlog.Strings("cmd", s.argv), zlog.Int("pid", pid))
	return inst, nil
}

func startError(cmd string, err error) error {
	code := 126
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		code = 127
	}
	return &StartError{Cmd: cmd, Code: code, Err: err}
}

func isForegroundTTY(fd int) bool {
	pgrp, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}

// onSignal relays one signal (rewritten by SNAPVISOR_SIGNAL_REWRITE) and
// runs the stop logic, which follows the TERM/INT received.
func (s *Supervisor) onSignal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.svc == nil {
		return
	}
	pid := s.svc.pid
	to := s.forwardAs(sig)
	if isStop(sig) {
		if s.stopping {
			s.log.Warn("second stop signal: killing the service now", zlog.String("signal", SignalName(sig)))
			s.killLocked()
			return
		}
		s.stopping = true
		s.killT = time.AfterFunc(s.cfg.StopTimeout, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.log.Warn("service did not stop in time: killing it", zlog.Duration("stop_timeout", s.cfg.StopTimeout))
			s.killLocked()
		})
	}
	if s.state == StatePaused && (isStop(sig) || isStop(to) || sig == unix.SIGQUIT || to == unix.SIGQUIT) {
		// A paused service cannot act on a stop signal: resume it first.
		// Other signals wait in its queue until the snapshot resumes it.
		_ = unix.Kill(-pid, unix.SIGCONT)
		s.state = StateRunning
	}
	if to == 0 {
		s.log.Debug("signal not forwarded (SNAPVISOR_SIGNAL_REWRITE)", zlog.String("signal", SignalName(sig)))
		return
	}
	target := pid
	if s.cfg.SignalGroup {
		target = -pid
	}
	if err := unix.Kill(target, to); err != nil && !errors.Is(err, unix.ESRCH) {
		s.log.Warn("forward signal", zlog.String("signal", SignalName(to)), zlog.Error(err))
	}
	if isStop(sig) && s.state != StatePaused && procStopped(pid) {
		// Stopped by a forwarded TSTP/TTIN/TTOU: it cannot act on the stop
		// signal until continued (a stop must not end in SIGKILL).
		_ = unix.Kill(-pid, unix.SIGCONT)
	}
	s.log.Debug("forwarded signal", zlog.String("signal", SignalName(sig)), zlog.String("as", SignalName(to)), zlog.Int("to", target))
}

// killLocked sends SIGKILL to the service and its process group.
func (s *Supervisor) killLocked() {
	if s.svc == nil {
		return
	}
	_ = unix.Kill(-s.svc.pid, unix.SIGKILL)
	_ = unix.Kill(s.svc.pid, unix.SIGKILL)
}

// finish runs when the service has exited for good: it stops every remaining
// descendant (TERM, then KILL after the stop timeout) so the container exits clean.
func (s *Supervisor) finish(st Status) {
	s.mu.Lock()
	s.state = StateExited
	s.stopping = true
	if s.killT != nil {
		s.killT.Stop()
	}
	pid := s.svc.pid
	s.mu.Unlock()
	s.log.Info("service exited", zlog.Int("pid", pid), zlog.Int("code", st.Code()), zlog.Stringer("status", st))
	_ = unix.Kill(-pid, unix.SIGTERM) // its group, which may outlive it
	s.cleanupDescendants()
}

func (s *Supervisor) cleanupDescendants() {
	if _, children := s.r.reap(); !children {
		return // every descendant is a child or below one: nothing left
	}
	self := os.Getpid()
	pids := descendants(self)
	if len(pids) == 0 {
		s.r.reap()
		return
	}
	s.log.Info("terminating remaining processes", zlog.Ints("pids", pids))
	for _, p := range pids {
		_ = unix.Kill(p, unix.SIGTERM)
	}
	deadline := time.Now().Add(s.cfg.StopTimeout)
	for time.Now().Before(deadline) {
		s.r.reap()
		if len(descendants(self)) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	left := descendants(self)
	s.log.Warn("killing processes that ignored SIGTERM", zlog.Ints("pids", left))
	for _, p := range left {
		_ = unix.Kill(p, unix.SIGKILL)
	}
	kill := time.Now().Add(2 * time.Second)
	for time.Now().Before(kill) {
		s.r.reap()
		if len(descendants(self)) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Pause stops the service's process group (SIGSTOP). Always pair with Resume.
func (s *Supervisor) Pause() error {
	return s.groupSignal(unix.SIGSTOP, StatePaused)
}

// Resume continues the service's process group (SIGCONT).
func (s *Supervisor) Resume() error {
	return s.groupSignal(unix.SIGCONT, StateRunning)
}

func (s *Supervisor) groupSignal(sig syscall.Signal, to State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.svc == nil || s.state == StateExited || s.state == StateStopped {
		return fmt.Errorf("%s service: not running (%s)", SignalName(sig), s.state)
	}
	if err := unix.Kill(-s.svc.pid, sig); err != nil {
		return fmt.Errorf("%s service group %d: %w", SignalName(sig), s.svc.pid, err)
	}
	s.state = to
	return nil
}

// Stop stops the service gracefully (SIGTERM, SIGKILL after the stop timeout)
// without ending Run; Start starts it again. It returns the service's status.
func (s *Supervisor) Stop(ctx context.Context) (Status, error) {
	s.mu.Lock()
	if s.stopping || s.svc == nil || s.state == StateExited {
		s.mu.Unlock()
		return Status{}, ErrShuttingDown
	}
	if s.state != StateRunning && s.state != StatePaused {
		st := s.state
		s.mu.Unlock()
		return Status{}, fmt.Errorf("stop service: it is %s", st)
	}
	inst := s.svc
	inst.planned = true
	pid := inst.pid
	if s.state == StatePaused {
		_ = unix.Kill(-pid, unix.SIGCONT)
	}
	s.state = StateStopped
	s.mu.Unlock()
	// The service gets what it gets for a TERM (a service that stops
	// gracefully on QUIT, SNAPVISOR_SIGNAL_REWRITE=TERM:QUIT, gets QUIT);
	// TERM when the rewrite says "do not forward".
	stopSig := s.forwardAs(unix.SIGTERM)
	if stopSig == 0 {
		stopSig = unix.SIGTERM
	}
	s.log.Info("stopping service", zlog.Int("pid", pid), zlog.String("signal", SignalName(stopSig)))
	target := pid
	if s.cfg.SignalGroup {
		target = -pid
	}
	_ = unix.Kill(target, stopSig)
	t := time.NewTimer(s.cfg.StopTimeout)
	defer t.Stop()
	for {
		select {
		case <-inst.exited:
			return Status{inst.status}, nil
		case <-t.C:
			s.log.Warn("service did not stop in time: killing it", zlog.Int("pid", pid))
			_ = unix.Kill(-pid, unix.SIGKILL)
			_ = unix.Kill(pid, unix.SIGKILL)
		case <-ctx.Done():
			_ = unix.Kill(-pid, unix.SIGKILL)
			_ = unix.Kill(pid, unix.SIGKILL)
			<-inst.exited
			return Status{inst.status}, ctx.Err()
		}
	}
}

// Start starts the service again after Stop.
func (s *Supervisor) Start() error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return ErrShuttingDown
	}
	if s.state != StateStopped {
		st := s.state
		s.mu.Unlock()
		return fmt.Errorf("start service: it is %s", st)
	}
	s.restarts++
	s.mu.Unlock()
	if _, err := s.spawn(); err != nil {
		s.mu.Lock()
		s.startErr = err
		s.mu.Unlock()
		select { // wake Run, which ends with err
		case s.restart <- struct{}{}:
		default:
		}
		return err
	}
	select {
	case s.restart <- struct{}{}:
	default:
	}
	return nil
}

// Exec runs a helper command (a hook) as a child of this process in its own
// process group, copying its stdout and stderr to out, and returns its own
// exit status; the reaper never steals it. When ctx ends first, the helper's
// whole group is killed and ctx's error is returned with the status.
func (s *Supervisor) Exec(ctx context.Context, argv, env []string, out io.Writer) (Status, error) {
	return execHelper(ctx, s.r, argv, env, out)
}

func execHelper(ctx context.Context, r *reaper, argv, env []string, out io.Writer) (Status, error) {
	if len(argv) == 0 {
		return Status{}, errors.New("exec: empty command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if cmd.Err != nil {
		return Status{}, fmt.Errorf("exec %s: %w", argv[0], cmd.Err)
	}
	cmd.Env = env
	pr, pw, err := os.Pipe()
	if err != nil {
		return Status{}, fmt.Errorf("exec %s: %w", argv[0], err)
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pid, done, err := r.start(func() (int, error) {
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	})
	pw.Close()
	if err != nil {
		return Status{}, fmt.Errorf("exec %s: %w", argv[0], err)
	}
	_ = cmd.Process.Release()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		if out == nil {
			out = io.Discard
		}
		_, _ = io.Copy(out, pr)
	}()
	var ws unix.WaitStatus
	var cerr error
	// Run's loop reaps on SIGCHLD; the ticker also reaps (through the same
	// single owner of wait4) so a hook finishes even after Run has returned.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case ws = <-done:
			break wait
		case <-tick.C:
			r.reap()
		case <-ctx.Done():
			_ = unix.Kill(-pid, unix.SIGKILL)
			cerr = ctx.Err()
			ctx = context.Background() // once
		}
	}
	// A background grandchild may keep the pipe open: wait briefly, then stop reading.
	select {
	case <-copied:
	case <-time.After(time.Second):
		_ = pr.SetReadDeadline(time.Now())
		<-copied
	}
	return Status{ws}, cerr
}

// ExecStandalone runs a helper command when no supervisor runs in this process
// (standalone subcommands): same contract as Supervisor.Exec.
func ExecStandalone(ctx context.Context, argv, env []string, out io.Writer) (Status, error) {
	if len(argv) == 0 {
		return Status{}, errors.New("exec: empty command")
	}
	if out == nil {
		out = io.Discard
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return Status{}, fmt.Errorf("exec %s: %w", argv[0], err)
	}
	stop := context.AfterFunc(ctx, func() { _ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL) })
	defer stop()
	werr := cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ctx.Err() != nil {
		return Status{unix.WaitStatus(ws)}, ctx.Err()
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		return Status{unix.WaitStatus(ws)}, fmt.Errorf("exec %s: %w", argv[0], werr)
	}
	return Status{unix.WaitStatus(ws)}, nil
}
