package gitsnap

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"go.uber.org/zap/zaptest"

	"snapvisor/internal/testutil"
	"snapvisor/store/storetest"
)

// TestRepo_Squash: commits spanning 100 days (injected times) squashed at
// 90 days leave one base commit with the tree of the newest old one and
// the newer commits rewritten on top (same trees, messages, authors,
// times). The remotes, whose branch holds only the pre-squash history,
// take the rewritten branch; the result passes git fsck --strict and
// every remaining commit restores. (A second writer's commit is never
// overwritten: TestRepo_SquashLaggingRemote.)
func TestRepo_Squash(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	src := filepath.Join(t.TempDir(), "data")
	writeFiles(t, src, map[string]string{"conf/base.yaml": "base: true\n"})
	r := newRepo(t)
	type snap struct {
		commit *object.Commit
		state  map[string]string
	}
	var snaps []snap // oldest first
	for _, daysAgo := range []int{100, 95, 91, 89, 50, 10, 0} {
		writeFiles(t, src, map[string]string{"conf/counter": strconv.Itoa(daysAgo), fmt.Sprintf("days/%03d.txt", daysAgo): "x"})
		o := opts(src)
		o.Now = now.AddDate(0, 0, -daysAgo)
		res := mustCommit(t, r, o)
		c, err := object.GetCommit(r.st, res.Hash)
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, snap{c, testutil.TreeState(t, src)})
	}
	oldHead := snaps[len(snaps)-1].commit.Hash
	remotes := []remoteEnv{fileRemote(t, false), httpsRemote(t)}
	for _, env := range remotes {
		if err := r.Push(ctx, env.rem, env.s); err != nil {
			t.Fatalf("push to %s: %v", env.name, err)
		}
	}

	rewritten, err := r.Squash(now.AddDate(0, 0, -90), 0, zaptest.NewLogger(t))
	if err != nil || !rewritten {
		t.Fatalf("Squash = %v, %v; want rewritten", rewritten, err)
	}
	head, err := r.Head()
	if err != nil {
		t.Fatal(err)
	}
	var line []*object.Commit // newest first
	for h := head; !h.IsZero(); {
		c, err := object.GetCommit(r.st, h)
		if err != nil {
			t.Fatal(err)
		}
		line = append(line, c)
		h = plumbing.ZeroHash
		if len(c.ParentHashes) > 0 {
			if len(c.ParentHashes) > 1 {
				t.Errorf("commit %s has %d parents", c.Hash, len(c.ParentHashes))
			}
			h = c.ParentHashes[0]
		}
	}
	// The base (the 91-days-old tree), then the commits of 89, 50, 10 and 0 days.
	want := []snap{snaps[6], snaps[5], snaps[4], snaps[3], snaps[2]}
	if len(line) != len(want) {
		t.Fatalf("after squashing, the branch has %d commits, want %d", len(line), len(want))
	}
	for i, c := range line {
		w := want[i].commit
		if c.TreeHash != w.TreeHash {
			t.Errorf("commit %d: tree %s, want %s (of %s)", i, c.TreeHash, w.TreeHash, w.Hash)
		}
		if i == len(line)-1 {
			if !strings.Contains(c.Message, w.Message) || !c.Committer.When.Equal(w.Committer.When) {
				t.Errorf("base commit: message %q at %v, want one quoting %q at %v", c.Message, c.Committer.When, w.Message, w.Committer.When)
			}
			continue
		}
		if c.Message != w.Message || c.Author.String() != w.Author.String() || !c.Author.When.Equal(w.Author.When) || !c.Committer.When.Equal(w.Committer.When) {
			t.Errorf("commit %d: %q by %s at %v, want %q by %s at %v", i, c.Message, c.Author, c.Committer.When, w.Message, w.Author, w.Committer.When)
		}
	}
	if again, err := r.Squash(now.AddDate(0, 0, -90), 0, zaptest.NewLogger(t)); err != nil || again {
		t.Errorf("a second Squash with the same cutoff = %v, %v; want nothing rewritten", again, err)
	}

	for _, env := range remotes {
		t.Run(env.name, func(t *testing.T) {
			branch := "refs/heads/" + testBranch
			if got := revParse(t, env.bare, branch); got != oldHead.String() {
				t.Fatalf("remote branch at %s before the push, want %s", got, oldHead)
			}
			if err := r.Push(ctx, env.rem, env.s); err != nil {
				t.Fatalf("push of the rewritten branch over the pre-squash history: %v", err)
			}
			if got := revParse(t, env.bare, branch); got != head.String() {
				t.Fatalf("remote branch at %s after the push, want %s", got, head)
			}
			storetest.GitCLI(t, env.bare, "fsck", "--strict", "--no-dangling")
			if got := strings.Fields(storetest.GitCLI(t, env.bare, "log", "--format=%H", testBranch)); len(got) != len(want) || got[0] != head.String() {
				t.Errorf("git log of the remote = %v, want the %d commits from %s", got, len(want), head)
			}
			r2 := newRepo(t)
			h, err := r2.Fetch(ctx, env.rem, env.s)
			if err != nil || h != head {
				t.Fatalf("fetch of the squashed branch = %s, %v; want %s", h, err, head)
			}
		})
	}

	t.Run("restoreEach", func(t *testing.T) {
		for i, c := range line {
			dst := filepath.Join(t.TempDir(), "data")
			if err := restoreTo(t, r, c.Hash, dst); err != nil {
				t.Fatalf("restore of commit %d (%s): %v", i, c.Hash, err)
			}
			testutil.SameState(t, want[i].state, testutil.TreeState(t, dst))
		}
		if _, err := r.Verify(ctx, head); err != nil {
			t.Fatal(err)
		}
		// Every remote has it: the pre-squash history is released.
		if err := r.SquashDone(); err != nil || r.squashing() {
			t.Fatalf("SquashDone: %v (still squashing: %v)", err, r.squashing())
		}
		if _, err := r.Verify(ctx, head); err != nil {
			t.Fatalf("after SquashDone's repack: %v", err)
		}
	})

	// A repository that took its history from a remote (a new volume:
	// Set.Adopt) and never pushed to it squashes and force-pushes too.
	t.Run("adoptedRepository", func(t *testing.T) {
		env := httpsRemote(t)
		if err := r.Push(ctx, env.rem, env.s); err != nil {
			t.Fatal(err)
		}
		set := Set{Dir: t.TempDir(), Name: "x", Settings: env.s, Remotes: []Remote{env.rem}}
		set.Settings.Branch = testBranch
		adopted, err := set.Open(true)
		if err != nil {
			t.Fatal(err)
		}
		defer adopted.Close()
		if from, h, unreadable := set.Adopt(ctx, adopted, zaptest.NewLogger(t)); from == "" || h != head || len(unreadable) > 0 {
			t.Fatalf("Adopt = %q, %s, %v; want the remote's %s", from, h, unreadable, head)
		}
		// Squash everything older than 30 days: the 50- and 89-days-old commits join the base.
		rewritten, err := adopted.Squash(now.AddDate(0, 0, -30), 0, zaptest.NewLogger(t))
		if err != nil || !rewritten {
			t.Fatalf("Squash = %v, %v", rewritten, err)
		}
		newHead, err := adopted.Head()
		if err != nil {
			t.Fatal(err)
		}
		if err := adopted.Push(ctx, env.rem, env.s); err != nil {
			t.Fatalf("forced push of a squash from an adopted repository: %v", err)
		}
		if got := revParse(t, env.bare, "refs/heads/"+testBranch); got != newHead.String() {
			t.Fatalf("remote branch at %s, want %s", got, newHead)
		}
	})

	t.Run("laterSnapshotsFastForward", func(t *testing.T) {
		writeFiles(t, src, map[string]string{"conf/counter": "after the squash"})
		o := opts(src)
		o.Now = now.Add(time.Hour)
		res := mustCommit(t, r, o)
		for _, env := range remotes {
			if err := r.Push(ctx, env.rem, env.s); err != nil {
				t.Fatalf("push to %s after the squash: %v", env.name, err)
			}
			if got := revParse(t, env.bare, "refs/heads/"+testBranch); got != res.Hash.String() {
				t.Errorf("%s at %s, want %s", env.name, got, res.Hash)
			}
		}
		if got := strings.Fields(storetest.GitCLI(t, remotes[0].bare, "log", "--format=%H", testBranch)); !slices.Contains(got, head.String()) {
			t.Errorf("the new commit does not follow the squashed head: %v", got)
		}
	})
}
