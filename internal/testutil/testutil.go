// Package testutil holds the helpers every package's tests share: polling
// with a deadline instead of sleeping, and the rule for a missing server,
// tool or privilege (CI=true fails the test, elsewhere it is skipped). It is
// imported by tests and test-support packages only.
package testutil

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// pollEvery is how often Eventually checks its condition.
const pollEvery = 10 * time.Millisecond

// Eventually polls cond until it holds, failing the test when it still does
// not after within; what says what was waited for.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", within, what)
		}
		time.Sleep(pollEvery)
	}
}

// InCI reports whether the tests run in CI (CI=true), where every server,
// tool and privilege a test needs must be there.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable ends a test that cannot run here (a missing server, tool or
// privilege): it fails with CI=true and skips elsewhere.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("CI=true and %s", msg)
	}
	t.Skipf("%s (with CI=true this fails)", msg)
}

// RequireTool returns the path of the command-line tool name, or ends the
// test as Unavailable (scripts/deps.sh installs the tools tests need).
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s not installed (scripts/deps.sh installs it)", name)
	}
	return p
}

// RequireRoot ends the test as Unavailable unless it runs as root; why says
// what needs it.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "%s needs root", why)
	}
}

// RandomKey returns a fresh 32-byte key, base64 (standard encoding), as an
// aes256-gcm keyring line wants it.
func RandomKey(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}
