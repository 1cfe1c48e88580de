package store

import (
	"context"
	"os"
	"testing"
	"time"
)

// The helpers of the internal tests (the suites on real servers are in
// package store_test, with storetest's helpers, which import store).

func mustOpen(t *testing.T, rawURL string, cfg Config) Store {
	t.Helper()
	s, err := Open(context.Background(), rawURL, cfg, nil)
	if err != nil {
		t.Fatalf("open %s: %v", rawURL, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustWrite(t *testing.T, file string, b []byte) {
	t.Helper()
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
