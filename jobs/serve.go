package jobs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"go.uber.org/zap"
)

// Listeners are the sockets Serve answers on, opened by Listen before the
// service starts so that a busy port or socket fails the start, not a
// snapshot hours later.
type Listeners struct {
	control net.Listener
	metrics net.Listener // nil when SNAPVISOR_METRICS_ADDR is empty
	path    string       // the control socket's path, removed on Close
}

// Listen opens the control socket (mode 0600) and the metrics listener.
func (r *Runner) Listen() (*Listeners, error) {
	ln, err := listenUnix(r.cfg.ControlSocket)
	if err != nil {
		return nil, err
	}
	l := &Listeners{control: ln, path: r.cfg.ControlSocket}
	if r.cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", r.cfg.MetricsAddr)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("metrics listen %s (SNAPVISOR_METRICS_ADDR): %w", r.cfg.MetricsAddr, err)
		}
		l.metrics = mln
	}
	return l, nil
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

// Serve runs the scheduler, the optional on-start snapshot, the control
// socket and the metrics endpoint on l until ctx ends; then it stops them in
// reverse order and waits, at most drain, for a snapshot in progress to
// finish. Call it once the service has started.
func (r *Runner) Serve(ctx context.Context, l *Listeners, drain time.Duration) error {
	defer l.Close()
	sched, err := ParseSchedule(r.cfg.Schedule)
	if err != nil {
		return fmt.Errorf("schedule: %w", err)
	}
	s, err := gocron.NewScheduler(gocron.WithLocation(time.Local))
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
	maxAge := r.cfg.HealthMaxAge
	if maxAge == 0 {
		maxAge = 2*sched.Interval(time.Now()) + r.cfg.Jitter
	}
	next := func() time.Time { t, _ := job.NextRun(); return t }

	// Deferred calls run in reverse: scheduler, metrics, control socket,
	// goroutines, the wait for a snapshot in progress, and last the release
	// of the remotes' leases (a clean exit: the next writer takes over at once).
	defer r.ReleaseLeases(context.Background()) // bounded per remote (leaseOpTimeout)
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), drain)
		defer cancel()
		if !r.Wait(dctx) {
			r.log.Warn("snapshot still running at exit: abandoned (its temporary file is removed by the next run)", zap.Duration("waited", drain))
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctl := &http.Server{Handler: r.controlHandler(ctx, next, maxAge), ReadHeaderTimeout: 5 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := ctl.Serve(l.control); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("control socket", zap.Error(err))
		}
	}()
	defer func() { _ = ctl.Close() }()

	if mln := l.metrics; mln != nil {
		mux := http.NewServeMux()
		mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
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
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ms.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				r.log.Error("metrics server", zap.Error(err))
			}
		}()
		defer ms.Close()
		r.log.Info("metrics listening", zap.String("addr", mln.Addr().String()))
	}

	s.Start()
	defer func() {
		if err := s.Shutdown(); err != nil {
			r.log.Warn("scheduler shutdown", zap.Error(err))
		}
	}()
	r.log.Info("snapshots scheduled", zap.String("schedule", r.cfg.Schedule), zap.Time("next", next()),
		zap.String("dir", r.snap.Dir), zap.Strings("sources", r.snap.Sources), zap.String("control_socket", r.cfg.ControlSocket))

	wg.Add(1)
	go func() {
		defer wg.Done()
		r.seedFromRemotes(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.KeepLeases(ctx)
	}()
	if r.cfg.OnStart {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTimer(r.cfg.StartDelay)
			defer t.Stop()
			select {
			case <-t.C:
				_, _ = r.Trigger(ctx, "start")
			case <-ctx.Done():
			}
		}()
	}
	<-ctx.Done()
	return nil
}

// listenUnix opens the control socket with mode 0600, replacing a stale one.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket dir: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another snapvisor is already listening", path)
	}
	_ = os.Remove(path)
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
