package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"snapvisor/remote"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"snapvisor/internal/testutil"
	"snapvisor/rotation"
	"snapvisor/snapshot"
	"snapvisor/store"
)

// copySnapshotAs copies the archive at from into dir as the snapshot of cfg
// named for time at, with its own .sha256 (a snapshot from a host whose clock
// is elsewhere).
func copySnapshotAs(t *testing.T, from, dir string, cfg snapshot.Config, at time.Time) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	name := cfg.NameAt(at).String()
	sum := sha256.Sum256(b)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".sha256"), []byte(hex.EncodeToString(sum[:])+"  "+name+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestSameSecondWait(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 300e6, time.UTC) // 12:00:00.3
	sec := func(d time.Duration) time.Time { return now.Truncate(time.Second).Add(d) }
	for _, tc := range []struct {
		name       string
		times      []time.Time
		wantWait   time.Duration
		wantFuture []int
	}{
		{"none", nil, 0, nil},
		{"older only", []time.Time{sec(-time.Second), sec(-time.Hour)}, 0, nil},
		{"one in this second", []time.Time{sec(0), sec(-time.Second)}, 710 * time.Millisecond, nil},
		{"an hour ahead is not waited for", []time.Time{sec(time.Hour), sec(-time.Second)}, 0, []int{0}},
		{"a second ahead is not waited for", []time.Time{sec(time.Second)}, 0, []int{0}},
		// The newest is in the future, yet another one holds this second's name.
		{"future and this second", []time.Time{sec(time.Hour), sec(0)}, 710 * time.Millisecond, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wait, future := sameSecondWait(now, tc.times)
			if wait != tc.wantWait || !slices.Equal(future, tc.wantFuture) {
				t.Fatalf("sameSecondWait = %v, %v; want %v, %v", wait, future, tc.wantWait, tc.wantFuture)
			}
			if wait > time.Second+10*time.Millisecond {
				t.Fatalf("wait %v: more than a second", wait)
			}
		})
	}
}

// TestRunner_FutureSnapshot is finding 3: a snapshot named an hour ahead (a
// clock stepped back, a copy from a skewed host) made every run wait an hour,
// health stay green and the exit hang.
func TestRunner_FutureSnapshot(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{}, looping)
	first, _ := f.runner.Trigger(ctx, "test")
	if !first.OK() {
		t.Fatal(first.Error)
	}
	// Only a future-dated snapshot is left in DIR.
	future := copySnapshotAs(t, filepath.Join(f.snap.Dir, first.Snapshot), f.snap.Dir, f.snap, time.Now().Add(time.Hour))
	for _, p := range []string{first.Snapshot, first.Snapshot + ".sha256"} {
		if err := os.Remove(filepath.Join(f.snap.Dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	core, logs := observer.New(zap.WarnLevel)
	r := NewRunner(Config{Freeze: FreezeNone, HookTimeout: 5 * time.Second, FreezeTimeout: 10 * time.Second},
		f.snap, rotation.Policy{Keep: 10}, f.sup, nil, zap.New(core), nil)

	t.Run("warned at start, not the last good snapshot", func(t *testing.T) {
		if n := logs.FilterMessageSnippet("clock may have been stepped back").FilterField(zap.Strings("snapshots", []string{future})).Len(); n != 1 {
			t.Errorf("%d warnings naming %s at start, want 1: %v", n, future, logs.All())
		}
		st := r.status(time.Time{}, time.Hour)
		if st.LastGood != nil || st.Healthy {
			t.Fatalf("status with only a future-dated snapshot: %+v; want no last good snapshot and unhealthy", st)
		}
	})

	t.Run("a run completes promptly", func(t *testing.T) {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		done := make(chan Result, 1)
		go func() { res, _ := r.Trigger(tctx, "schedule"); done <- res }()
		var res Result
		select {
		case res = <-done:
		case <-tctx.Done():
			t.Fatal("a run with a future-dated snapshot in DIR did not finish within 5s")
		}
		if !res.OK() || res.Snapshot == future {
			t.Fatalf("run: %+v", res)
		}
		if n := logs.FilterMessageSnippet("clock may have been stepped back").Len(); n < 2 {
			t.Errorf("the run did not warn about the future-dated snapshot: %v", logs.All())
		}
		st := r.status(time.Time{}, time.Hour)
		if !st.Healthy || st.LastGood == nil || st.LastGood.Snapshot != res.Snapshot {
			t.Fatalf("status after the run: %+v, want healthy with %s", st, res.Snapshot)
		}
	})

	t.Run("a last good snapshot in the future counts as unknown", func(t *testing.T) {
		// The clock stepped back after the last good snapshot was found.
		r.mu.Lock()
		r.lastGood = Result{Reason: "found on disk", Started: time.Now().Add(time.Hour).Truncate(time.Second), Snapshot: future}
		r.mu.Unlock()
		st := r.status(time.Time{}, time.Hour)
		if st.Healthy || !strings.Contains(st.Problem, "future") {
			t.Fatalf("status with a future last good snapshot: %+v, want unhealthy naming the future date", st)
		}
	})

	t.Run("the newest past one is the last good snapshot", func(t *testing.T) {
		r2 := NewRunner(Config{}, f.snap, rotation.Policy{}, f.sup, nil, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), nil)
		st := r2.status(time.Time{}, time.Hour)
		if st.LastGood == nil || st.LastGood.Snapshot == future || !st.Healthy {
			t.Fatalf("status of a restarted runner: %+v, want the newest snapshot not in the future", st)
		}
	})
}

// TestRunner_ServeFutureSnapshot: scheduled runs go on with a future-dated
// snapshot in DIR, and Serve ends promptly (it waited EXIT_TIMEOUT).
func TestRunner_ServeFutureSnapshot(t *testing.T) {
	f := newFixture(t, Config{}, looping)
	res, _ := f.runner.Trigger(context.Background(), "test")
	if !res.OK() {
		t.Fatal(res.Error)
	}
	copySnapshotAs(t, filepath.Join(f.snap.Dir, res.Snapshot), f.snap.Dir, f.snap, time.Now().Add(time.Hour))
	cfg := Config{Schedule: "@every 1s", Freeze: FreezeNone, HookTimeout: 5 * time.Second, FreezeTimeout: 10 * time.Second,
		ControlSocket: filepath.Join(t.TempDir(), "ctl.sock")}
	r := NewRunner(cfg, f.snap, rotation.Policy{Keep: 10}, f.sup, nil, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), nil)
	l, err := r.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, l, time.Minute) }()
	defer cancel()
	testutil.Eventually(t, 10*time.Second, "two scheduled runs", func() bool {
		st := r.status(time.Time{}, time.Hour)
		return st.Runs >= 2 && st.Last != nil && st.Last.OK()
	})
	cancel()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not end within 5s of its context")
	}
}

