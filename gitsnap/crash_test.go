package gitsnap

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/zap/zaptest"

	"snapvisor/internal/testutil"
)

// testCommitCancelled (TestRepo_Commit): a commit whose ctx is cancelled
// midway (from Options.Excluded, after some entries) fails, leaves the
// branch where it was and no temporary pack behind, and the next commit
// works.
func testCommitCancelled(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	files := map[string]string{}
	for d := range 8 {
		for f := range 4 {
			files[fmt.Sprintf("d%d/f%d.txt", d, f)] = fmt.Sprintf("first %d %d", d, f)
		}
	}
	writeFiles(t, src, files)
	r := newRepo(t)
	first := mustCommit(t, r, opts(src))
	for p := range files {
		files[p] = "second " + p
	}
	writeFiles(t, src, files)
	packsBefore, _ := packFiles(t, r.Path())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	o := opts(src)
	o.Excluded = func(base, rel, arch string) bool {
		if calls++; calls == 12 { // in the third directory
			cancel()
		}
		return false
	}
	res, err := r.Commit(ctx, o, zaptest.NewLogger(t))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled commit = %+v, %v; want context.Canceled", res, err)
	}
	if h, err := r.Head(); err != nil || h != first.Hash {
		t.Fatalf("the branch is at %s (%v) after a cancelled commit, want %s", h, err, first.Hash)
	}
	packs, other := packFiles(t, r.Path())
	if len(other) > 0 {
		t.Errorf("the cancelled commit left %v in objects/pack", other)
	}
	if !slices.Equal(packs, packsBefore) {
		t.Errorf("packs %v after a cancelled commit, want %v", packs, packsBefore)
	}

	next := mustCommit(t, r, opts(src))
	if next.Unchanged || next.Changed != len(files) {
		t.Fatalf("the commit after the cancelled one: %+v, want %d files changed", next, len(files))
	}
	if _, err := r.Verify(context.Background(), next.Hash); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "data")
	if err := restoreTo(t, r, next.Hash, dst); err != nil {
		t.Fatal(err)
	}
	testutil.SameTree(t, src, dst)
}

// testCommitCancelledInOneDirectory (TestRepo_Commit): a cancel while the
// walk is in one large directory stops the commit too; the branch stays.
func testCommitCancelledInOneDirectory(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	files := map[string]string{}
	for f := range 200 {
		files[fmt.Sprintf("f%03d.txt", f)] = fmt.Sprint(f)
	}
	writeFiles(t, src, files)
	r := newRepo(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	o := opts(src)
	o.Excluded = func(base, rel, arch string) bool {
		if calls++; calls == 10 {
			cancel()
		}
		return false
	}
	res, err := r.Commit(ctx, o, zaptest.NewLogger(t))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a commit cancelled in its only directory = %+v, %v; want context.Canceled", res, err)
	}
	if _, err := r.Head(); !errors.Is(err, ErrNoBranch) {
		t.Fatalf("the branch exists after a cancelled first commit: %v", err)
	}
}
