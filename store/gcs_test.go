//go:build !snapvisor_no_gs

package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestGCSBadCredentialsFile: a credentials file that is not a service-account
// key fails every operation at once, naming the store and the variable.
func TestGCSBadCredentialsFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "sa.json")
	mustWrite(t, f, []byte(`{"type":"service_account","private_key":"not-a-key-Xy7Qz"}`))
	s := mustOpen(t, "gs://bucket/p", Config{GCSCredentialsFile: f})
	_, err := s.List(context.Background(), "")
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "gs://bucket/p") ||
		!strings.Contains(err.Error(), "GOOGLE_APPLICATION_CREDENTIALS") {
		t.Fatalf("list with a bad credentials file: %v", err)
	}
	if strings.Contains(err.Error(), "Xy7Qz") {
		t.Errorf("error reveals the key: %v", err)
	}
	t.Log(err)
}
