package jobs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/go-co-op/gocron/v2"
	"go.uber.org/zap"

	"snapvisor/config"
	"snapvisor/snapshot"
)

// Listeners are the sockets Serve answers on, opened by Listen before the
// service starts so that a busy port or socket fails the start, not a
// snapshot hours later.
type Listeners struct {
	control net.Listener
	metrics net.Listener // nil when SNAPVISOR_METRICS_ADDR is empty
	path    string       // the control socket's path, removed on Close
}

// Listen checks that the snapshot directory is writable, then opens the
// control socket (mode 0600) and the metrics listener. A configuration they
// cannot work with (a directory that cannot be written, a path that is not a
// socket, an address that does not resolve) is a *config.Error; a busy
// socket or port is a plain error.
func (r *Runner) Listen() (*Listeners, error) {
	if err := r.snap.CheckDirWritable(); err != nil {
		return nil, err
	}
	path, err := r.cfg.SocketPath(true)
	if err != nil {
		return nil, err
	}
	ln, err := listenUnix(path, r.cfg.ControlSocket)
	if err != nil {
		return nil, err
	}
	l := &Listeners{control: ln, path: path}
	if r.cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", r.cfg.MetricsAddr)
		if err != nil {
			l.Close()
			if badAddress(err) {
				e := config.Invalid("METRICS_ADDR", r.cfg.MetricsAddr, "host:port or :port of an address of this host, e.g. 127.0.0.1:9150 or :9150 (empty: off)")
				e.Err = err
				return nil, e
			}
			return nil, fmt.Errorf("metrics listen %s (SNAPVISOR_METRICS_ADDR): %w", r.cfg.MetricsAddr, err)
		}
		l.metrics = mln
	}
	return l, nil
}

// CheckSocket checks a configured SNAPVISOR_CONTROL_SOCKET as it is on disk:
// missing or a socket. Anything else (a file, a directory) is a *config.Error,
// reported before auto-restore rather than when the socket is opened.
func (c Config) CheckSocket() error {
	if c.ControlSocket == "" {
		return nil
	}
	_, err := checkSocketPath(c.ControlSocket, c.ControlSocket)
	var ce *config.Error
	if errors.As(err, &ce) {
		return err
	}
	return nil // not ours to see (another uid's socket): the client says so, the server fails to listen
}

// checkSocketPath reports whether a socket exists at path; anything else
// there is a *config.Error for SNAPVISOR_CONTROL_SOCKET (value configured):
// only a socket is ever replaced.
func checkSocketPath(path, configured string) (exists bool, err error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("control socket %s: %w", path, err)
	case fi.Mode().Type() != fs.ModeSocket:
		e := config.Invalid("CONTROL_SOCKET", configured, "the path of a unix socket: nothing there, or a stale socket (only a socket is ever replaced)")
		e.Err = fmt.Errorf("%s is a %s", path, snapshot.FileKind(fi.Mode()))
		return false, e
	}
	return true, nil
}

// badAddress reports whether a listen error is the address's fault (it does
// not resolve, or is not an address of this host) rather than the moment's:
// a busy port, or a DNS lookup that timed out, may work on the next start.
func badAddress(err error) bool {
	var dns *net.DNSError
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return false
	case errors.As(err, &dns):
		return !dns.IsTimeout && !dns.IsTemporary
	}
	return true
}

// Close closes the listeners and removes the control socket; Serve calls it
// when it ends, a caller that never runs Serve calls it itself.
func (l *Listeners) Close() {
	l.control.Close()
	_ = os.Remove(l.path)
	if l.metrics != nil {
		l.metrics.Close()
	}
}

// schedulerStop bounds gocron's own wait for a scheduled task at shutdown.
// Its tasks return when Serve's context ends (Trigger waits with it; the run
// is the Runner's), so this is a backstop, not a wait for a run.
const schedulerStop = time.Second

