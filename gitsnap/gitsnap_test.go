package gitsnap

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"snapvisor/internal/testutil"
	"snapvisor/snapshot"
)

const author = "snapvisor test <test@localhost>"

func opts(src ...string) Options {
	return Options{Sources: src, MaxFileSize: 10 << 20, Author: author, Trigger: "test", Host: "h", Now: time.Now()}
}

func mustCommit(t *testing.T, r *Repo, o Options) Result {
	t.Helper()
	res, err := r.Commit(context.Background(), o, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// restoreInto restores commit ref of r into a fresh directory and returns it.
func restoreInto(t *testing.T, r *Repo, ref string) string {
	t.Helper()
	h, err := r.Resolve(ref)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "data")
	cfg := snapshot.Config{Sources: []string{dst}}
	if _, err := r.Restore(context.Background(), h, cfg, snapshot.RestoreOptions{DiscardCurrent: true}, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func gitCLI(t *testing.T, dir string, args ...string) string {
	t.Helper()
	testutil.RequireTool(t, "git")
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=cli", "GIT_AUTHOR_EMAIL=cli@localhost",
		"GIT_COMMITTER_NAME=cli", "GIT_COMMITTER_EMAIL=cli@localhost", "LANG=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRepo_Commit(t *testing.T) {
	t.Run("roundTrip", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "data")
		testutil.RichTree(t, src)
		r, err := Open(filepath.Join(t.TempDir(), "x.git"), "snapvisor/x", true)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		res := mustCommit(t, r, opts(src))
		if res.Unchanged || res.Hash.IsZero() {
			t.Fatalf("first commit: %+v", res)
		}
		testutil.SameTree(t, src, restoreInto(t, r, "latest"))
		again := mustCommit(t, r, opts(src))
		if !again.Unchanged || again.Hash != res.Hash {
			t.Fatalf("unchanged run made a commit: %+v", again)
		}
		if err := os.WriteFile(filepath.Join(src, "a.txt"), []byte("changed"), 0o644); err != nil {
			t.Fatal(err)
		}
		third := mustCommit(t, r, opts(src))
		if third.Unchanged || third.Changed != 2 { // a.txt and its hard link sub/hard
			t.Fatalf("third: %+v", third)
		}
		log, err := r.Log()
		if err != nil || len(log) != 2 || log[0].Changed != 2 {
			t.Fatalf("log %+v %v", log, err)
		}
		if _, err := r.Verify(context.Background(), res.Hash); err != nil {
			t.Fatal(err)
		}
		testutil.SameTree(t, src, restoreInto(t, r, log[0].Short))
	})
	for _, tc := range commitTests {
		t.Run(tc.name, tc.run)
	}
}

func TestRepo_Push(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	testutil.RichTree(t, src)
	dir := t.TempDir()
	r, err := Open(filepath.Join(dir, "x.git"), "snapvisor/x", true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	mustCommit(t, r, opts(src))
	remote := filepath.Join(dir, "remote.git")
	rem, err := ParseRemote("git+file://" + remote)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Push(context.Background(), rem, Settings{}); err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(dir, "clone")
	gitCLI(t, dir, "clone", "-q", "--branch", "snapvisor/x", remote, clone)
	gitCLI(t, clone, "fsck", "--strict")
	var files []string
	_ = filepath.Walk(clone, func(p string, fi os.FileInfo, err error) error {
		if fi.IsDir() && fi.Name() == ".git" {
			return filepath.SkipDir
		}
		if !fi.IsDir() {
			rel, _ := filepath.Rel(clone, p)
			files = append(files, rel)
		}
		return nil
	})
	sort.Strings(files)
	want := ".snapvisor-meta.jsonl a.txt dangling exec.sh link sub/b.txt sub/deep/big sub/hard"
	if got := strings.Join(files, " "); got != want {
		t.Fatalf("clone holds %s, want %s", got, want)
	}
	// A commit made by hand with the git CLI is restorable by us.
	if err := os.WriteFile(filepath.Join(clone, "hand.txt"), []byte("by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCLI(t, clone, "add", "-A")
	gitCLI(t, clone, "commit", "-q", "-m", "by hand")
	gitCLI(t, clone, "push", "-q", "origin", "snapvisor/x")
	// The local branch is now behind: our next commit diverges and is refused.
	if err := os.WriteFile(filepath.Join(src, "new.txt"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, r, opts(src))
	if err := r.Push(context.Background(), rem, Settings{}); !errors.Is(err, ErrDiverged) {
		t.Fatalf("push to a diverged remote: %v", err)
	}
	r2, err := Open(filepath.Join(dir, "y.git"), "snapvisor/x", true)
	if err != nil {
		t.Fatal(err)
	}
	h, err := r2.Fetch(context.Background(), rem, Settings{})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "data")
	if _, err := r2.Restore(context.Background(), h, snapshot.Config{Sources: []string{dst}}, snapshot.RestoreOptions{DiscardCurrent: true}, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "hand.txt")); err != nil || string(b) != "by hand\n" {
		t.Fatalf("hand.txt: %q %v", b, err)
	}
}
