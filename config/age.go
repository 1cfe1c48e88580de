package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

const (
	day  = 24 * time.Hour
	week = 7 * day
)

// ParseAge parses a non-negative duration: Go's time.ParseDuration syntax plus
// the units d (24h) and w (7d), freely combined: "30d", "2w", "1d12h",
// "1.5d", "90m", "0". Days are exact 24-hour periods (no calendar or DST).
func ParseAge(s string) (time.Duration, error) {
	orig := s
	if s == "" {
		return 0, errors.New("empty duration")
	}
	switch s[0] {
	case '-':
		return 0, fmt.Errorf("duration %q is negative", orig)
	case '+':
		s = s[1:]
	}
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return 0, fmt.Errorf("invalid duration %q", orig)
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && (s[i] == '.' || '0' <= s[i] && s[i] <= '9') {
			i++
		}
		num := s[:i]
		j := i
		for j < len(s) && s[j] != '.' && (s[j] < '0' || s[j] > '9') {
			j++
		}
		unit := s[i:j]
		s = s[j:]
		if num == "" || num == "." {
			return 0, fmt.Errorf("invalid duration %q: expected a number before %q", orig, unit)
		}
		if unit == "" {
			return 0, fmt.Errorf("invalid duration %q: missing unit after %s", orig, num)
		}
		var part time.Duration
		switch unit {
		case "d", "w":
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q: bad number %q", orig, num)
			}
			size := day
			if unit == "w" {
				size = week
			}
			ns := f * float64(size)
			if ns >= math.MaxInt64 {
				return 0, fmt.Errorf("duration %q is too large", orig)
			}
			part = time.Duration(ns)
		default:
			d, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q: unknown unit %q or bad number", orig, unit)
			}
			part = d
		}
		if total > math.MaxInt64-part {
			return 0, fmt.Errorf("duration %q is too large", orig)
		}
		total += part
	}
	return total, nil
}

// FormatAge formats d the way ParseAge reads it, with whole days as d:
// 30*24h → "30d", 36h → "1d12h0m0s", 90m → "1h30m0s". ParseAge(FormatAge(d)) == d
// for d ≥ 0; a negative d is formatted by time.Duration.String.
func FormatAge(d time.Duration) string {
	if d < 0 {
		return d.String()
	}
	days, rest := d/day, d%day
	switch {
	case days == 0:
		return rest.String()
	case rest == 0:
		return fmt.Sprintf("%dd", days)
	default:
		return fmt.Sprintf("%dd%s", days, rest)
	}
}

// Age is a variable holding a duration in ParseAge syntax (30d, 2w, 1d12h),
// parsed once, when envconfig decodes it (or by NewAge). String gives the
// text back as written, so that errors show what the user typed. Decoding
// never fails: a bad value is kept with its parse error (Err), and the
// owning spec's Validate reports it as a *Error with the variable's own
// accepted text, together with its other errors.
type Age struct {
	text string
	d    time.Duration
	err  error
}

// NewAge parses s as ParseAge does, ignoring surrounding blanks; blank is
// unset (Duration 0, no error).
func NewAge(s string) Age {
	a := Age{text: s}
	if t := strings.TrimSpace(s); t != "" {
		a.d, a.err = ParseAge(t)
	}
	return a
}

// Decode implements envconfig.Decoder; it never fails (see Age).
func (a *Age) Decode(s string) error {
	*a = NewAge(s)
	return nil
}

// String returns the value as written.
func (a Age) String() string { return a.text }

// Duration returns the parsed duration: 0 when blank or invalid.
func (a Age) Duration() time.Duration {
	if a.err != nil {
		return 0
	}
	return a.d
}

// Err returns why the value is not a valid age, nil when it is (or is blank).
func (a Age) Err() error { return a.err }

// Check returns a *Error for variable name (without prefix) when a is not a
// valid age, showing the value as written with accepted and the parse
// error; nil when a is valid.
func (a Age) Check(name, accepted string) error {
	if a.err == nil {
		return nil
	}
	e := Invalid(name, a.text, accepted)
	e.Err = a.err
	return e
}
