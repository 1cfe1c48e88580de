package testutil

import (
	"fmt"
	"testing"
	"time"
)

// recorder is a testing.TB whose Fatalf and Skipf end the helper under test
// (as runtime.Goexit would) and record how.
type recorder struct {
	testing.TB
	ended string // "", "fatal" or "skip"
	msg   string
}

type stop struct{}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.ended, r.msg = "fatal", fmt.Sprintf(format, args...)
	panic(stop{})
}
func (r *recorder) Skipf(format string, args ...any) {
	r.ended, r.msg = "skip", fmt.Sprintf(format, args...)
	panic(stop{})
}

// run calls f with r, returning when f returns or r ends it.
func (r *recorder) run(f func(testing.TB)) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stop); !ok {
				panic(v)
			}
		}
	}()
	f(r)
}

func TestEventually(t *testing.T) {
	// A condition that holds gets 10 s (3 polls take 30 ms, but a loaded
	// machine can stall the sleeps between them); one that never holds 200 ms.
	for _, tc := range []struct {
		name      string
		trueAfter int // calls of cond before it holds; -1: never
		within    time.Duration
		wantEnd   string
	}{
		{"holds at once", 0, 10 * time.Second, ""},
		{"holds after a few polls", 3, 10 * time.Second, ""},
		{"never holds", -1, 200 * time.Millisecond, "fatal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			calls := 0
			start := time.Now()
			r.run(func(tb testing.TB) {
				Eventually(tb, tc.within, "the condition", func() bool {
					calls++
					return tc.trueAfter >= 0 && calls > tc.trueAfter
				})
			})
			if r.ended != tc.wantEnd {
				t.Fatalf("ended %q (%s), want %q", r.ended, r.msg, tc.wantEnd)
			}
			if tc.wantEnd == "fatal" && time.Since(start) < tc.within {
				t.Errorf("gave up after %v, before its deadline", time.Since(start))
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		ci, want string
	}{
		{"true", "fatal"},
		{"", "skip"},
		{"false", "skip"},
		{"1", "skip"},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &recorder{TB: t}
			r.run(func(tb testing.TB) { Unavailable(tb, "no %s here", "server") })
			if r.ended != tc.want {
				t.Fatalf("ended %q, want %q", r.ended, tc.want)
			}
		})
	}
}
