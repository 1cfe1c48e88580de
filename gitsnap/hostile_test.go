package gitsnap

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"snapvisor/internal/testutil"
)

// storeObject writes an object of type typ with content b straight into
// r's storer (go-git plumbing: no check of what it holds).
func storeObject(t *testing.T, r *Repo, typ plumbing.ObjectType, b []byte) plumbing.Hash {
	t.Helper()
	o := r.st.NewEncodedObject()
	o.SetType(typ)
	o.SetSize(int64(len(b)))
	w, err := o.Writer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	w.Close()
	h, err := r.st.SetEncodedObject(o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// rawTree encodes entries as they are, in their order: object.Tree.Encode
// would refuse the unsorted ones.
func rawTree(t *testing.T, r *Repo, entries ...object.TreeEntry) plumbing.Hash {
	t.Helper()
	var b []byte
	for _, e := range entries {
		b = fmt.Appendf(b, "%o %s\x00", e.Mode, e.Name)
		b = append(b, e.Hash[:]...)
	}
	return storeObject(t, r, plumbing.TreeObject, b)
}

// hostileCommit commits the root tree's entries and moves the branch to it.
func hostileCommit(t *testing.T, r *Repo, entries ...object.TreeEntry) plumbing.Hash {
	t.Helper()
	sig := object.Signature{Name: "mallory", Email: "mallory@localhost", When: time.Now()}
	c := &object.Commit{Author: sig, Committer: sig, TreeHash: rawTree(t, r, entries...), Message: "hostile\n"}
	o := r.st.NewEncodedObject()
	if err := c.Encode(o); err != nil {
		t.Fatal(err)
	}
	h, err := r.st.SetEncodedObject(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.st.SetReference(plumbing.NewHashReference(r.branch, h)); err != nil {
		t.Fatal(err)
	}
	return h
}

func blobEntry(t *testing.T, r *Repo, name, content string) object.TreeEntry {
	return object.TreeEntry{Name: name, Mode: filemode.Regular, Hash: storeObject(t, r, plumbing.BlobObject, []byte(content))}
}

func symlinkEntry(t *testing.T, r *Repo, name, target string) object.TreeEntry {
	return object.TreeEntry{Name: name, Mode: filemode.Symlink, Hash: storeObject(t, r, plumbing.BlobObject, []byte(target))}
}

func dirEntry(t *testing.T, r *Repo, name string, entries ...object.TreeEntry) object.TreeEntry {
	return object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: rawTree(t, r, entries...)}
}

// metaEntryBlob is a metadata file holding the root and entries (JSON lines without the header).
func metaEntryBlob(t *testing.T, r *Repo, lines ...string) object.TreeEntry {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	b := `{"format":"` + metaFormat + `","sources":["data"]}` + "\n" + `{"p":".","t":"d","m":"0755","u":0,"g":0,"mtime":"` + now + `"}` + "\n"
	for _, l := range lines {
		b += strings.ReplaceAll(l, "NOW", now) + "\n"
	}
	return blobEntry(t, r, MetaFile, b)
}

// TestRepo_Restore: commits crafted with go-git plumbing whose trees or
// metadata would write outside the target (entry names "..", "a/b", "",
// a symlink to an outside directory with a directory of the same name,
// metadata paths with "..", through the symlink, hard links out) are
// refused: nothing is created or changed outside, and the target is as
// it was.
func TestRepo_Restore(t *testing.T) {
	cases := []struct {
		name    string
		entries func(t *testing.T, r *Repo, outside, secretDir string) []object.TreeEntry
		// ignored: metadata for paths the tree does not hold as
		// directories is stale (a commit made elsewhere) and ignored, not
		// refused; the restore may succeed as long as nothing outside moves.
		ignored bool
	}{
		{"dotDot", func(t *testing.T, r *Repo, outside, _ string) []object.TreeEntry {
			return []object.TreeEntry{dirEntry(t, r, "..", blobEntry(t, r, "escape.txt", "out")), blobEntry(t, r, "a.txt", "a")}
		}, false},
		{"dotDotFile", func(t *testing.T, r *Repo, outside, _ string) []object.TreeEntry {
			return []object.TreeEntry{blobEntry(t, r, "..", "out")}
		}, false},
		{"slash", func(t *testing.T, r *Repo, outside, _ string) []object.TreeEntry {
			return []object.TreeEntry{blobEntry(t, r, "a.txt", "a"), dirEntry(t, r, "d", blobEntry(t, r, "../../escape.txt", "out"))}
		}, false},
		{"slashRoot", func(t *testing.T, r *Repo, outside, _ string) []object.TreeEntry {
			return []object.TreeEntry{blobEntry(t, r, "a/b", "a")}
		}, false},
		{"empty", func(t *testing.T, r *Repo, outside, _ string) []object.TreeEntry {
			return []object.TreeEntry{blobEntry(t, r, "", "a")}
		}, false},
		{"symlinkThenDir", func(t *testing.T, r *Repo, outside, _ string) []object.TreeEntry {
			return []object.TreeEntry{symlinkEntry(t, r, "x", outside), dirEntry(t, r, "x", blobEntry(t, r, "f", "written through the symlink"))}
		}, false},
		{"dirThenSymlink", func(t *testing.T, r *Repo, outside, _ string) []object.TreeEntry {
			return []object.TreeEntry{dirEntry(t, r, "x", blobEntry(t, r, "f", "f")), symlinkEntry(t, r, "x", outside)}
		}, false},
		{"metaDotDot", func(t *testing.T, r *Repo, outside, _ string) []object.TreeEntry {
			return []object.TreeEntry{metaEntryBlob(t, r, `{"p":"../escape","t":"d","m":"0777","u":0,"g":0,"mtime":"NOW"}`), blobEntry(t, r, "a.txt", "a")}
		}, false},
		{"metaThroughSymlink", func(t *testing.T, r *Repo, outside, _ string) []object.TreeEntry {
			return []object.TreeEntry{metaEntryBlob(t, r, `{"p":"x","t":"l","m":"0777","u":0,"g":0,"mtime":"NOW"}`, `{"p":"x/evil","t":"d","m":"0777","u":0,"g":0,"mtime":"NOW"}`),
				symlinkEntry(t, r, "x", outside)}
		}, true},
		{"metaModeThroughSymlink", func(t *testing.T, r *Repo, _, secretDir string) []object.TreeEntry {
			return []object.TreeEntry{metaEntryBlob(t, r, `{"p":"y","t":"l","m":"0777","u":0,"g":0,"mtime":"NOW"}`, `{"p":"y/secret","t":"f","m":"4777","u":0,"g":0,"mtime":"2000-01-01T00:00:00Z"}`),
				symlinkEntry(t, r, "y", secretDir)}
		}, true},
		{"hardlinkThroughSymlink", func(t *testing.T, r *Repo, _, secretDir string) []object.TreeEntry {
			return []object.TreeEntry{metaEntryBlob(t, r, `{"p":"stolen","t":"f","m":"0644","u":0,"g":0,"mtime":"NOW","hardlink":"y/secret"}`, `{"p":"y","t":"l","m":"0777","u":0,"g":0,"mtime":"NOW"}`),
				blobEntry(t, r, "stolen", ""), symlinkEntry(t, r, "y", secretDir)}
		}, false},
		{"hardlinkAbsolute", func(t *testing.T, r *Repo, _, secretDir string) []object.TreeEntry {
			return []object.TreeEntry{metaEntryBlob(t, r, `{"p":"stolen","t":"f","m":"0644","u":0,"g":0,"mtime":"NOW","hardlink":"`+filepath.Join(secretDir, "secret")+`"}`),
				blobEntry(t, r, "stolen", "")}
		}, false},
		{"hardlinkOut", func(t *testing.T, r *Repo, _, _ string) []object.TreeEntry {
			return []object.TreeEntry{metaEntryBlob(t, r, `{"p":"../stolen","t":"f","m":"0644","u":0,"g":0,"mtime":"NOW","hardlink":"a.txt"}`),
				blobEntry(t, r, "a.txt", "a")}
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			outside, err := os.MkdirTemp("", "outside-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(outside) })
			secretDir := t.TempDir()
			secret := filepath.Join(secretDir, "secret")
			if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			secretBefore := testutil.TreeState(t, secretDir)

			r := newRepo(t)
			h := hostileCommit(t, r, tc.entries(t, r, outside, secretDir)...)
			parent := t.TempDir()
			target := filepath.Join(parent, "data")
			writeFiles(t, target, map[string]string{"current.txt": "the data before the restore"})
			prev := testutil.TreeState(t, target)

			err = restoreTo(t, r, h, target)
			switch {
			case err != nil:
				t.Logf("refused: %v", err)
			case tc.ignored:
				prev = testutil.TreeState(t, target) // restored: what matters is outside
			default:
				t.Error("a hostile commit restored")
			}
			if got := dirEntries(t, outside); len(got) > 0 {
				t.Errorf("the restore created %v in %s", got, outside)
			}
			testutil.SameState(t, secretBefore, testutil.TreeState(t, secretDir))
			if fi, err := os.Stat(secret); err == nil && fi.Sys().(*syscall.Stat_t).Nlink != 1 {
				t.Errorf("%s has %d links", secret, fi.Sys().(*syscall.Stat_t).Nlink)
			}
			if got := dirEntries(t, parent); !slices.Equal(got, []string{"data"}) {
				t.Errorf("beside the target: %v, want data alone", got)
			}
			testutil.SameState(t, prev, testutil.TreeState(t, target))
		})
	}
}
