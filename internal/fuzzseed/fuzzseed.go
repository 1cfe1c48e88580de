// Package fuzzseed keeps the committed seed corpora of the fuzz targets
// (testdata/fuzz/<FuzzName>/<seed>, in the "go test fuzz v1" format that
// go test reads) in step with the tables in the tests that generate them.
// It is imported by tests only.
//
// With FUZZ_SEEDS=update in the environment, Sync (re)writes the seed files;
// otherwise it checks that every seed file exists and, for deterministic
// seeds, holds exactly what the table generates, so that a seed edited in
// the table and not regenerated fails the test. Files that are not in the
// table (inputs that once made a target fail, added by go test -fuzz or by
// hand) are left alone: they are regression tests.
package fuzzseed

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Seed is one corpus file: its name and the fuzz function's arguments
// ([]byte, string, bool, uint8, int64 or uint64; in the target's order).
type Seed struct {
	Name string
	Args []any
	// Random marks seeds whose bytes differ at each generation (encryption
	// salts, nonces): only their presence is checked.
	Random bool
}

// Encode returns the "go test fuzz v1" file holding args.
func Encode(args ...any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case bool, int64, uint64:
			fmt.Fprintf(&b, "%T(%v)\n", v, v)
		case uint8:
			fmt.Fprintf(&b, "byte(%q)\n", v)
		default:
			panic(fmt.Sprintf("fuzzseed: unsupported argument type %T", a))
		}
	}
	return b.Bytes()
}

// Name returns a stable file name for a seed made from text: its printable
// part (at most 40 characters) and 8 hex digits of its hash, so that names
// stay unique and do not depend on the order of a table.
func Name(text string) string {
	var b strings.Builder
	for _, r := range text {
		if b.Len() >= 40 {
			break
		}
		switch {
		case r == '.' || r == '+' || r == '-' || r == '@' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(text))
	return strings.TrimLeft(b.String(), ".") + "-" + hex.EncodeToString(sum[:4])
}

// Updating reports whether FUZZ_SEEDS=update asks for the corpora to be rewritten.
func Updating() bool { return os.Getenv("FUZZ_SEEDS") == "update" }

// Sync writes (FUZZ_SEEDS=update) or checks the seeds of target under testdata/fuzz/target.
func Sync(t *testing.T, target string, seeds []Seed) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if Updating() {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	names := map[string]bool{}
	for _, s := range seeds {
		if names[s.Name] {
			t.Fatalf("%s: seed name %q twice", target, s.Name)
		}
		names[s.Name] = true
		p := filepath.Join(dir, s.Name)
		want := Encode(s.Args...)
		if Updating() {
			if old, err := os.ReadFile(p); err == nil && s.Random {
				continue // keep the committed bytes: regenerating would only churn
			} else if err == nil && bytes.Equal(old, want) {
				continue
			}
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s", p)
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("seed %s: %v (run FUZZ_SEEDS=update go test -run TestFuzzSeeds ./%s)", p, err, pkgHint())
			continue
		}
		if !s.Random && !bytes.Equal(got, want) {
			t.Errorf("seed %s differs from its generator (run FUZZ_SEEDS=update go test -run TestFuzzSeeds ./%s)", p, pkgHint())
		}
	}
}

// pkgHint names the package directory the test runs in, for messages.
func pkgHint() string {
	wd, err := os.Getwd()
	if err != nil {
		return "..."
	}
	return filepath.Base(wd) + "/"
}
