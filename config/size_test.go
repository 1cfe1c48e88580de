package config

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"text/tabwriter"
)

func TestParseSize_Valid(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"0MiB", 0},
		{"10485760", 10 << 20},
		{"512B", 512},
		{"512 b", 512},
		{"10MiB", 10 << 20},
		{"10 MiB", 10 << 20},
		{"10\tMiB", 10 << 20},
		{"10mib", 10 << 20},
		{"10MIB", 10 << 20},
		{"10m", 10 << 20},
		{"10M", 10 << 20},
		{"10Mi", 10 << 20},
		{"4k", 4 << 10},
		{"4KiB", 4 << 10},
		{"2G", 2 << 30},
		{"2GiB", 2 << 30},
		{"3T", 3 << 40},
		{"3TiB", 3 << 40},
		{"5kB", 5000},
		{"5KB", 5000},
		{"10MB", 10_000_000},
		{"10 mb", 10_000_000},
		{"2GB", 2_000_000_000},
		{"3TB", 3_000_000_000_000},
		{"1.5KiB", 1536},
		{"1.5GB", 1_500_000_000},
		{"1.1MB", 1_100_000},
		{".5MiB", 512 << 10},
		{"1.MiB", 1 << 20},
		{"2.000", 2},
		{"007", 7},
		{"9223372036854775807", math.MaxInt64},
		{"8388607TiB", 8388607 << 40},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if err != nil {
				t.Fatalf("ParseSize(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

// TestParseSize_Invalid: each refusal says why, and for a bad unit which
// units there are.
func TestParseSize_Invalid(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty"},
		{"-1", "negative"},
		{"-10MiB", "negative"},
		{"MiB", "expected a number"},
		{".", "expected a number"},
		{".MiB", "expected a number"},
		{"1.2.3MiB", "expected a number"},
		{"+10MiB", "expected a number"},
		{" 10MiB", "expected a number"},
		{"10XB", `unknown unit "XB" (known: B; KiB, MiB`},
		{"10 MiBs", `unknown unit "MiBs"`},
		{"10MiB ", `unknown unit "MiB "`},
		{"10PiB", `unknown unit "PiB"`},
		{"1e6", `unknown unit "e6"`},
		{"10 M B", `unknown unit "M B"`},
		{"0x10", `unknown unit "x10"`},
		{"1.5", "not a whole number of bytes"},
		{"0.1KiB", "not a whole number of bytes"},
		{"1.0000001MB", "not a whole number of bytes"},
		{"9223372036854775808", "too large"},
		{"8388608TiB", "too large"},
		{"99999999999999999999999", "too large"},
		{"9223372036854775807.5KiB", "too large"},
		{"1MiB1KiB", `unknown unit "MiB1KiB"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if err == nil {
				t.Fatalf("ParseSize(%q) = %d, want an error", tt.in, got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseSize(%q) = %v, want an error containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in    int64
		want  string
		exact bool // ParseSize reads it back to in
	}{
		{0, "0 B", true},
		{512, "512 B", true},
		{1023, "1023 B", true},
		{1024, "1 KiB", true},
		{1536, "1.5 KiB", true},
		{1537, "1.5 KiB", false},
		{10 << 20, "10 MiB", true},
		{10<<20 + 512<<10, "10.5 MiB", true},
		{1025 << 10, "1025 KiB", true},
		{1<<30 + 1<<20, "1025 MiB", true},
		{12897484, "12.3 MiB", false},
		{10<<20 + 1, "10.0 MiB", false},
		{1<<20 - 1, "1.0 MiB", false},
		{3 << 30, "3 GiB", true},
		{3 << 40, "3 TiB", true},
		{5 << 50, "5120 TiB", true},
		{math.MaxInt64, "8388608.0 TiB", false},
		{-5, "-5 B", false},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := FormatSize(tt.in)
			if got != tt.want {
				t.Errorf("FormatSize(%d) = %q, want %q", tt.in, got, tt.want)
			}
			if !tt.exact {
				return
			}
			if back, err := ParseSize(got); err != nil || back != tt.in {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", got, back, err, tt.in)
			}
		})
	}
}

// TestSize_Decode: envconfig parses a Size once at loading; it keeps the
// text as written ("10 MiB", not 10485760), a default applies, and a bad
// value does not fail loading but is kept for the owner's Validate.
func TestSize_Decode(t *testing.T) {
	type sizeSpec struct {
		Max   Size `envconfig:"SNAPVISOR_T_MAX" default:"10MiB"`
		Limit Size `envconfig:"SNAPVISOR_T_LIMIT"`
		Unset Size `envconfig:"SNAPVISOR_T_UNSET"`
	}
	t.Run("valid, default, unset", func(t *testing.T) {
		t.Setenv("SNAPVISOR_T_LIMIT", "10 MiB")
		var s sizeSpec
		if err := Load(&s); err != nil {
			t.Fatal(err)
		}
		if s.Limit.String() != "10 MiB" || s.Limit.Bytes() != 10<<20 || s.Limit.Err() != nil {
			t.Errorf("LIMIT = %q %d %v, want 10 MiB, %d", s.Limit, s.Limit.Bytes(), s.Limit.Err(), 10<<20)
		}
		if s.Max.String() != "10MiB" || s.Max.Bytes() != 10<<20 || s.Max.Check("T_MAX", "x") != nil {
			t.Errorf("MAX = %q %d, want the default 10MiB", s.Max, s.Max.Bytes())
		}
		if s.Unset.String() != "" || s.Unset.Bytes() != 0 || s.Unset.Err() != nil || s.Unset.Check("T_UNSET", "x") != nil {
			t.Errorf("UNSET = %q %d %v, want blank and valid", s.Unset, s.Unset.Bytes(), s.Unset.Err())
		}
	})
	t.Run("bad value kept for Check", func(t *testing.T) {
		t.Setenv("SNAPVISOR_T_MAX", "10 megs")
		var s sizeSpec
		if err := Load(&s); err != nil {
			t.Fatalf("Load = %v, want no error: Validate reports it", err)
		}
		if s.Max.Bytes() != 0 || s.Max.Err() == nil {
			t.Fatalf("MAX = %d, %v; want 0 and an error", s.Max.Bytes(), s.Max.Err())
		}
		err := s.Max.Check("T_MAX", "a size such as 10MiB")
		var ce *Error
		if !errors.As(err, &ce) || ce.Var != "SNAPVISOR_T_MAX" {
			t.Fatalf("Check = %v, want a *Error for SNAPVISOR_T_MAX", err)
		}
		for _, want := range []string{`SNAPVISOR_T_MAX="10 megs" is invalid`, `unknown unit "megs"`, "accepted: a size such as 10MiB"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q does not contain %q", err, want)
			}
		}
	})
	t.Run("blanks around a value", func(t *testing.T) {
		z := NewSize(" 10 MiB\n")
		if z.Bytes() != 10<<20 || z.String() != " 10 MiB\n" || z.Err() != nil {
			t.Errorf("NewSize(\" 10 MiB\\n\") = %q %d %v", z, z.Bytes(), z.Err())
		}
		if z := NewSize("-1"); z.Err() == nil || z.Bytes() != 0 {
			t.Errorf("NewSize(-1) = %d, %v; want 0 and an error", z.Bytes(), z.Err())
		}
	})
	t.Run("usage shows the type as size", func(t *testing.T) {
		var b bytes.Buffer
		Usage(tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0), &sizeSpec{})
		for _, line := range strings.Split(b.String(), "\n") {
			if strings.HasPrefix(line, "SNAPVISOR_T_MAX ") && !strings.Contains(line, " size ") {
				t.Errorf("usage line %q does not show the type as size", line)
			}
		}
		if !strings.Contains(b.String(), "SNAPVISOR_T_MAX ") {
			t.Errorf("usage lacks SNAPVISOR_T_MAX:\n%s", b.String())
		}
	})
}
