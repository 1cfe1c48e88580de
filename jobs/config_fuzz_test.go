package jobs

import (
	"testing"
	"time"

	"snapvisor/internal/fuzzseed"
)

// scheduleSeeds are SNAPVISOR_SCHEDULE values: every accepted form and the
// bad ones of the hostile test.
var scheduleSeeds = []string{
	"@daily", "@hourly", "@weekly", "@monthly", "@yearly", "@annually", "@midnight", "@every 1s", "@every 90m",
	"@every 2562047h47m16.854775807s", "@every 0.5s", "@every -1h", "@every", "@every 1d", "@reboot", "@",
	"* * * * *", "*/5 * * * *", "0 3 * * *", "0 0 * * 0", "30 2 1 * *", "0 0 1 1 *", "*/0 * * * *",
	"0 0 30 2 *", "0 0 31 4 *", "0 0 29 2 *", "0 0 0 29 2 *", "* * * * * *", "*/10 * * * * *", "0 0 3 * * 1-5",
	"0 0 * * MON-FRI", "0 0 1 JAN *", "0 0 L * *", "0 0 1W * *", "0 0 * * 5L", "0 0 * * 1#3", "1-59/2 * * * *",
	"60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "5-1 * * * *", "a b c d e",
	"TZ=Europe/Paris 0 3 * * *", "CRON_TZ=UTC 0 3 * * *", "TZ=Nowhere/City * * * * *", "", " ", "* * * *",
	"* * * * * * *", "0 0 1,15 * *", "0,30 * * * *", "?", "0 0 ? * *",
}

func TestFuzzSeeds(t *testing.T) {
	seeds := make([]fuzzseed.Seed, len(scheduleSeeds))
	for i, s := range scheduleSeeds {
		seeds[i] = fuzzseed.Seed{Name: fuzzseed.Name(s), Args: []any{s}}
	}
	fuzzseed.Sync(t, "FuzzParseSchedule", seeds)
}

// within runs fn and fails the test when it does not return within d (a
// hang): the goroutine is abandoned, the failure reported.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// FuzzParseSchedule: ParseSchedule never panics or hangs; a schedule it
// accepts runs: its next run is after now (whatever now is, across DST and
// leap days), and Interval, which health uses for its default maximum age,
// is positive and returns promptly.
func FuzzParseSchedule(f *testing.F) {
	nows := []time.Time{
		time.Date(2025, 3, 30, 1, 59, 59, 0, time.UTC),
		time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.UTC),
		time.Date(2025, 12, 31, 23, 59, 0, 0, time.Local),
	}
	f.Fuzz(func(t *testing.T, expr string) {
		if len(expr) > 256 {
			return
		}
		var s Schedule
		var err error
		within(t, 5*time.Second, "ParseSchedule", func() { s, err = ParseSchedule(expr) })
		if err != nil {
			return
		}
		for _, now := range nows {
			var next time.Time
			var interval time.Duration
			within(t, 5*time.Second, "Interval", func() { next, interval = s.next(now), s.Interval(now) })
			if !next.After(now) {
				t.Fatalf("ParseSchedule(%q) accepted a schedule whose next run after %v is %v", expr, now, next)
			}
			if interval <= 0 {
				t.Fatalf("ParseSchedule(%q): Interval(%v) = %v", expr, now, interval)
			}
		}
	})
}