// Serve runs the jobs beside the service until ctx ends, as actors of one
// group: the control socket, the metrics endpoint, the scheduler, the
// optional on-start snapshot, the health seed from the remotes, the lease
// keeper and the notifier. None of them waits for a run (the Runner owns it). When ctx ends,
// Serve stops in this order, the whole of it bounded by drain:
//
//  1. the actors return (servers closed, scheduler shut down, timers stopped);
//  2. the snapshot in progress finishes, or is abandoned (Runner.Drain);
//  3. the remotes' leases are released: a clean exit, the next writer takes
//     over at once.
//  4. the notifications still queued are delivered (FlushNotifications).
//
// Call it once the service has started.
func (r *Runner) Serve(ctx context.Context, l *Listeners, drain time.Duration) error {
	defer l.Close()
	sched, err := ParseSchedule(r.cfg.Schedule)
	if err != nil {
		return fmt.Errorf("schedule: %w", err)
	}
	s, err := gocron.NewScheduler(gocron.WithLocation(time.Local), gocron.WithClock(r.clock), gocron.WithStopTimeout(schedulerStop))
	if err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	// No singleton mode: a tick during a run goes through Trigger, which
	// coalesces it into the run in progress and logs it.
	job, err := s.NewJob(sched.def, gocron.NewTask(func() {
		jitter(ctx, r.cfg.Jitter)
		if ctx.Err() != nil {
			return
		}
		_, _ = r.Trigger(ctx, "schedule")
	}), gocron.WithName("snapshot"))
	if err != nil {
		return fmt.Errorf("schedule %q: %w", r.cfg.Schedule, err)
	}
	for _, x := range []struct {
		kind, expr string
		fn         func(context.Context)
	}{
		{kindReplicate, r.cfg.ReplicateSchedule, func(ctx context.Context) { _, _ = r.Replicate(ctx) }},
		{kindDrill, r.cfg.DrillSchedule, func(ctx context.Context) { _, _ = r.Drill(ctx, "") }},
	} {
		if x.expr == "" {
			continue
		}
		xs, err := ParseSchedule(x.expr)
		if err != nil {
			return fmt.Errorf("%s schedule: %w", x.kind, err)
		}
		// Singleton: a tick while the last one still runs is dropped.
		if _, err := s.NewJob(xs.def, gocron.NewTask(func() { x.fn(ctx) }), gocron.WithName(x.kind),
			gocron.WithSingletonMode(gocron.LimitModeReschedule)); err != nil {
			return fmt.Errorf("%s schedule %q: %w", x.kind, x.expr, err)
		}
		r.log.Info(x.kind+" scheduled", zap.String("schedule", x.expr))
	}
	maxAge := r.cfg.HealthMaxAge
	if maxAge == 0 {
		maxAge = 2*sched.Interval(time.Now()) + r.cfg.Jitter
	}
	next := func() time.Time { t, _ := job.NextRun(); return t }
	r.mu.Lock()
	r.healthMaxAge = maxAge // health turning bad is notified after each run
	r.mu.Unlock()

	// The group: sync.WaitGroup.Go is all it needs (no actor's error ends
	// the others: each logs its own), so no group library.
	var actors sync.WaitGroup
	ctl := &http.Server{Handler: r.controlHandler(ctx, next, maxAge), ReadHeaderTimeout: 5 * time.Second}
	actors.Go(func() { serveHTTP(ctx, ctl, l.control, "control socket", r.log) })
	if l.metrics != nil {
		ms := &http.Server{Handler: r.metricsHandler(next, maxAge), ReadHeaderTimeout: 5 * time.Second}
		actors.Go(func() { serveHTTP(ctx, ms, l.metrics, "metrics server", r.log) })
		r.log.Info("metrics listening", zap.String("addr", l.metrics.Addr().String()))
	}
	s.Start()
	actors.Go(func() {
		<-ctx.Done()
		if err := s.Shutdown(); err != nil {
			r.log.Warn("scheduler shutdown", zap.Error(err))
		}
	})
	r.log.Info("snapshots scheduled", zap.String("schedule", r.cfg.Schedule), zap.Time("next", next()),
		zap.String("dir", r.snap.Dir), zap.Strings("sources", r.snap.Sources), zap.String("control_socket", l.path))
	actors.Go(func() { r.notifier.run(ctx) })
	actors.Go(func() { r.seedFromRemotes(ctx) })
	actors.Go(func() { r.KeepLeases(ctx) })
	if r.cfg.OnStart {
		actors.Go(func() { r.onStart(ctx) })
	}
	<-ctx.Done()

	// The shutdown order, bounded by drain as a whole.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	if !waitGroup(dctx, &actors) {
		r.log.Warn("jobs still stopping at exit: left behind", zap.Duration("waited", drain))
	}
	if !r.Drain(dctx) {
		r.log.Warn("snapshot still running at exit: abandoned (its temporary file is removed by the next run)", zap.Duration("waited", drain))
	}
	r.ReleaseLeases(dctx)
	r.FlushNotifications(dctx) // the last run's, bounded
	return nil
}

// onStart takes the on-start snapshot after SNAPVISOR_START_DELAY, unless
// ctx ends first.
func (r *Runner) onStart(ctx context.Context) {
	t := r.clock.NewTimer(r.cfg.StartDelay)
	defer t.Stop()
	select {
	case <-t.Chan():
		_, _ = r.Trigger(ctx, "start")
	case <-ctx.Done():
	}
}

// metricsHandler serves /metrics (Prometheus text) and /healthz.
func (r *Runner) metricsHandler(next func() time.Time, maxAge time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		r.metrics.health(r.status(next(), maxAge).Healthy, maxAge)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		r.metrics.WritePrometheus(w)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		st := r.status(next(), maxAge)
		if !st.Healthy {
			http.Error(w, st.Problem, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// serveHTTP serves srv on ln until ctx ends, then closes it with its open
// connections: a client waiting for a snapshot gets an error, the run goes on.
func serveHTTP(ctx context.Context, srv *http.Server, ln net.Listener, what string, log *zap.Logger) {
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error(what, zap.Error(err))
	}
}

// waitGroup waits for wg, at most until ctx ends (false).
func waitGroup(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// listenUnix opens the control socket at path with mode 0600. A stale socket
// there (nothing answers) is replaced; anything else is never removed: a
// live socket is an error, and a file, a directory or another kind is a
// *config.Error for SNAPVISOR_CONTROL_SOCKET (whose value is configured).
func listenUnix(path, configured string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket dir: %w", err)
	}
	exists, err := checkSocketPath(path, configured)
	if err != nil {
		return nil, err
	}
	if exists {
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another snapvisor is already listening", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("control socket %s: remove the stale socket: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return ln, nil
}
