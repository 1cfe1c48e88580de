package restic

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"snapvisor/store"
)

const testPassword = "correct horse battery staple"

// openFileStore opens a file:// store at dir.
func openFileStore(t *testing.T, dir string) store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), "file://"+dir, store.Config{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// openOrInit opens the repository on st, initialising it when missing.
func openOrInit(t *testing.T, st store.Store) *Repo {
	t.Helper()
	ctx := context.Background()
	r, err := Open(ctx, st, Password(testPassword))
	if err != nil {
		r, err = Init(ctx, st, Password(testPassword), 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// backupNow takes one snapshot of src into repos.
func backupNow(t *testing.T, src string, repos ...*Repo) []BackupResult {
	t.Helper()
	res, err := Backup(context.Background(), repos, BackupOptions{Sources: []string{src}, Host: "test-host", Time: time.Now(), Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Repo.Name(), r.Err)
		}
	}
	return res
}

// resticCLI runs the restic CLI on the repository at repo (its CLI string).
func resticCLI(t *testing.T, repo string, args ...string) string {
	t.Helper()
	return cliRepo{Repo: repo}.run(t, args...)
}

// writeTree fills dir with files of the given contents.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// treeState describes every entry below dir: type, mode, size, mtime,
// ownership, symlink target, content hash, and which paths share an inode.
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st := fi.Sys().(*syscall.Stat_t)
		s := fmt.Sprintf("%v uid=%d gid=%d", fi.Mode(), st.Uid, st.Gid)
		if !fi.IsDir() {
			s += " mtime=" + fi.ModTime().UTC().Format(time.RFC3339Nano)
		} else if rel != "." {
			s += " mtime=" + fi.ModTime().UTC().Format(time.RFC3339Nano)
		}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" size=%d sha=%x", len(b), sha256.Sum256(b))
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					s += " hardlink-of=" + first
				} else {
					inodes[st.Ino] = rel
				}
			}
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			s += " -> " + l
		}
		out[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameTree fails unless the trees at a and b are alike (treeState).
func sameTree(t *testing.T, a, b string) {
	t.Helper()
	sa, sb := treeState(t, a), treeState(t, b)
	for k, v := range sa {
		if sb[k] != v {
			t.Errorf("%s:\n  source:   %s\n  restored: %s", k, v, sb[k])
		}
	}
	for k, v := range sb {
		if _, ok := sa[k]; !ok {
			t.Errorf("%s: restored but not in the source: %s", k, v)
		}
	}
}
