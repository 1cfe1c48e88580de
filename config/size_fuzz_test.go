package config

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"snapvisor/internal/fuzzseed"
)

// sizeSeeds are the committed corpus of FuzzParseSize: accepted forms and
// the edges of the grammar (units, fractions, overflow).
var sizeSeeds = []string{
	"0", "10485760", "10MiB", "10 MiB", "10m", "10Mi", "10mb", "10MB", "1.5GB", "1.5KiB", "0.1KiB",
	".5MiB", "1.MiB", ".", "-1", "+1", "1e6", "0x10", "10XB", "10PiB", "10 M B", "1MiB1KiB",
	"9223372036854775807", "9223372036854775808", "8388607TiB", "8388608TiB", "9223372036854775807.5KiB",
	"1.0000001MB", "١MiB", "",
}

// TestFuzzSeeds_Size keeps the Size targets' seed corpora in step with
// their tables (FUZZ_SEEDS=update go test -run TestFuzzSeeds ./config).
func TestFuzzSeeds_Size(t *testing.T) {
	seeds := make([]fuzzseed.Seed, len(sizeSeeds))
	for i, s := range sizeSeeds {
		seeds[i] = fuzzseed.Seed{Name: fuzzseed.Name(s), Args: []any{s}}
	}
	fuzzseed.Sync(t, "FuzzParseSize", seeds)
	fuzzseed.Sync(t, "FuzzFormatSize", []fuzzseed.Seed{
		{Name: "seed-zero", Args: []any{int64(0), uint8(0)}},
		{Name: "seed-10mib", Args: []any{int64(10), uint8(2)}},
		{Name: "seed-1536kib", Args: []any{int64(1536), uint8(1)}},
		{Name: "seed-max-tib", Args: []any{int64(math.MaxInt64 >> 40), uint8(4)}},
		{Name: "seed-odd", Args: []any{int64(10<<20 + 1), uint8(0)}},
	})
}

// FuzzParseSize: ParseSize never panics; what it accepts is non-negative;
// a plain number of bytes is what strconv.ParseInt reads; and FormatSize
// of an accepted size below 1 KiB or a whole number of KiB is exact.
func FuzzParseSize(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 256 {
			return
		}
		n, err := ParseSize(s)
		if err == nil {
			if n < 0 {
				t.Fatalf("ParseSize(%q) = %d, negative", s, n)
			}
			if out := FormatSize(n); n < 1<<10 || n%(1<<10) == 0 {
				if back, err := ParseSize(out); err != nil || back != n {
					t.Fatalf("ParseSize(FormatSize(%d) = %q) = %d, %v", n, out, back, err)
				}
			}
		}
		if strings.Trim(s, "0123456789") == "" && s != "" {
			want, perr := strconv.ParseInt(s, 10, 64)
			if (perr == nil) != (err == nil) || want != n && perr == nil {
				t.Fatalf("ParseSize(%q) = %d, %v; strconv.ParseInt gives %d, %v", s, n, err, want, perr)
			}
		}
	})
}

// FuzzFormatSize: a size below 1 KiB or a whole number of a binary unit
// (n × 1024^k, k ≥ 1) is formatted exactly: ParseSize reads it back; any
// other size reads back (where its rounded text is whole bytes) within 5%.
func FuzzFormatSize(f *testing.F) {
	f.Fuzz(func(t *testing.T, n int64, k uint8) {
		u := int64(1) << (10 * (k % 5))
		if n < 0 || n > math.MaxInt64/u {
			return
		}
		m := n * u
		out := FormatSize(m)
		back, err := ParseSize(out)
		if m < 1<<10 || m%(1<<10) == 0 {
			if err != nil || back != m {
				t.Fatalf("ParseSize(FormatSize(%d) = %q) = %d, %v", m, out, back, err)
			}
			return
		}
		if err == nil && math.Abs(float64(back)-float64(m)) > 0.05*float64(m) {
			t.Fatalf("ParseSize(FormatSize(%d) = %q) = %d: more than 5%% off", m, out, back)
		}
	})
}
