package jobs

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"snapvisor/rotation"
	"snapvisor/snapshot"
)

func TestWithinMinInterval(t *testing.T) {
	end := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		end  time.Time
		now  time.Time
		min  time.Duration
		want bool
	}{
		{"no previous run", time.Time{}, end, time.Minute, false},
		{"just after", end, end.Add(time.Second), time.Minute, true},
		{"at the limit", end, end.Add(time.Minute), time.Minute, false},
		{"after", end, end.Add(2 * time.Minute), time.Minute, false},
		{"off", end, end.Add(time.Second), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			until, ok := withinMinInterval(tc.end, tc.now, tc.min)
			if ok != tc.want || (ok && !until.Equal(tc.end.Add(tc.min))) {
				t.Fatalf("withinMinInterval = %v, %v; want %v until %v", until, ok, tc.want, tc.end.Add(tc.min))
			}
		})
	}
}

// TestRunner_MinInterval is finding 6: a storm of on-demand snapshots (8
// `entrypoint snapshot` in a row) is one snapshot, and with FREEZE=stop one
// restart; scheduled runs are not held back.
func TestRunner_MinInterval(t *testing.T) {
	f := newFixture(t, Config{Freeze: FreezeStop, MinInterval: time.Minute}, looping)
	ctx := context.Background()
	var results []Result
	for range 8 {
		res, err := f.runner.Trigger(ctx, ReasonRequest)
		if err != nil || !res.OK() {
			t.Fatalf("request: %+v %v", res, err)
		}
		results = append(results, res)
	}
	list, err := snapshot.List(f.snap.Dir, f.snap.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("%d snapshots after 8 requests in a row, want 1", len(list))
	}
	if got := f.sup.Restarts(); got != 1 {
		t.Errorf("service restarted %d times for 8 requests, want 1", got)
	}
	for i, res := range results[1:] {
		if !res.Coalesced || res.Snapshot != results[0].Snapshot || !strings.Contains(res.Note, "SNAPVISOR_MIN_INTERVAL") || res.NextAllowed.IsZero() {
			t.Errorf("request %d: %+v, want the first run's result, coalesced, with a note and the next allowed time", i+2, res)
		}
	}
	if results[0].Coalesced {
		t.Errorf("the first request was coalesced: %+v", results[0])
	}
	if res, _ := f.runner.Trigger(ctx, "schedule"); !res.OK() || res.Coalesced || res.Snapshot == results[0].Snapshot {
		t.Errorf("scheduled run within SNAPVISOR_MIN_INTERVAL: %+v, want a new snapshot", res)
	}
	if got := f.sup.Restarts(); got != 2 {
		t.Errorf("service restarted %d times after the scheduled run, want 2", got)
	}

	t.Run("0 turns it off", func(t *testing.T) {
		// The same service: two supervisors in one process would reap each other's children.
		r := NewRunner(Config{Freeze: FreezeNone, HookTimeout: 5 * time.Second}, f.snap, rotation.Policy{Keep: 10}, f.sup, f.env, zap.NewNop(), nil)
		a, _ := r.Trigger(ctx, ReasonRequest)
		b, _ := r.Trigger(ctx, ReasonRequest)
		if !a.OK() || !b.OK() || b.Coalesced || a.Snapshot == b.Snapshot {
			t.Fatalf("two requests without SNAPVISOR_MIN_INTERVAL: %+v, %+v; want two snapshots", a, b)
		}
	})
}

// TestRunner_MissingSource: a source that does not exist (no snapshot was
// restored into it) is a warning at start and skipped runs, not failures;
// health still fails once the grace period is over.
func TestRunner_MissingSource(t *testing.T) {
	f := newFixture(t, Config{}, looping)
	if err := os.RemoveAll(f.snap.Sources[0]); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	r := NewRunner(Config{Freeze: FreezeStop, FreezeTimeout: 10 * time.Second, HookTimeout: 5 * time.Second, MinInterval: time.Minute},
		f.snap, rotation.Policy{Keep: 10}, f.sup, f.env, zap.New(core), nil)
	if n := logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("snapshots will start once it exists").Len(); n != 1 {
		t.Errorf("%d warnings at start about the missing source, want 1: %+v", n, logs.All())
	}
	first := f.sup.PID()
	for _, reason := range []string{"schedule", ReasonRequest} {
		res, _ := r.Trigger(context.Background(), reason)
		if res.OK() || res.Error != "" || !strings.Contains(res.Skipped, f.snap.Sources[0]) {
			t.Fatalf("%s run with a missing source: %+v, want skipped naming it, no error", reason, res)
		}
	}
	if errs := logs.FilterLevelExact(zapcore.ErrorLevel).All(); len(errs) > 0 {
		t.Errorf("ERROR lines for a missing source: %+v", errs)
	}
	if f.sup.PID() != first {
		t.Error("the service was stopped for a run that had nothing to snapshot")
	}
	if st := r.status(time.Time{}, time.Hour); st.Healthy || st.Last == nil || st.Last.Skipped == "" {
		t.Errorf("status without a grace period: %+v, want unhealthy (no good snapshot) and the skipped run", st)
	}

	// The source appears: the next run (a request right after skipped ones
	// is not held back by SNAPVISOR_MIN_INTERVAL) takes a snapshot.
	if err := os.MkdirAll(f.snap.Sources[0], 0o755); err != nil {
		t.Fatal(err)
	}
	if res, _ := r.Trigger(context.Background(), ReasonRequest); !res.OK() {
		t.Fatalf("run once the source exists: %+v", res)
	}

	t.Run("a pre-hook may create it", func(t *testing.T) {
		if err := os.RemoveAll(f.snap.Sources[0]); err != nil {
			t.Fatal(err)
		}
		r := NewRunner(Config{Freeze: FreezeNone, HookTimeout: 5 * time.Second, PreCommand: "mkdir -p " + f.snap.Sources[0]},
			f.snap, rotation.Policy{Keep: 10}, f.sup, f.env, zap.NewNop(), nil)
		if res, _ := r.Trigger(context.Background(), "schedule"); !res.OK() {
			t.Fatalf("run whose pre-hook creates the source: %+v", res)
		}
	})
}
