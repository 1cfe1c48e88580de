package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

func testLogger(t *testing.T) *zap.Logger {
	t.Helper()
	return zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
}

// node is one entry of a tree model.
type node struct {
	Type     string
	Mode     fs.FileMode
	Size     int64
	MTime    time.Time
	UID, GID uint32
	Link     string // symlink target
	SHA      string // content digest of regular files
	Inode    string // first path sharing this inode (hardlink identity)
}

// model walks root and describes every entry by its path relative to root.
func model(t *testing.T, root string) map[string]node {
	t.Helper()
	out := map[string]node{}
	inodes := map[uint64]string{}
	var rels []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rels = append(rels, rel)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	sort.Strings(rels)
	for _, rel := range rels {
		p := filepath.Join(root, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		n := node{Type: fi.Mode().Type().String(), Mode: fi.Mode(), MTime: fi.ModTime(), UID: st.Uid, GID: st.Gid}
		switch {
		case fi.Mode().IsRegular():
			n.Size = fi.Size()
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			n.SHA = hex.EncodeToString(sum[:])
			if first, ok := inodes[st.Ino]; ok {
				n.Inode = first
			} else {
				inodes[st.Ino] = rel
				n.Inode = rel
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			n.Link, _ = os.Readlink(p)
		}
		out[rel] = n
	}
	return out
}

// sameTree fails the test with every difference between two models.
func sameTree(t *testing.T, want, got map[string]node, skipLinkTimes bool) {
	t.Helper()
	var diffs []string
	for rel, w := range want {
		g, ok := got[rel]
		if !ok {
			diffs = append(diffs, "missing "+rel)
			continue
		}
		if skipLinkTimes && w.Link != "" {
			g.MTime = w.MTime
		}
		if !w.MTime.Equal(g.MTime) {
			diffs = append(diffs, fmt.Sprintf("%s: mtime %v, want %v", rel, g.MTime, w.MTime))
		}
		w.MTime, g.MTime = time.Time{}, time.Time{}
		if w != g {
			diffs = append(diffs, fmt.Sprintf("%s: got %+v, want %+v", rel, g, w))
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			diffs = append(diffs, "unexpected "+rel)
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		t.Fatalf("trees differ:\n%s", strings.Join(diffs, "\n"))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p string, data []byte, mode fs.FileMode) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, data, 0o600))
	must(t, os.Chmod(p, mode))
}

// makeTree fills root (created) with every kind of entry a snapshot must preserve.
func makeTree(t *testing.T, root string) {
	t.Helper()
	must(t, os.MkdirAll(root, 0o755))
	long := strings.Repeat("ü", 60) + "-" + strings.Repeat("x", 80) // >100 bytes, non-ASCII
	deep := filepath.Join(root, "deep")
	for i := 0; i < 30; i++ {
		deep = filepath.Join(deep, fmt.Sprintf("level-%02d-%s", i, strings.Repeat("d", 10)))
	}
	writeFile(t, filepath.Join(deep, "bottom.txt"), []byte("deep file\n"), 0o644)
	writeFile(t, filepath.Join(root, "unicode", "日本語 ファイル.txt"), []byte("こんにちは\n"), 0o644)
	writeFile(t, filepath.Join(root, "unicode", long), bytes.Repeat([]byte("long name "), 500), 0o640)
	writeFile(t, filepath.Join(root, "text.txt"), bytes.Repeat([]byte("the quick brown fox\n"), 10000), 0o644)
	rnd := make([]byte, 300<<10)
	for i := range rnd {
		rnd[i] = byte(i*7919 + i>>3)
	}
	writeFile(t, filepath.Join(root, "bin", "random.bin"), rnd, 0o600)
	writeFile(t, filepath.Join(root, "empty"), nil, 0o644)
	writeFile(t, filepath.Join(root, "modes", "none"), []byte("no permissions\n"), 0)
	writeFile(t, filepath.Join(root, "modes", "setuid"), []byte("#!/bin/sh\n"), 0o4755|fs.ModeSetuid)
	must(t, os.Chmod(filepath.Join(root, "modes", "setuid"), 0o755|fs.ModeSetuid))
	writeFile(t, filepath.Join(root, "modes", "setgid"), []byte("x"), 0o2750)
	must(t, os.Chmod(filepath.Join(root, "modes", "setgid"), 0o750|fs.ModeSetgid))
	must(t, os.Mkdir(filepath.Join(root, "modes", "sticky"), 0o755))
	must(t, os.Chmod(filepath.Join(root, "modes", "sticky"), 0o777|fs.ModeSticky))
	writeFile(t, filepath.Join(root, "modes", "sticky", "f"), []byte("in sticky dir"), 0o644)
	must(t, os.Mkdir(filepath.Join(root, "modes", "closed"), 0o755))
	writeFile(t, filepath.Join(root, "modes", "closed", "inside"), []byte("in a 0000 dir"), 0o644)
	must(t, os.Chmod(filepath.Join(root, "modes", "closed"), 0))
	must(t, os.MkdirAll(filepath.Join(root, "empty-dir", "nested-empty"), 0o750))
	// Sparse: 8 MiB with two small islands of data.
	sp, err := os.Create(filepath.Join(root, "sparse.img"))
	must(t, err)
	_, err = sp.WriteAt([]byte("island one"), 1<<20)
	must(t, err)
	_, err = sp.WriteAt([]byte("island two"), 5<<20)
	must(t, err)
	must(t, sp.Truncate(8<<20))
	must(t, sp.Close())
	// Links.
	must(t, os.Symlink("text.txt", filepath.Join(root, "link-rel")))
	must(t, os.Symlink("/nonexistent/target", filepath.Join(root, "link-dangling")))
	must(t, os.Symlink("../"+filepath.Base(root)+"/unicode", filepath.Join(root, "link-dir")))
	must(t, os.Link(filepath.Join(root, "text.txt"), filepath.Join(root, "hard-1")))
	must(t, os.Link(filepath.Join(root, "text.txt"), filepath.Join(root, "bin", "hard-2")))
	// Ownership other than ours.
	if os.Geteuid() == 0 {
		must(t, os.Lchown(filepath.Join(root, "bin", "random.bin"), 1234, 5678))
		must(t, os.Lchown(filepath.Join(root, "link-rel"), 4321, 8765))
		must(t, os.Lchown(filepath.Join(root, "empty-dir"), 1000, 1000))
	}
	// Times with sub-second precision, symlinks and directories last.
	base := time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)
	i := 0
	var dirs []string
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		i++
		ts := base.Add(time.Duration(i) * time.Hour)
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{unix.NsecToTimespec(ts.UnixNano()), unix.NsecToTimespec(ts.UnixNano())}, unix.AT_SYMLINK_NOFOLLOW)
	}))
	for j := len(dirs) - 1; j >= 0; j-- {
		ts := base.Add(time.Duration(-j) * time.Minute)
		must(t, os.Chtimes(dirs[j], ts, ts))
	}
}

// run runs a command and fails the test with its output on error.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// writeSum writes the sha256sum file of archive.
func writeSum(t *testing.T, archive string) {
	t.Helper()
	b, err := os.ReadFile(archive)
	must(t, err)
	sum := sha256.Sum256(b)
	must(t, os.WriteFile(archive+".sha256", []byte(hex.EncodeToString(sum[:])+"  "+filepath.Base(archive)+"\n"), 0o600))
}

// tarEntry is one entry of a hand-made archive.
type tarEntry struct {
	hdr  tar.Header
	body string
}

// craft writes a gzip tar of entries as dir/snapshot-<stamp>.tar.gz with its .sha256.
func craft(t *testing.T, dir, stamp string, entries []tarEntry) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		must(t, tw.WriteHeader(&h))
		if e.body != "" {
			_, err := io.WriteString(tw, e.body)
			must(t, err)
		}
	}
	must(t, tw.Close())
	must(t, zw.Close())
	p := filepath.Join(dir, "snapshot-"+stamp+".tar.gz")
	must(t, os.WriteFile(p, buf.Bytes(), 0o600))
	writeSum(t, p)
	return p
}

// entriesOf lists the names in dir.
func entriesOf(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	must(t, err)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}
