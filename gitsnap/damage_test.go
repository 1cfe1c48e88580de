package gitsnap

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"go.uber.org/zap/zaptest"

	"snapvisor/internal/testutil"
	"snapvisor/snapshot"
	"snapvisor/store/storetest"
)

// damaged is a repository of two commits, each with its own pack, whose
// newest pack (the head's) was then damaged.
type damaged struct {
	path         string
	older, head  plumbing.Hash
	olderState   map[string]string // the source as the older commit holds it
	newestPack   string
	headOnlyData string // a file only the head holds
}

// damages are the ways the newest pack is damaged.
var damages = []struct {
	name string
	do   func(t *testing.T, pack string)
}{
	// One byte in the middle of the pack: inside the head's new file's
	// compressed data (256 KiB that do not compress).
	{"flipByte", func(t *testing.T, pack string) {
		if err := os.Chmod(pack, 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(pack)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x40
		if err := os.WriteFile(pack, b, 0o444); err != nil {
			t.Fatal(err)
		}
	}},
	{"deletePack", func(t *testing.T, pack string) {
		for _, f := range []string{pack, strings.TrimSuffix(pack, ".pack") + ".idx"} {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
	}},
}

// makeDamaged commits a source twice (the second commit's new objects in
// a pack of their own), then damages the newest pack with do.
func makeDamaged(t *testing.T, do func(*testing.T, string)) damaged {
	t.Helper()
	src := filepath.Join(t.TempDir(), "data")
	writeFiles(t, src, map[string]string{"conf/a.yaml": "a: 1\n", "conf/b.yaml": "b: 1\n", "keep.txt": "kept"})
	path := filepath.Join(t.TempDir(), "x.git")
	r, err := Open(path, testBranch, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d := damaged{path: path, headOnlyData: "new.bin"}
	d.older = mustCommit(t, r, opts(src)).Hash
	d.olderState = testutil.TreeState(t, src)
	before, _ := packFiles(t, path)

	f, err := os.Create(filepath.Join(src, d.headOnlyData))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, storetest.Gen(3, 256<<10)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	writeFiles(t, src, map[string]string{"conf/a.yaml": "a: 2\n"})
	d.head = mustCommit(t, r, opts(src)).Hash
	after, _ := packFiles(t, path)
	for _, p := range after {
		if !slices.Contains(before, p) {
			d.newestPack = p
		}
	}
	if d.newestPack == "" || len(after) != len(before)+1 {
		t.Fatalf("packs before the second commit %v, after %v: want one more", before, after)
	}
	do(t, d.newestPack)
	return d
}

// TestRepo_Verify: damage to the newest pack (a flipped byte, the pack
// deleted) is ErrDamaged; the older commit, whose objects are in another
// pack, verifies.
func TestRepo_Verify(t *testing.T) {
	for _, dm := range damages {
		t.Run(dm.name, func(t *testing.T) {
			d := makeDamaged(t, dm.do)
			r := openRepo(t, d.path, false)
			if rep, err := r.Verify(context.Background(), d.older); err != nil || rep.Commits != 1 {
				t.Fatalf("Verify of the older commit = %+v, %v", rep, err)
			}
			_, err := r.Verify(context.Background(), d.head)
			if err == nil {
				t.Fatal("Verify of the damaged head passed")
			}
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("Verify of the damaged head = %v, want ErrDamaged", err)
			}
		})
	}
}

// TestRepo_RestoreNewest: with the newest pack damaged, Restore of the
// head fails and leaves the target as it was; RestoreNewest falls back to
// the older commit and the target holds its content.
func TestRepo_RestoreNewest(t *testing.T) {
	for _, dm := range damages {
		t.Run(dm.name, func(t *testing.T) {
			d := makeDamaged(t, dm.do)
			r := openRepo(t, d.path, false)
			parent := t.TempDir()
			target := filepath.Join(parent, "data")
			writeFiles(t, target, map[string]string{"current.txt": "the data before the restore", "dir/f": "f"})
			prev := testutil.TreeState(t, target)

			err := restoreTo(t, r, d.head, target)
			if err == nil {
				t.Fatal("Restore of the damaged head succeeded")
			}
			testutil.SameState(t, prev, testutil.TreeState(t, target))
			if got := dirEntries(t, parent); !slices.Equal(got, []string{"data"}) {
				t.Errorf("beside the target after a failed restore: %v", got)
			}

			if !errors.Is(err, ErrDamaged) {
				t.Errorf("Restore of the damaged head = %v, want ErrDamaged", err)
			}
			h, err := r.RestoreNewest(context.Background(), d.head, snapshot.Config{Sources: []string{target}}, snapshot.RestoreOptions{DiscardCurrent: true}, zaptest.NewLogger(t))
			if err != nil || h != d.older {
				t.Fatalf("RestoreNewest = %s, %v; want the older commit %s", h, err, d.older)
			}
			testutil.SameState(t, d.olderState, testutil.TreeState(t, target))
		})
	}
}
