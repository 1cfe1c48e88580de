package config

import (
	"strings"
	"testing"
	"time"

	"snapvisor/internal/fuzzseed"
)

// ageSeeds are the committed corpus of FuzzParseAge: accepted forms, the
// edges of the grammar and values the hostile test tried.
var ageSeeds = []string{
	"0", "+0", "-0", "30d", "2w", "1d12h", "1w2d3h4m5s", "1.5d", "0.5w", "36h", "90m", "1.5h",
	"500ms", "10us", "10µs", "7ns", "12h1d", "+2d", "100000d", "106751d", "106752d", "15250w",
	"9223372036854775807ns", "9223372036854775808ns", "2562047h47m16.854775807s", "1.d", ".5d", ".d",
	"1e3d", "NaNd", "Infd", "1", "d", "-1d", "1x", "1d ", " 1d", "١d", "1.2.3d", "0x10d", "",
}

func TestFuzzSeeds(t *testing.T) {
	seeds := make([]fuzzseed.Seed, len(ageSeeds))
	for i, s := range ageSeeds {
		seeds[i] = fuzzseed.Seed{Name: fuzzseed.Name(s), Args: []any{s}}
	}
	fuzzseed.Sync(t, "FuzzParseAge", seeds)
	fuzzseed.Sync(t, "FuzzFormatAge", []fuzzseed.Seed{
		{Name: "seed-zero", Args: []any{int64(0)}},
		{Name: "seed-day", Args: []any{int64(day)}},
		{Name: "seed-mixed", Args: []any{int64(36*time.Hour + 1500*time.Millisecond)}},
		{Name: "seed-max", Args: []any{int64(1<<63 - 1)}},
		{Name: "seed-negative", Args: []any{int64(-1)}},
	})
}

// FuzzParseAge: ParseAge never panics; what it accepts is non-negative,
// FormatAge gives it back, and it agrees with time.ParseDuration wherever
// that accepts a non-negative duration (d and w are the only additions).
func FuzzParseAge(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 256 {
			return
		}
		d, err := ParseAge(s)
		if err == nil {
			if d < 0 {
				t.Fatalf("ParseAge(%q) = %v, negative", s, d)
			}
			back, err := ParseAge(FormatAge(d))
			if err != nil || back != d {
				t.Fatalf("ParseAge(FormatAge(%v) = %q) = %v, %v", d, FormatAge(d), back, err)
			}
		}
		if strings.HasPrefix(s, "-") {
			return
		}
		if want, perr := time.ParseDuration(s); perr == nil && want >= 0 {
			if err != nil || d != want {
				t.Fatalf("ParseAge(%q) = %v, %v; time.ParseDuration gives %v", s, d, err, want)
			}
		}
	})
}

// FuzzFormatAge: for every d ≥ 0, ParseAge(FormatAge(d)) == d.
func FuzzFormatAge(f *testing.F) {
	f.Fuzz(func(t *testing.T, n int64) {
		d := time.Duration(n)
		if d < 0 {
			return
		}
		got, err := ParseAge(FormatAge(d))
		if err != nil || got != d {
			t.Fatalf("ParseAge(FormatAge(%d) = %q) = %v, %v", n, FormatAge(d), got, err)
		}
	})
}
