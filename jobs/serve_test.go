package jobs

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"snapvisor/internal/testutil"
)

// TestRunner_Serve: once its context ends, Serve returns within the drain
// (plus scheduling slack) whatever started the run in progress: the on-start
// snapshot, a scheduled one or a request over the control socket. The run's
// pre-hook outlasts the drain by seconds; the schedule and the on-start delay
// run on a fake clock.
func TestRunner_Serve(t *testing.T) {
	const (
		drain = 200 * time.Millisecond
		slack = 300 * time.Millisecond
	)
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
		// kick starts the run: called until a run is in progress (once
		// when once is set).
		kick func(ctx context.Context, fake *clockwork.FakeClock, sock string)
		once bool
	}{
		{"on-start run", func(c *Config) { c.OnStart, c.StartDelay, c.PreCommand = true, time.Minute, "sleep 3" },
			func(_ context.Context, fake *clockwork.FakeClock, _ string) { fake.Advance(time.Minute) }, false},
		{"scheduled run", func(c *Config) { c.Schedule, c.PreCommand = "@every 1s", "sleep 5" },
			func(_ context.Context, fake *clockwork.FakeClock, _ string) { fake.Advance(time.Second) }, false},
		{"run requested over the control socket", func(c *Config) { c.PreCommand = "sleep 3" },
			func(ctx context.Context, _ *clockwork.FakeClock, sock string) {
				go func() { _, _ = NewClient(sock).Snapshot(ctx) }()
			}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sock := filepath.Join(dir, "ctl.sock")
			cfg := Config{Schedule: "@daily", Freeze: FreezeNone, HookTimeout: time.Minute, FreezeTimeout: time.Minute, ControlSocket: sock}
			tc.cfg(&cfg)
			r := listenRunner(t, cfg, dir)
			// Serve abandons the run at the drain and returns without waiting
			// for it: the run ends a moment later and logs its failure to this
			// test's logger. After the last subtest that was after the end of
			// TestRunner_Serve: a panic ("Log in goroutine after ... has
			// completed") in 1 run in 4 under load. Wait for it (after cancel).
			defer func() {
				wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if !r.wait(wctx) {
					t.Error("the run left behind did not end")
				}
			}()
			fake := clockwork.NewFakeClock()
			r.clock = fake
			l, err := r.Listen()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			served := make(chan error, 1)
			go func() { served <- r.Serve(ctx, l, drain) }()

			kicked := false
			testutil.Eventually(t, 10*time.Second, "a run in progress", func() bool {
				if busy(r) {
					return true
				}
				if !kicked || !tc.once {
					tc.kick(ctx, fake, sock)
					kicked = true
				}
				return false
			})
			start := time.Now()
			cancel()
			select {
			case <-served:
				if took := time.Since(start); took > drain+slack {
					t.Fatalf("Serve returned %v after its context ended, want at most the drain %v + %v", took, drain, slack)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("Serve did not return within 10s of its context (drain %v)", drain)
			}
		})
	}
}

// busy reports whether a run is in progress.
func busy(r *Runner) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inflight != nil
}
