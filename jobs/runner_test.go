package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapvisor/remote"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"snapvisor/internal/testutil"
	"snapvisor/rotation"
	"snapvisor/snapshot"
	"snapvisor/store"
	"snapvisor/supervisor"
)

// fixture is a real supervised service (sh) and a runner snapshotting a small tree.
type fixture struct {
	sup    *supervisor.Supervisor
	runner *Runner
	snap   snapshot.Config
	env    []string
	done   chan struct{}
	ready  string
	stop   context.CancelFunc // like a TERM to the entrypoint: the supervisor shuts down
}

// newFixture starts script (sh -c) under a real supervisor; script should touch $READY.
func newFixture(t *testing.T, cfg Config, script string) *fixture {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := os.WriteFile(filepath.Join(data, fmt.Sprintf("f%d", i)), []byte(strings.Repeat("data ", 1000)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	snap := snapshot.Config{Sources: []string{data}, Dir: filepath.Join(dir, "backups"), Name: "snapshot", Compression: "gzip"}
	ready := filepath.Join(dir, "ready")
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	env := append(os.Environ(), "READY="+ready)
	sup, err := supervisor.New(supervisor.Config{StopTimeout: 2 * time.Second}, []string{"sh", "-c", script}, env, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &fixture{sup: sup, snap: snap, env: env, done: make(chan struct{}), ready: ready, stop: cancel}
	go func() {
		defer close(f.done)
		_, _ = sup.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
			t.Error("supervisor did not stop")
		}
	})
	if cfg.HookTimeout == 0 {
		cfg.HookTimeout = 5 * time.Second
	}
	if cfg.FreezeTimeout == 0 {
		cfg.FreezeTimeout = 10 * time.Second
	}
	if cfg.Freeze == "" {
		cfg.Freeze = FreezeNone
	}
	f.runner = NewRunner(cfg, snap, rotation.Policy{Keep: 10}, sup, env, log, nil)
	f.waitReady(t)
	return f
}

func (f *fixture) waitReady(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, "service ready", func() bool {
		_, err := os.Stat(f.ready)
		return err == nil && f.sup.State() == supervisor.StateRunning
	})
}

const looping = `trap 'exit 0' TERM; touch "$READY"; while :; do sleep 0.05; done`

