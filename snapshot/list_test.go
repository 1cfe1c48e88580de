package snapshot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapvisor/seal"
)

// returnsWithin fails the test when f does not return within d (a hang).
func returnsWithin(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// TestList_HostileChecksumFiles: a FIFO, a symlink to /dev/zero, a 1 MiB
// file or a directory named like a snapshot's .sha256 never hangs List or
// fills memory: List returns promptly without that snapshot, and restore
// and verify fail with an error naming the file.
func TestList_HostileChecksumFiles(t *testing.T) {
	good := "snapshot-20240101T000000Z.tar.gz"
	bad := "snapshot-20240601T000000Z.tar.gz"
	cases := []struct {
		name    string
		plant   func(t *testing.T, p string)
		message string
	}{
		{"FIFO", func(t *testing.T, p string) { must(t, syscall.Mkfifo(p, 0o600)) }, "not a regular file"},
		{"SymlinkToDevZero", func(t *testing.T, p string) { must(t, os.Symlink("/dev/zero", p)) }, "symlink"},
		{"SymlinkToGoodChecksum", func(t *testing.T, p string) {
			must(t, os.Symlink(filepath.Join(filepath.Dir(p), good+".sha256"), p))
		}, "symlink"},
		{"OneMiB", func(t *testing.T, p string) {
			line := strings.Repeat("ab", 32) + "  " + bad + "\n"
			must(t, os.WriteFile(p, bytes.Repeat([]byte(line), (1<<20)/len(line)+1), 0o600))
		}, "larger than"},
		{"Directory", func(t *testing.T, p string) { must(t, os.Mkdir(p, 0o700)) }, "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "data")
			writeFile(t, filepath.Join(src, "f"), []byte("x"), 0o644)
			cfg := testConfig(t, CompressionGzip, src)
			info, err := Create(context.Background(), cfg, testLogger(t))
			must(t, err)
			must(t, os.Rename(info.Path, filepath.Join(cfg.Dir, good)))
			must(t, os.Remove(info.Path+".sha256"))
			writeSum(t, filepath.Join(cfg.Dir, good))
			badPath := filepath.Join(cfg.Dir, bad)
			must(t, os.WriteFile(badPath, []byte("junk"), 0o600))
			tc.plant(t, badPath+".sha256")

			var list []Info
			returnsWithin(t, 5*time.Second, "List", func() { list, err = List(cfg.Dir, "snapshot") })
			must(t, err)
			if len(list) != 1 || list[0].Name != good {
				t.Fatalf("List = %+v, want only %s", list, good)
			}
			returnsWithin(t, 5*time.Second, "Verify", func() { err = VerifyWith(context.Background(), badPath, seal.Config{}) })
			if err == nil || !strings.Contains(err.Error(), badPath+".sha256") || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("Verify = %v, want an error naming %s.sha256 and %q", err, badPath, tc.message)
			}
			returnsWithin(t, 5*time.Second, "Restore", func() {
				err = Restore(context.Background(), cfg, badPath, RestoreOptions{}, testLogger(t))
			})
			if err == nil || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("Restore = %v, want an error saying %q", err, tc.message)
			}
		})
	}
}

// TestReadChecksum: the one reader of local checksum files accepts exactly
// one sha256sum line naming the archive, in either sha256sum mode.
func TestReadChecksum(t *testing.T) {
	dir := t.TempDir()
	archive := filepath.Join(dir, "snapshot-20240101T000000Z.tar.gz")
	sum := strings.Repeat("Ab", 32)
	for _, tc := range []struct {
		name, content, want string
	}{
		{"Text", sum + "  snapshot-20240101T000000Z.tar.gz\n", strings.ToLower(sum)},
		{"Binary", sum + " *snapshot-20240101T000000Z.tar.gz\n", strings.ToLower(sum)},
		{"NoNewline", sum + "  snapshot-20240101T000000Z.tar.gz", ""},
		{"TwoLines", sum + "  snapshot-20240101T000000Z.tar.gz\n\n", ""},
		{"OtherName", sum + "  other.tar.gz\n", ""},
		{"ShortDigest", sum[:60] + "  snapshot-20240101T000000Z.tar.gz\n", ""},
		{"NotHex", strings.Repeat("zz", 32) + "  snapshot-20240101T000000Z.tar.gz\n", ""},
		{"Empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			must(t, os.WriteFile(archive+".sha256", []byte(tc.content), 0o600))
			got, err := ReadChecksum(archive)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("ReadChecksum = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ReadChecksum = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