// TestRunner_NextSecondStreaming: a streamed snapshot's name never waits
// for a last one in the future (a clock stepped back); one in this second
// waits for the next.
func TestRunner_NextSecondStreaming(t *testing.T) {
	snap := snapshot.Config{Sources: []string{t.TempDir()}, Name: "app"} // no Dir: streaming mode
	for _, tc := range []struct {
		name string
		last func(now time.Time) time.Time
	}{
		{"last an hour ahead", func(now time.Time) time.Time { return now.Add(time.Hour) }},
		{"last in this second", func(now time.Time) time.Time { return now }},
		{"no last", func(time.Time) time.Time { return time.Time{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Waiting for the future one would be cut short here, and be
			// longer than any scheduling delay.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r := NewRunner(Config{}, snap, rotation.Policy{}, nil, nil, zaptest.NewLogger(t), nil)
			start := time.Now()
			last := tc.last(start)
			r.streamedAt = last
			r.nextSecond(ctx, zaptest.NewLogger(t))
			at := time.Now()
			// At most a second, and a timer's lateness on a loaded machine
			// (1.15 s seen on 2 busy cores): a whole second more is a wrong wait.
			if at.Sub(start) > 2*time.Second {
				t.Errorf("waited %v, more than a second", at.Sub(start))
			}
			if at.Truncate(time.Second).Equal(last.Truncate(time.Second)) {
				t.Errorf("named %v, in the second of the last one", at)
			}
			// Not beyond the next second: the product wakes 10 ms into it.
			if !last.IsZero() && !last.After(start) && at.Truncate(time.Second).After(last.Truncate(time.Second).Add(time.Second)) {
				t.Errorf("named %v, later than the second after the last one (%v)", at, last)
			}
		})
	}
}

// TestRunner_SeedFromRemotesSkipsFuture: the newest snapshot on a remote
// that is dated in the future is not the last good one.
func TestRunner_SeedFromRemotesSkipsFuture(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{}, looping)
	res, _ := f.runner.Trigger(ctx, "test")
	if !res.OK() {
		t.Fatal(res.Error)
	}
	remoteDir := filepath.Join(t.TempDir(), "remote")
	past := copySnapshotAs(t, filepath.Join(f.snap.Dir, res.Snapshot), remoteDir, f.snap, time.Now().Add(-time.Minute))
	copySnapshotAs(t, filepath.Join(f.snap.Dir, res.Snapshot), remoteDir, f.snap, time.Now().Add(time.Hour))
	s, err := store.Open(ctx, "file://"+remoteDir, store.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	snap := f.snap
	snap.Dir = "" // streaming mode: the remotes are all there is
	r := NewRunner(Config{}, snap, rotation.Policy{}, f.sup, nil, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), nil)
	r.SetRemotes([]remote.Remote{{Store: s}})
	r.seedFromRemotes(ctx)
	if st := r.status(time.Time{}, time.Hour); st.LastGood == nil || st.LastGood.Snapshot != past {
		t.Fatalf("last good %+v, want %s (not the future-dated one)", st.LastGood, past)
	}
}
