package gitsnap

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"snapvisor/internal/testutil"
)

func TestRepo_Repack(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	testutil.RichTree(t, src)
	dir := t.TempDir()
	r, err := Open(filepath.Join(dir, "x.git"), "snapvisor/x", true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var states []map[string]string
	var hashes []string
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(src, "n.txt"), []byte{byte('a' + i)}, 0o644); err != nil {
			t.Fatal(err)
		}
		states = append(states, testutil.TreeState(t, src))
		hashes = append(hashes, mustCommit(t, r, opts(src)).Hash.String())
	}
	if n, _ := r.packs(); len(n) != 3 {
		t.Fatalf("%d packs after 3 commits, want one each", len(n))
	}
	n, err := r.Repack(2)
	if err != nil || n != 3 {
		t.Fatalf("Repack: %d %v", n, err)
	}
	if p, _ := r.packs(); len(p) != 1 {
		t.Fatalf("%d packs after Repack, want 1", len(p))
	}
	head, _ := r.Head()
	if _, err := r.Verify(context.Background(), head); err != nil {
		t.Fatal(err)
	}
	for i, h := range hashes {
		testutil.SameState(t, states[i], testutil.TreeState(t, restoreInto(t, r, h)))
	}
	gitCLI(t, dir, "--git-dir", filepath.Join(dir, "x.git"), "fsck", "--strict", "--no-dangling")
	if n, err := r.Repack(2); err != nil || n != 0 {
		t.Fatalf("Repack below its minimum: %d %v", n, err)
	}
}
