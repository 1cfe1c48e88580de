package gitsnap

// Helpers of the transport, squash, guard, damage, hostile-tree, interop
// and crash tests (gitsnap_test.go holds the first ones: opts, mustCommit,
// restoreInto, gitCLI).

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"go.uber.org/zap/zaptest"

	"snapvisor/internal/testutil"
	"snapvisor/snapshot"
	"snapvisor/store/storetest"
)

// testBranch is the branch every test repository commits to.
const testBranch = "snapvisor/x"

// newRepo opens a new repository in a temporary directory, closed when the test ends.
func newRepo(t *testing.T) *Repo {
	t.Helper()
	return openRepo(t, filepath.Join(t.TempDir(), "x.git"), true)
}

// openRepo opens the repository at path (create: made when missing),
// closed when the test ends.
func openRepo(t *testing.T, path string, create bool) *Repo {
	t.Helper()
	r, err := Open(path, testBranch, create)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// writeFiles writes files (path relative to dir → content), making directories.
func writeFiles(t *testing.T, dir string, files map[string]string) {
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

// checkoutFiles describes what a Git checkout of dir holds: every file
// (content hash and executable bit) and symlink (target), by path; no
// directories (Git keeps none), nothing under a .git directory.
func checkoutFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() {
			if fi.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "symlink -> " + l
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file exec=%v sha=%x", fi.Mode()&0o100 != 0, sha256.Sum256(b))
		default:
			out[rel] = "special " + fi.Mode().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameFiles fails the test where two checkoutFiles maps differ.
func sameFiles(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s: want %q, got %q", what, k, v, got[k])
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %s (%s) is not expected", what, k, v)
		}
	}
}

// treePaths lists the blob entries (files, symlinks) of commit h's tree, the metadata file included.
func treePaths(t *testing.T, r *Repo, h plumbing.Hash) []string {
	t.Helper()
	c, err := object.GetCommit(r.st, h)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := object.GetTree(r.st, c.TreeHash)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	err = tree.Files().ForEach(func(f *object.File) error {
		out = append(out, f.Name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// metaPaths lists the paths the metadata file of commit h names.
func metaPaths(t *testing.T, r *Repo, h plumbing.Hash) []string {
	t.Helper()
	c, err := object.GetCommit(r.st, h)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := object.GetTree(r.st, c.TreeHash)
	if err != nil {
		t.Fatal(err)
	}
	f, err := tree.File(MetaFile)
	if err != nil {
		t.Fatalf("commit %s has no %s: %v", h, MetaFile, err)
	}
	rd, err := f.Reader()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	_, entries, err := decodeMeta(rd)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Path)
	}
	return out
}

// restoreTo restores commit h of r into target (DiscardCurrent), returning Restore's error.
func restoreTo(t *testing.T, r *Repo, h plumbing.Hash, targets ...string) error {
	t.Helper()
	_, err := r.Restore(context.Background(), h, snapshot.Config{Sources: targets}, snapshot.RestoreOptions{DiscardCurrent: true}, zaptest.NewLogger(t))
	return err
}

// packFiles lists the repository's pack files (objects/pack/*.pack) and
// every other entry of objects/pack (temporary files) apart.
func packFiles(t *testing.T, repo string) (packs, other []string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(repo, "objects", "pack"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range ents {
		switch {
		case strings.HasPrefix(e.Name(), "pack-") && strings.HasSuffix(e.Name(), ".pack"):
			packs = append(packs, filepath.Join(repo, "objects", "pack", e.Name()))
		case strings.HasPrefix(e.Name(), "pack-") && strings.HasSuffix(e.Name(), ".idx"):
		default:
			other = append(other, e.Name())
		}
	}
	return packs, other
}

// revParse is the commit the git CLI sees at rev in the repository at dir.
func revParse(t *testing.T, dir, rev string) string {
	t.Helper()
	return strings.TrimSpace(storetest.GitCLI(t, dir, "rev-parse", "--verify", "-q", rev))
}

// dirEntries lists dir's entry names (none when it does not exist).
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// richSource makes testutil.RichTree at a new directory named data and returns it.
func richSource(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "data")
	testutil.RichTree(t, src)
	return src
}

// walkPaths lists every path below dir (directories too), relative, sorted.
func walkPaths(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}
