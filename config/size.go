package config

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// sizeUnits maps each unit ParseSize reads (lower case) to its bytes. The
// one-letter units are binary, as in docker --memory and most Unix tools;
// go-humanize, the library at hand, reads them as decimal, so the parser is
// written here.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "ki": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mi": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gi": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "ti": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// sizeUnitList names the units of sizeUnits, for ParseSize's errors.
const sizeUnitList = "B; KiB, MiB, GiB, TiB or K, M, G, T (binary); kB, MB, GB, TB (decimal); any case"

// ParseSize parses a non-negative size in bytes: a number, optionally
// followed (after optional blanks) by a unit, case-insensitive: B, KiB, MiB,
// GiB, TiB and K, M, G, T (binary: 1024ⁿ), kB, MB, GB, TB (decimal: 1000ⁿ).
// "10485760", "10MiB", "10 MiB", "10m", "1.5GB". A fraction must make a
// whole number of bytes ("1.5KiB" is 1536, "0.1KiB" is an error).
func ParseSize(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty size")
	}
	if s[0] == '-' {
		return 0, fmt.Errorf("size %q is negative", s)
	}
	i, dots := 0, 0
	for i < len(s) && (s[i] == '.' || '0' <= s[i] && s[i] <= '9') {
		if s[i] == '.' {
			dots++
		}
		i++
	}
	num := s[:i]
	unit := strings.TrimLeft(s[i:], " \t")
	if num == "" || num == "." || dots > 1 {
		return 0, fmt.Errorf("invalid size %q: expected a number of bytes, optionally followed by a unit (%s)", s, sizeUnitList)
	}
	mult, ok := sizeUnits[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (known: %s)", s, unit, sizeUnitList)
	}
	if dots == 0 {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return 0, fmt.Errorf("size %q is too large (at most %d bytes)", s, int64(math.MaxInt64))
		}
		return n * mult, nil
	}
	// A fraction: exact rational arithmetic, so that 1.1MB is 1100000 and
	// not what a float64 rounds it to. num is digits and one dot, which
	// big.Rat reads as a decimal.
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("invalid size %q: bad number %q", s, num)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("invalid size %q: not a whole number of bytes (%s is %s bytes)", s, s, r.FloatString(3))
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("size %q is too large (at most %d bytes)", s, int64(math.MaxInt64))
	}
	return r.Num().Int64(), nil
}

// FormatSize formats n bytes for messages in the largest binary unit up to
// TiB not above n: "512 B", "10 MiB", "1.5 KiB". It is exact (ParseSize
// reads it back to n) when n is below 1 KiB, a whole or a half number of
// its unit, or a whole number of KiB, shown then in the largest unit that
// divides it ("1025 KiB"); other sizes are rounded to one decimal ("12.3
// MiB", "10.0 MiB").
// A negative n is formatted as "-N B".
func FormatSize(n int64) string {
	if n < 1<<10 {
		return strconv.FormatInt(n, 10) + " B"
	}
	units := [...]string{"B", "KiB", "MiB", "GiB", "TiB"}
	k := 1
	for k+1 < len(units) && n>>(10*(k+1)) > 0 {
		k++
	}
	u := int64(1) << (10 * k)
	switch {
	case n%u == 0:
		return strconv.FormatInt(n/u, 10) + " " + units[k]
	case n%u == u/2: // the only exact one-decimal fraction of a power of two
		return strconv.FormatInt(n/u, 10) + ".5 " + units[k]
	case n%(1<<10) == 0:
		for n%u != 0 {
			k, u = k-1, u>>10
		}
		return strconv.FormatInt(n/u, 10) + " " + units[k]
	}
	v := strconv.FormatFloat(float64(n)/float64(u), 'f', 1, 64)
	if v == "1024.0" && k+1 < len(units) {
		v, k = "1.0", k+1 // rounded up into the next unit
	}
	return v + " " + units[k]
}

// Size is a variable holding a size in bytes in ParseSize syntax (10MiB,
// 512 KiB, 1GB), parsed once, when envconfig decodes it (or by NewSize).
// String gives the text back as written, so that errors show what the
// user typed. Decoding never fails: a bad value is kept with its parse
// error (Err), and the owning spec's Validate reports it as a *Error with
// the variable's own accepted text, together with its other errors.
type Size struct {
	text string
	n    int64
	err  error
}

// NewSize parses s as ParseSize does, ignoring surrounding blanks; blank is
// unset (Bytes 0, no error).
func NewSize(s string) Size {
	z := Size{text: s}
	if t := strings.TrimSpace(s); t != "" {
		z.n, z.err = ParseSize(t)
	}
	return z
}

// Decode implements envconfig.Decoder; it never fails (see Size).
func (z *Size) Decode(s string) error {
	*z = NewSize(s)
	return nil
}

// String returns the value as written.
func (z Size) String() string { return z.text }

// Bytes returns the parsed size: 0 when blank or invalid.
func (z Size) Bytes() int64 {
	if z.err != nil {
		return 0
	}
	return z.n
}

// Err returns why the value is not a valid size, nil when it is (or is blank).
func (z Size) Err() error { return z.err }

// Check returns a *Error for variable name (without prefix) when z is not a
// valid size, showing the value as written with accepted and the parse
// error; nil when z is valid.
func (z Size) Check(name, accepted string) error {
	if z.err == nil {
		return nil
	}
	e := Invalid(name, z.text, accepted)
	e.Err = z.err
	return e
}