func TestRunner_Final(t *testing.T) {
	t.Run("waits for the run in progress, never two at once", func(t *testing.T) {
		// The pre-hook holds the first run until the test releases it.
		gate := filepath.Join(t.TempDir(), "gate")
		f := newFixture(t, Config{PreCommand: "while [ ! -e " + gate + " ]; do sleep 0.02; done"}, looping)
		first := make(chan Result, 1)
		go func() { r, _ := f.runner.Trigger(context.Background(), "test"); first <- r }()
		testutil.Eventually(t, 5*time.Second, "run in progress", func() bool { return f.runner.status(time.Time{}, time.Hour).Running })

		final := make(chan Result, 1)
		go func() { final <- f.runner.Final(context.Background()) }()
		select {
		case r := <-final:
			t.Fatalf("Final ran during another run: %+v", r)
		case <-time.After(200 * time.Millisecond):
		}
		if err := os.WriteFile(gate, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		r1, r2 := <-first, <-final
		if !r1.OK() || !r2.OK() || r1.Snapshot == r2.Snapshot || r2.Coalesced {
			t.Fatalf("want two distinct snapshots, got %+v and %+v", r1, r2)
		}
		st := f.runner.status(time.Time{}, time.Hour)
		if st.Runs != 2 || st.LastGood == nil || st.LastGood.Snapshot != r2.Snapshot {
			t.Errorf("status after Final: runs %d, last good %+v; want 2 runs and the final snapshot", st.Runs, st.LastGood)
		}
	})

	t.Run("ctx ends while waiting", func(t *testing.T) {
		gate := filepath.Join(t.TempDir(), "gate")
		f := newFixture(t, Config{PreCommand: "while [ ! -e " + gate + " ]; do sleep 0.02; done"}, looping)
		defer func() {
			// The run left behind ends before the test does: it logs to the
			// test's logger (seen: "Log in goroutine after ... has completed").
			_ = os.WriteFile(gate, nil, 0o644)
			wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if !f.runner.wait(wctx) {
				t.Error("the run left behind did not end")
			}
		}()
		go func() { _, _ = f.runner.Trigger(context.Background(), "test") }()
		testutil.Eventually(t, 5*time.Second, "run in progress", func() bool { return f.runner.status(time.Time{}, time.Hour).Running })
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if r := f.runner.Final(ctx); r.OK() || r.Error == "" {
			t.Fatalf("Final with an expired ctx: %+v, want an error", r)
		}
		if f.runner.wait(ctx) {
			t.Error("Wait reported idle while a run is in progress")
		}
	})
}

func TestRunner_FreezeStop(t *testing.T) {
	t.Run("service started again after a clean stop", func(t *testing.T) {
		f := newFixture(t, Config{Freeze: FreezeStop}, looping)
		first := f.sup.PID()
		res, _ := f.runner.Trigger(context.Background(), "test")
		if !res.OK() {
			t.Fatalf("snapshot failed: %s", res.Error)
		}
		testutil.Eventually(t, 5*time.Second, "service running again", func() bool {
			return f.sup.State() == supervisor.StateRunning && f.sup.PID() != first
		})
	})

	t.Run("service started again when the stop times out", func(t *testing.T) {
		// The service ignores TERM and the freeze timeout is shorter than
		// the stop timeout: Stop fails, yet the service must come back.
		f := newFixture(t, Config{Freeze: FreezeStop, FreezeTimeout: 300 * time.Millisecond},
			`trap '' TERM; touch "$READY"; while :; do sleep 0.05; done`)
		first := f.sup.PID()
		res, _ := f.runner.Trigger(context.Background(), "test")
		if res.OK() {
			t.Fatalf("snapshot succeeded although the stop timed out: %+v", res)
		}
		testutil.Eventually(t, 5*time.Second, "service running again", func() bool {
			return f.sup.State() == supervisor.StateRunning && f.sup.PID() != first
		})
	})
}

func TestRunner_Status(t *testing.T) {
	t.Run("no snapshot yet is unhealthy", func(t *testing.T) {
		f := newFixture(t, Config{}, looping)
		if st := f.runner.status(time.Time{}, time.Hour); st.Healthy || st.Problem == "" {
			t.Fatalf("fresh runner without grace: %+v, want unhealthy", st)
		}
		if res, _ := f.runner.Trigger(context.Background(), "test"); !res.OK() {
			t.Fatal(res.Error)
		}
		if st := f.runner.status(time.Time{}, time.Hour); !st.Healthy || st.LastGood == nil {
			t.Fatalf("after a snapshot: %+v, want healthy", st)
		}
		if st := f.runner.status(time.Time{}, time.Nanosecond); st.Healthy {
			t.Fatalf("snapshot older than max age: %+v, want unhealthy", st)
		}
	})
	t.Run("grace period", func(t *testing.T) {
		f := newFixture(t, Config{HealthGrace: time.Hour}, looping)
		if st := f.runner.status(time.Time{}, time.Minute); !st.Healthy || st.Note == "" {
			t.Fatalf("fresh runner within SNAPVISOR_HEALTH_GRACE: %+v, want healthy with a note", st)
		}
		f.runner.started = time.Now().Add(-2 * time.Hour)
		if st := f.runner.status(time.Time{}, time.Minute); st.Healthy {
			t.Fatalf("grace period over without a snapshot: %+v, want unhealthy", st)
		}
	})
	t.Run("streaming mode counts the remotes' snapshots after a restart", func(t *testing.T) {
		ctx := context.Background()
		f := newFixture(t, Config{}, looping)
		snap := f.snap
		snap.Dir = "" // streaming mode: no local snapshots
		good, err := store.Open(ctx, "file://"+filepath.Join(t.TempDir(), "remote"), store.Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { good.Close() })
		// A remote whose directory is gone cannot be listed: it is skipped.
		brokenDir := filepath.Join(t.TempDir(), "gone")
		broken, err := store.Open(ctx, "file://"+brokenDir, store.Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { broken.Close() })
		if err := os.RemoveAll(brokenDir); err != nil {
			t.Fatal(err)
		}
		log := zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))

		// The container before the restart streamed one snapshot.
		info, results, err := remote.Stream(ctx, snap, []remote.Remote{{Store: good}}, time.Now(), log)
		if err != nil || results[0].Error != "" {
			t.Fatalf("remote.Stream: %v %+v", err, results)
		}

		// The restarted one knows it once it has listed its remotes.
		r := NewRunner(Config{}, snap, rotation.Policy{}, f.sup, nil, log, nil)
		r.SetRemotes([]remote.Remote{{Store: broken}, {Store: good}})
		if st := r.status(time.Time{}, time.Hour); st.Healthy {
			t.Fatalf("before listing the remotes: %+v, want unhealthy", st)
		}
		r.seedFromRemotes(ctx)
		st := r.status(time.Time{}, time.Hour)
		if !st.Healthy || st.LastGood == nil || st.LastGood.Snapshot != info.Name {
			t.Fatalf("after listing the remotes: %+v, want healthy with last good %s", st, info.Name)
		}
	})
}

func TestConfig_Validate(t *testing.T) {
	base := Config{Schedule: "@daily", Freeze: FreezeNone, Restore: RestoreModeIfEmpty, ExitTimeout: time.Minute,
		HookTimeout: time.Second, FreezeTimeout: time.Minute, ControlSocket: "/tmp/x.sock"}
	for _, tc := range []struct {
		name    string
		mod     func(*Config)
		wantVar string
	}{
		{"valid", func(*Config) {}, ""},
		{"bad schedule", func(c *Config) { c.Schedule = "61 * * * *" }, "SNAPVISOR_SCHEDULE"},
		{"bad freeze", func(c *Config) { c.Freeze = "freeze" }, "SNAPVISOR_FREEZE"},
		{"metrics port", func(c *Config) { c.MetricsAddr = ":9150" }, ""},
		{"metrics host:port", func(c *Config) { c.MetricsAddr = "127.0.0.1:9150" }, ""},
		{"metrics no port", func(c *Config) { c.MetricsAddr = "127.0.0.1" }, "SNAPVISOR_METRICS_ADDR"},
		{"metrics bad port", func(c *Config) { c.MetricsAddr = "127.0.0.1:http-alt" }, "SNAPVISOR_METRICS_ADDR"},
		{"min interval off", func(c *Config) { c.MinInterval = 0 }, ""},
		{"negative min interval", func(c *Config) { c.MinInterval = -time.Second }, "SNAPVISOR_MIN_INTERVAL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mod(&c)
			err := c.Validate()
			if tc.wantVar == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantVar) {
				t.Fatalf("error %v, want one naming %s", err, tc.wantVar)
			}
		})
	}
}
