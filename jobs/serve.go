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

// Serve runs the scheduler, the optional on-start snapshot, the control
// socket and the metrics endpoint until ctx ends; then it stops them in
// reverse order and waits for a snapshot in progress to finish.
// Call it once the service has started.
func (r *Runner) Serve(ctx context.Context) error {
	sched, err := ParseSchedule(r.cfg.Schedule)
	if err != nil {
		return fmt.Errorf("schedule: %w", err)
	}
	s, err := gocron.NewScheduler(gocron.WithLocation(time.Local))
	if err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	job, err := s.NewJob(sched.def, gocron.NewTask(func() {
		jitter(ctx, r.cfg.Jitter)
		if ctx.Err() != nil {
			return
		}
		_, _ = r.Trigger(ctx, "schedule")
	}), gocron.WithName("snapshot"), gocron.WithSingletonMode(gocron.LimitModeReschedule))
	if err != nil {
		return fmt.Errorf("schedule %q: %w", r.cfg.Schedule, err)
	}
	maxAge := r.cfg.HealthMaxAge
	if maxAge == 0 {
		maxAge = 2*sched.Interval(time.Now()) + r.cfg.Jitter
	}
	next := func() time.Time { t, _ := job.NextRun(); return t }

	ln, err := listenUnix(r.cfg.ControlSocket)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctl := &http.Server{Handler: r.controlHandler(ctx, next, maxAge), ReadHeaderTimeout: 5 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := ctl.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("control socket", zap.Error(err))
		}
	}()
	defer func() {
		_ = ctl.Close()
		_ = os.Remove(r.cfg.ControlSocket)
	}()

	if r.cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", r.cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listen %s: %w", r.cfg.MetricsAddr, err)
		}
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
