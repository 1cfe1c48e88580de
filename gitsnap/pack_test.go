package gitsnap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"snapvisor/internal/testutil"
	"snapvisor/snapshot"
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

func TestRepo_SquashLaggingRemote(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r, err := Open(filepath.Join(dir, "x.git"), "snapvisor/x", true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	up, err := ParseRemote("git+file://" + filepath.Join(dir, "up.git"))
	if err != nil {
		t.Fatal(err)
	}
	lag, err := ParseRemote("git+file://" + filepath.Join(dir, "lag.git"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	day := 24 * time.Hour
	var states []map[string]string
	for i := range 10 { // days 100, 90, ..., 10 ago
		if err := os.WriteFile(filepath.Join(src, "day.txt"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		states = append(states, testutil.TreeState(t, src))
		o := opts(src)
		o.Now = now.Add(-time.Duration(100-10*i) * day)
		mustCommit(t, r, o)
		if i == 3 { // lag.git stops being reachable after the 4th commit
			if err := r.Push(context.Background(), lag, Settings{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.Push(context.Background(), up, Settings{}); err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	if done, err := r.Squash(now.Add(-95*day), 30*day, log); err != nil || done {
		t.Fatalf("squash before a third of the window aged: %v %v", done, err)
	}
	done, err := r.Squash(now.Add(-55*day), 30*day, log) // commits of days 100..60 into one
	if err != nil || !done {
		t.Fatalf("Squash: %v %v", done, err)
	}
	commits, err := r.Log()
	if err != nil || len(commits) != 6 {
		t.Fatalf("log after squash: %d commits %v", len(commits), err)
	}
	// Days 60..10 keep their trees, the base holds day 60's.
	for i, c := range commits {
		testutil.SameState(t, states[9-i], testutil.TreeState(t, restoreInto(t, r, c.Hash)))
	}
	// Both remotes hold only the old history: both are rewritten.
	for _, rem := range []Remote{up, lag} {
		if err := r.Push(context.Background(), rem, Settings{}); err != nil {
			t.Fatalf("push of the squash to %s: %v", rem.Name(), err)
		}
		gitCLI(t, dir, "--git-dir", rem.URL, "fsck", "--strict")
	}
	if err := r.SquashDone(); err != nil {
		t.Fatal(err)
	}
	// A commit made elsewhere on a remote is never overwritten, squash or not.
	other := filepath.Join(dir, "clone")
	gitCLI(t, dir, "clone", "-q", "--branch", "snapvisor/x", up.URL, other)
	gitCLI(t, other, "commit", "-q", "--allow-empty", "-m", "second writer")
	gitCLI(t, other, "push", "-q", "origin", "snapvisor/x")
	o := opts(src)
	if err := os.WriteFile(filepath.Join(src, "day.txt"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, r, o)
	if err := r.Push(context.Background(), up, Settings{}); !errors.Is(err, ErrDiverged) {
		t.Fatalf("push over a second writer's commit: %v", err)
	}
}

func TestSet_Recover(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	testutil.RichTree(t, src)
	want := testutil.TreeState(t, src)
	dir := t.TempDir()
	remote := "git+file://" + filepath.Join(t.TempDir(), "up.git")
	set, err := NewSet(dir, "x", Settings{Remotes: []string{remote}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r, err := set.Open(true)
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, r, opts(src))
	if errs := set.PushAll(context.Background(), r, zaptest.NewLogger(t)); errs[0] != nil {
		t.Fatal(errs[0])
	}
	r.Close()
	// The local repository loses its only pack: the head commit is gone.
	packs, _ := filepath.Glob(filepath.Join(RepoPath(dir, "x"), "objects", "pack", "*.pack"))
	for _, p := range packs {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	r, _ = set.Open(false)
	head, _ := r.Head()
	dst := filepath.Join(t.TempDir(), "data")
	cfg := snapshot.Config{Sources: []string{dst}}
	if _, err := r.RestoreNewest(context.Background(), head, cfg, snapshot.RestoreOptions{DiscardCurrent: true}, zaptest.NewLogger(t)); !errors.Is(err, ErrDamaged) {
		t.Fatalf("restore from the damaged repository: %v", err)
	}
	r.Close()
	h, from, err := set.Recover(context.Background(), cfg, snapshot.RestoreOptions{DiscardCurrent: true}, zaptest.NewLogger(t))
	if err != nil || h != head || from != remote {
		t.Fatalf("Recover: %s %s %v", h, from, err)
	}
	testutil.SameState(t, want, testutil.TreeState(t, dst))
	kept, _ := filepath.Glob(RepoPath(dir, "x") + ".damaged-*")
	if len(kept) != 1 {
		t.Fatalf("damaged repository kept aside: %v", kept)
	}
	r, err = set.Open(false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Verify(context.Background(), head); err != nil {
		t.Fatalf("the local repository after Recover: %v", err)
	}
}
