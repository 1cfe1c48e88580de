package config

import (
	"errors"
	"strings"
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

// TestAge_Decode: envconfig parses an Age once at loading; it keeps the text
// as written ("12w", not "84d"), a default applies, and a bad value does not
// fail loading but is kept for the owner's Validate to report.
func TestAge_Decode(t *testing.T) {
	type ageSpec struct {
		Every  Age `envconfig:"SNAPVISOR_T_EVERY"`
		Retain Age `envconfig:"SNAPVISOR_T_RETAIN" default:"7d"`
		Unset  Age `envconfig:"SNAPVISOR_T_UNSET"`
	}
	t.Run("valid, default, unset", func(t *testing.T) {
		t.Setenv("SNAPVISOR_T_EVERY", "12w")
		var s ageSpec
		if err := Load(&s); err != nil {
			t.Fatal(err)
		}
		if s.Every.String() != "12w" || s.Every.Duration() != 12*week || s.Every.Err() != nil {
			t.Errorf("EVERY = %q %v %v, want 12w, %v", s.Every, s.Every.Duration(), s.Every.Err(), 12*week)
		}
		if s.Retain.String() != "7d" || s.Retain.Duration() != 7*day {
			t.Errorf("RETAIN = %q %v, want the default 7d", s.Retain, s.Retain.Duration())
		}
		if s.Unset.String() != "" || s.Unset.Duration() != 0 || s.Unset.Check("T_UNSET", "x") != nil {
			t.Errorf("UNSET = %q %v, want blank and valid", s.Unset, s.Unset.Duration())
		}
	})
	t.Run("bad value kept for Check", func(t *testing.T) {
		t.Setenv("SNAPVISOR_T_EVERY", "30 days")
		var s ageSpec
		if err := Load(&s); err != nil {
			t.Fatalf("Load = %v, want no error: Validate reports it", err)
		}
		err := s.Every.Check("T_EVERY", "a duration such as 30d")
		var ce *Error
		if !errors.As(err, &ce) || ce.Var != "SNAPVISOR_T_EVERY" || s.Every.Duration() != 0 {
			t.Fatalf("Check = %v, want a *Error for SNAPVISOR_T_EVERY", err)
		}
		for _, want := range []string{`SNAPVISOR_T_EVERY="30 days" is invalid`, "accepted: a duration such as 30d", "invalid duration"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q does not contain %q", err, want)
			}
		}
	})
	t.Run("blanks around a value", func(t *testing.T) {
		a := NewAge(" 1d12h ")
		if a.Duration() != 36*time.Hour || a.String() != " 1d12h " || a.Err() != nil {
			t.Errorf("NewAge(\" 1d12h \") = %q %v %v", a, a.Duration(), a.Err())
		}
		if a := NewAge("-1d"); a.Err() == nil {
			t.Error("NewAge(-1d) has no error")
		}
	})
}
