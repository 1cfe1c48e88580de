package testutil

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// RichTree makes a source with what a snapshot must carry back: modes
// (setuid, an executable), owners (as root), times, symlinks (one
// dangling), a hardlink, an empty directory, a 5 MiB file.
func RichTree(t testing.TB, src string) {
	t.Helper()
	big := make([]byte, 5<<20)
	for i := range big {
		big[i] = byte(i * 7 / 3)
	}
	for name, content := range map[string]string{"a.txt": "hello", "sub/b.txt": "world", "sub/deep/big": string(big), "exec.sh": "#!/bin/sh\n"} {
		p := filepath.Join(src, name)
		mustDo(t, os.MkdirAll(filepath.Dir(p), 0o755))
		mustDo(t, os.WriteFile(p, []byte(content), 0o644))
	}
	mustDo(t, os.Chmod(filepath.Join(src, "exec.sh"), 0o4755))
	mustDo(t, os.Symlink("a.txt", filepath.Join(src, "link")))
	mustDo(t, os.Symlink("/nowhere", filepath.Join(src, "dangling")))
	mustDo(t, os.Mkdir(filepath.Join(src, "empty"), 0o700))
	mustDo(t, os.Link(filepath.Join(src, "a.txt"), filepath.Join(src, "sub", "hard")))
	if os.Geteuid() == 0 {
		mustDo(t, os.Lchown(filepath.Join(src, "sub", "b.txt"), 1234, 5678))
		mustDo(t, os.Lchown(filepath.Join(src, "link"), 1234, 5678))
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC)
	mustDo(t, os.Chtimes(filepath.Join(src, "sub", "b.txt"), old, old))
	mustDo(t, os.Chtimes(filepath.Join(src, "sub"), old, old))
}

func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TreeState describes every entry below dir: type, mode, size, mtime
// (not the top directory's), ownership, symlink target, content hash, and
// which paths share an inode.
func TreeState(t testing.TB, dir string) map[string]string {
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
		if rel != "." {
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

// SameState fails the test for every entry where two TreeStates differ.
func SameState(t testing.TB, want, got map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s:\n  source:   %s\n  restored: %s", k, v, got[k])
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: restored but not in the source: %s", k, v)
		}
	}
}

// SameTree fails the test unless the trees at src and restored are alike (TreeState).
func SameTree(t testing.TB, src, restored string) {
	t.Helper()
	SameState(t, TreeState(t, src), TreeState(t, restored))
}
