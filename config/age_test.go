package config

import (
	"testing"
	"time"
)

func TestParseAge_Valid(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"+0", 0},
		{"0d", 0},
		{"30d", 30 * day},
		{"2w", 14 * day},
		{"1d12h", 36 * time.Hour},
		{"1w2d3h4m5s", week + 2*day + 3*time.Hour + 4*time.Minute + 5*time.Second},
		{"1.5d", 36 * time.Hour},
		{"0.5w", 84 * time.Hour},
		{"36h", 36 * time.Hour},
		{"90m", 90 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{"1.5h", 90 * time.Minute},
		{"500ms", 500 * time.Millisecond},
		{"10us", 10 * time.Microsecond},
		{"10µs", 10 * time.Microsecond},
		{"7ns", 7},
		{"12h1d", 36 * time.Hour},
		{"+2d", 2 * day},
		{"100000d", 100000 * day},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseAge(tt.in)
			if err != nil {
				t.Fatalf("ParseAge(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseAge(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseAge_Invalid(t *testing.T) {
	for _, in := range []string{
		"", "+", "-1d", "-30m", "30", "d", "1.2.3d", "1x", "1D", "30 d", "1d 2h",
		"1y", "1d-2h", ".d", "1000000000d", "200000d100000d", "abc",
	} {
		t.Run(in, func(t *testing.T) {
			if got, err := ParseAge(in); err == nil {
				t.Errorf("ParseAge(%q) = %v, want an error", in, got)
			}
		})
	}
}

func TestFormatAge_RoundTrip(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{30 * day, "30d"},
		{36 * time.Hour, "1d12h0m0s"},
		{90 * time.Minute, "1h30m0s"},
		{2 * week, "14d"},
		{-time.Hour, "-1h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := FormatAge(tt.in)
			if got != tt.want {
				t.Errorf("FormatAge(%v) = %q, want %q", tt.in, got, tt.want)
			}
			if tt.in < 0 {
				return
			}
			back, err := ParseAge(got)
			if err != nil || back != tt.in {
				t.Errorf("ParseAge(%q) = %v, %v; want %v", got, back, err, tt.in)
			}
		})
	}
}
