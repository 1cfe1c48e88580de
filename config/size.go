package config

// Placeholder until the full Size lands (see the gitinfra branch).

import (
	"fmt"
	"strconv"
	"strings"
)

// Size is a byte-size variable (10MiB), parsed when decoded.
type Size struct {
	text string
	n    int64
	err  error
}

// NewSize parses s.
func NewSize(s string) Size {
	z := Size{text: s}
	if t := strings.TrimSpace(s); t != "" {
		z.n, z.err = ParseSize(t)
	}
	return z
}

// ParseSize parses a size.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.ReplaceAll(s, " ", ""))
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}} {
		if strings.HasSuffix(t, u.suf) {
			t, mult = strings.TrimSuffix(t, u.suf), u.m
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return n * mult, nil
}

// Decode implements envconfig.Decoder.
func (z *Size) Decode(s string) error { *z = NewSize(s); return nil }

// String returns the text as written.
func (z Size) String() string { return z.text }

// Bytes is the size.
func (z Size) Bytes() int64 { return z.n }

// Err is the parse error.
func (z Size) Err() error { return z.err }

// Check returns a *Error when invalid.
func (z Size) Check(name, accepted string) error {
	if z.err == nil {
		return nil
	}
	e := Invalid(name, z.text, accepted)
	e.Err = z.err
	return e
}

// FormatSize formats n.
func FormatSize(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }
