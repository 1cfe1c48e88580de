package fsx

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapvisor/internal/testutil"
)

// mountTmpfs mounts a tmpfs at a new directory until the test ends.
func mountTmpfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		testutil.Unavailable(t, "mount tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// names returns the names in dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestTempPattern(t *testing.T) {
	for base, want := range map[string]string{
		"app-20240101T000000Z.tar.gz":        ".app-20240101T000000Z.tar.gz.tmp-*",
		"app-20240101T000000Z.tar.gz.sha256": ".app-20240101T000000Z.tar.gz.sha256.tmp-*",
		".keyring":                           "..keyring.tmp-*",
	} {
		if got := TempPattern(base); got != want {
			t.Errorf("TempPattern(%q) = %q, want %q", base, got, want)
		}
	}
}

func TestWriteFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dir     func(t *testing.T) string
		before  func(t *testing.T, path string) // what is at path first
		wantErr bool
	}{
		{"new file on tmpfs", mountTmpfs, func(*testing.T, string) {}, false},
		{"replaces a file on tmpfs", mountTmpfs, func(t *testing.T, p string) {
			if err := os.WriteFile(p, []byte("old contents"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"new file", func(t *testing.T) string { return t.TempDir() }, func(*testing.T, string) {}, false},
		{"a directory is in the way", func(t *testing.T) string { return t.TempDir() }, func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			p := filepath.Join(dir, "ring")
			tc.before(t, p)
			err := WriteFile(p, []byte("new contents\n"), 0o600)
			if tc.wantErr {
				if err == nil {
					t.Fatal("WriteFile over a directory succeeded")
				}
				if fi, serr := os.Stat(p); serr != nil || !fi.IsDir() {
					t.Errorf("the directory in the way was touched: %v", serr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(p)
				if err != nil || string(b) != "new contents\n" {
					t.Fatalf("read back %q, %v", b, err)
				}
				fi, _ := os.Stat(p)
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("mode %v, want 0600", fi.Mode().Perm())
				}
			}
			if got := names(t, dir); len(got) != 1 || got[0] != "ring" {
				t.Errorf("directory holds %v, want only ring (no temporary left)", got)
			}
		})
	}
}

func TestFile_CommitNoReplace(t *testing.T) {
	for _, tc := range []struct {
		name   string
		exists bool
	}{
		{"free name", false},
		{"existing target is kept", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mountTmpfs(t)
			p := filepath.Join(dir, "snap")
			if tc.exists {
				if err := os.WriteFile(p, []byte("first"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			f, err := CreateTemp(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Discard()
			if base := filepath.Base(f.Name()); !strings.HasPrefix(base, ".snap.tmp-") {
				t.Errorf("temporary %q does not follow .<name>.tmp-*", base)
			}
			if _, err := f.WriteString("second"); err != nil {
				t.Fatal(err)
			}
			err = f.CommitNoReplace()
			f.Discard()
			b, _ := os.ReadFile(p)
			if tc.exists {
				if !errors.Is(err, fs.ErrExist) {
					t.Fatalf("CommitNoReplace over an existing file = %v, want fs.ErrExist", err)
				}
				if string(b) != "first" {
					t.Fatalf("existing file now holds %q", b)
				}
			} else if err != nil || string(b) != "second" {
				t.Fatalf("CommitNoReplace = %v, file holds %q", err, b)
			}
			if got := names(t, dir); len(got) != 1 {
				t.Errorf("directory holds %v, want only snap", got)
			}
		})
	}
}

func TestRenameNoReplace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		target  string // "", "file" or "dir"
		noFlags bool   // the file system has no RENAME_NOREPLACE (EINVAL)
		wantErr error
	}{
		{"free name", "", false, nil},
		{"existing file", "file", false, fs.ErrExist},
		{"existing directory", "dir", false, fs.ErrExist},
		{"free name without RENAME_NOREPLACE", "", true, nil},
		{"existing file without RENAME_NOREPLACE", "file", true, fs.ErrExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			from, to := filepath.Join(dir, "from"), filepath.Join(dir, "to")
			if err := os.WriteFile(from, []byte("from"), 0o600); err != nil {
				t.Fatal(err)
			}
			switch tc.target {
			case "file":
				if err := os.WriteFile(to, []byte("to"), 0o600); err != nil {
					t.Fatal(err)
				}
			case "dir":
				if err := os.Mkdir(to, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			rename := Renameat2
			if tc.noFlags {
				rename = func(o, n string, flags uint) error {
					if flags != 0 {
						return &os.LinkError{Op: "rename", Old: o, New: n, Err: syscall.EINVAL}
					}
					return Renameat2(o, n, 0)
				}
			}
			err := RenameNoReplaceVia(rename, from, to)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("RenameNoReplace = %v, want %v", err, tc.wantErr)
			}
			_, ferr := os.Stat(from)
			if tc.wantErr != nil {
				if ferr != nil {
					t.Error("the source is gone after a refused rename")
				}
				if tc.target == "file" {
					if b, _ := os.ReadFile(to); string(b) != "to" {
						t.Errorf("target overwritten: %q", b)
					}
				}
				return
			}
			if b, _ := os.ReadFile(to); string(b) != "from" || ferr == nil {
				t.Errorf("after the rename: target %q, source still there: %v", b, ferr == nil)
			}
		})
	}
	t.Run("direct", func(t *testing.T) {
		dir := t.TempDir()
		from, to := filepath.Join(dir, "from"), filepath.Join(dir, "to")
		for _, p := range []string{from, to} {
			if err := os.WriteFile(p, []byte(p), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := RenameNoReplace(from, to); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("RenameNoReplace = %v, want fs.ErrExist", err)
		}
	})
}

func TestSyncDir(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dir     func(t *testing.T) string
		wantErr bool
	}{
		{"tmpfs", mountTmpfs, false},
		{"temp dir", func(t *testing.T) string { return t.TempDir() }, false},
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "gone") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := SyncDir(tc.dir(t)); (err != nil) != tc.wantErr {
				t.Fatalf("SyncDir = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestCounting(t *testing.T) {
	for _, n := range []int{0, 1, 4096, 100_000} {
		data := bytes.Repeat([]byte("x"), n)
		r := &CountingReader{R: bytes.NewReader(data)}
		var sink bytes.Buffer
		w := &CountingWriter{W: &sink}
		if _, err := io.Copy(w, r); err != nil {
			t.Fatal(err)
		}
		if r.N.Load() != int64(n) || w.N.Load() != int64(n) || sink.Len() != n {
			t.Errorf("%d bytes: read %d, written %d, sink %d", n, r.N.Load(), w.N.Load(), sink.Len())
		}
	}
}

func TestSleep(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		d       time.Duration
		wantErr error
		atMost  time.Duration
	}{
		{"full wait", context.Background(), 20 * time.Millisecond, nil, 5 * time.Second},
		{"zero", context.Background(), 0, nil, time.Second},
		{"canceled ctx ends it", canceled, time.Hour, context.Canceled, 5 * time.Second},
		{"canceled ctx, zero", canceled, 0, context.Canceled, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := Sleep(tc.ctx, tc.d)
			el := time.Since(start)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("Sleep = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && el < tc.d {
				t.Errorf("returned after %v, before %v", el, tc.d)
			}
			if el > tc.atMost {
				t.Errorf("returned after %v", el)
			}
		})
	}
}
