package jobs

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap/zaptest"

	"snapvisor/seal"
)

// TestRestoreIfEmpty_KeyringReadOnce: auto-restore decrypts every candidate
// with the keyring its configuration loaded, once per command. The newest
// snapshot does not verify and the older one restores, although the keyring
// file is gone since the configuration was loaded; before, every candidate
// validated the configuration again and re-read the file.
func TestRestoreIfEmpty_KeyringReadOnce(t *testing.T) {
	backups := t.TempDir()
	f := newRemoteFixture(t, 0, backups)
	ringPath := filepath.Join(t.TempDir(), "keyring")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ringPath, []byte("k1:"+base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.cfg.Encryption = seal.Config{Algorithm: seal.AESGCM, KeysFile: ringPath}
	var paths []string
	for i, content := range []string{"older", "newer"} {
		p := f.snap(t, content, i+1)
		dst := filepath.Join(backups, filepath.Base(p))
		for _, suffix := range []string{"", ".sha256"} {
			if err := os.Rename(p+suffix, dst+suffix); err != nil {
				t.Fatal(err)
			}
		}
		paths = append(paths, dst)
	}
	// The newest no longer matches its checksum: the older one must be tried.
	fd, err := os.OpenFile(paths[1], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fd.WriteAt([]byte("damage"), 100); err != nil {
		t.Fatal(err)
	}
	fd.Close()

	cfg := f.cfg
	cfg.Dir = backups
	if err := cfg.Validate(); err != nil { // the command's one load
		t.Fatal(err)
	}
	if err := os.Remove(ringPath); err != nil {
		t.Fatal(err)
	}
	name, err := RestoreIfEmpty(context.Background(), cfg, nil, zaptest.NewLogger(t))
	if err != nil || name != filepath.Base(paths[0]) {
		t.Fatalf("RestoreIfEmpty = %q, %v; want %s restored with the keyring loaded once", name, err, filepath.Base(paths[0]))
	}
	if got := f.restored(t); got != "older" {
		t.Fatalf("restored %q, want older", got)
	}
}
