package gitsnap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"snapvisor/internal/testutil"
	"snapvisor/snapshot"
	"snapvisor/store/storetest"
)

// commitTests are TestRepo_Commit's subtests beyond the round trip:
// the size guard, excludes, entries Git cannot hold, several sources, a
// cancelled commit.
var commitTests = []struct {
	name string
	run  func(t *testing.T)
}{
	{"sizeGuard", testCommitSizeGuard},
	{"excludes", testCommitExcludes},
	{"dotGit", testCommitDotGit},
	{"twoSources", testCommitTwoSources},
	{"metaFileName", testCommitMetaFileName},
	{"namesGitRefuses", testCommitNamesGitRefuses},
	{"nonUTF8Names", testCommitNonUTF8Names},
	{"cancelled", testCommitCancelled},
	{"cancelledInOneDirectory", testCommitCancelledInOneDirectory},
}

// testCommitSizeGuard: a file above MaxFileSize is left out and named in
// Result.Skipped (one at the limit is kept); with Strict the commit fails
// with ErrTooLarge naming it and the branch does not move.
func testCommitSizeGuard(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	writeFiles(t, src, map[string]string{
		"small.txt":    "small",
		"at-limit.bin": strings.Repeat("a", 1000),
		"big.bin":      strings.Repeat("b", 1001),
		"sub/huge.bin": strings.Repeat("h", 5000),
		"sub/ok.txt":   "ok",
	})
	r := newRepo(t)
	o := opts(src)
	o.MaxFileSize = 1000
	res := mustCommit(t, r, o)
	skipped := slices.Clone(res.Skipped)
	slices.Sort(skipped)
	if want := []string{filepath.Join(src, "big.bin"), filepath.Join(src, "sub", "huge.bin")}; !slices.Equal(skipped, want) {
		t.Errorf("Skipped = %v, want %v", skipped, want)
	}
	if got, want := treePaths(t, r, res.Hash), []string{MetaFile, "at-limit.bin", "small.txt", "sub/ok.txt"}; !slices.Equal(got, want) {
		t.Errorf("the commit holds %v, want %v", got, want)
	}
	if got := metaPaths(t, r, res.Hash); slices.Contains(got, "big.bin") || slices.Contains(got, "sub/huge.bin") {
		t.Errorf("the metadata names a file left out: %v", got)
	}
	dst := filepath.Join(t.TempDir(), "data")
	if err := restoreTo(t, r, res.Hash, dst); err != nil {
		t.Fatal(err)
	}
	if got, want := walkPaths(t, dst), []string{"at-limit.bin", "small.txt", "sub", "sub/ok.txt"}; !slices.Equal(got, want) {
		t.Errorf("restored %v, want %v", got, want)
	}

	t.Run("strict", func(t *testing.T) {
		writeFiles(t, src, map[string]string{"small.txt": "changed"})
		o.Strict = true
		_, err := r.Commit(context.Background(), o, zaptest.NewLogger(t))
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("strict commit with a file above the limit = %v, want ErrTooLarge", err)
		}
		if !strings.Contains(err.Error(), "big.bin") && !strings.Contains(err.Error(), "huge.bin") {
			t.Errorf("the error names no file: %v", err)
		}
		if h, err := r.Head(); err != nil || h != res.Hash {
			t.Errorf("the branch moved to %s (%v), want %s", h, err, res.Hash)
		}
		if _, other := packFiles(t, r.Path()); len(other) > 0 {
			t.Errorf("a failed commit left %v in objects/pack", other)
		}
	})
}

// testCommitExcludes: SNAPVISOR_EXCLUDE (Options.Excluded) and
// .snapvisorignore files (gitignore syntax, at the root and in a
// subdirectory) leave exactly the expected entries out; the git CLI's
// own reading of the same files agrees.
func testCommitExcludes(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	writeFiles(t, src, map[string]string{
		IgnoreFile: "# comment\n*.log\n!keep.log\ncache/\n/tmp\n",
		"keep.txt": "k", "a.log": "x", "keep.log": "k", "cache/x": "x", "cache.txt": "k", "tmp/t": "x",
		"secret.pem": "x", "arch.only": "x", "z.bak": "k", "local": "k", "other/cache": "k (a file: cache/ is for directories)",
		"sub/" + IgnoreFile: "*.bak\n/local\n!important.log\n",
		"sub/tmp/t":         "k", "sub/cache/y": "x", "sub/b.log": "x", "sub/keep.log": "k", "sub/important.log": "k",
		"sub/x.bak": "x", "sub/deep/y.bak": "x", "sub/local": "x", "sub/deep/local": "k", "sub/deep/skip.me": "x",
	})
	if err := os.Mkdir(filepath.Join(src, "sub", "deep", "cache"), 0o755); err != nil { // empty: must not come back
		t.Fatal(err)
	}
	env := snapshot.Config{Exclude: []string{"*.pem", "sub/deep/skip.me", "data/arch.only"}}
	wantFiles := []string{IgnoreFile, "cache.txt", "keep.log", "keep.txt", "local", "other/cache",
		"sub/" + IgnoreFile, "sub/deep/local", "sub/important.log", "sub/keep.log", "sub/tmp/t", "z.bak"}

	// The oracle: git reads the ignore files (and not SNAPVISOR_EXCLUDE) as we do.
	gitDir := filepath.Join(t.TempDir(), "oracle.git")
	storetest.GitCLI(t, "", "init", "-q", "--bare", gitDir)
	oracle := strings.Fields(storetest.GitCLI(t, "", "--git-dir="+gitDir, "--work-tree="+src, "ls-files", "-o", "--exclude-per-directory="+IgnoreFile))
	slices.Sort(oracle)
	if want := slices.Sorted(slices.Values(append(slices.Clone(wantFiles), "arch.only", "secret.pem", "sub/deep/skip.me"))); !slices.Equal(oracle, want) {
		t.Fatalf("git ls-files reads the ignore files as %v; the test expects %v", oracle, want)
	}

	r := newRepo(t)
	o := opts(src)
	o.Excluded = env.Excluded
	res := mustCommit(t, r, o)
	if got, want := treePaths(t, r, res.Hash), slices.Sorted(slices.Values(append(slices.Clone(wantFiles), MetaFile))); !slices.Equal(got, want) {
		t.Errorf("the commit holds %v,\nwant %v", got, want)
	}
	dst := filepath.Join(t.TempDir(), "data")
	if err := restoreTo(t, r, res.Hash, dst); err != nil {
		t.Fatal(err)
	}
	wantPaths := slices.Sorted(slices.Values(append(slices.Clone(wantFiles), "other", "sub", "sub/deep", "sub/tmp")))
	if got := walkPaths(t, dst); !slices.Equal(got, wantPaths) {
		t.Errorf("restored %v,\nwant %v", got, wantPaths)
	}
}

// testCommitDotGit: .git directories (at the root and below) and a .git
// file are left out and reported in Result.Skipped.
func testCommitDotGit(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	writeFiles(t, src, map[string]string{
		".git/HEAD": "ref: refs/heads/main\n", ".git/config": "[core]\n", "a.txt": "a",
		"sub/repo/.git/HEAD": "ref: refs/heads/main\n", "sub/repo/file": "f",
		"sub/worktree/.git": "gitdir: /elsewhere\n", "sub/worktree/w": "w",
	})
	r := newRepo(t)
	res := mustCommit(t, r, opts(src))
	skipped := slices.Sorted(slices.Values(res.Skipped))
	if want := []string{filepath.Join(src, ".git"), filepath.Join(src, "sub/repo/.git"), filepath.Join(src, "sub/worktree/.git")}; !slices.Equal(skipped, want) {
		t.Errorf("Skipped = %v, want %v", skipped, want)
	}
	if got, want := treePaths(t, r, res.Hash), []string{MetaFile, "a.txt", "sub/repo/file", "sub/worktree/w"}; !slices.Equal(got, want) {
		t.Errorf("the commit holds %v, want %v", got, want)
	}
	for _, p := range metaPaths(t, r, res.Hash) {
		if strings.Contains(p, ".git") {
			t.Errorf("the metadata names %s", p)
		}
	}
	dst := filepath.Join(t.TempDir(), "data")
	if err := restoreTo(t, r, res.Hash, dst); err != nil {
		t.Fatal(err)
	}
	if got, want := walkPaths(t, dst), []string{"a.txt", "sub", "sub/repo", "sub/repo/file", "sub/worktree", "sub/worktree/w"}; !slices.Equal(got, want) {
		t.Errorf("restored %v, want %v", got, want)
	}
}

// testCommitTwoSources: two sources (different parents) become top-level
// directories and round trip, an empty one too.
func testCommitTwoSources(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "etc", "conf")
	testutil.RichTree(t, conf)
	state := filepath.Join(t.TempDir(), "var", "state")
	writeFiles(t, state, map[string]string{"db/state.json": "{}", "MetaFile-like/" + MetaFile: "not at a source's root"})
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(empty, 0o750); err != nil {
		t.Fatal(err)
	}
	r := newRepo(t)
	res := mustCommit(t, r, opts(conf, state, empty))
	for _, p := range treePaths(t, r, res.Hash) {
		if p != MetaFile && !strings.HasPrefix(p, "conf/") && !strings.HasPrefix(p, "state/") {
			t.Errorf("the commit holds %s outside the sources' directories", p)
		}
	}
	targets := []string{filepath.Join(t.TempDir(), "conf"), filepath.Join(t.TempDir(), "x", "state"), filepath.Join(t.TempDir(), "empty")}
	if err := restoreTo(t, r, res.Hash, targets...); err != nil {
		t.Fatal(err)
	}
	testutil.SameTree(t, conf, targets[0])
	testutil.SameTree(t, state, targets[1])
	testutil.SameTree(t, empty, targets[2])

	t.Run("metaFileNameAtASourcesRoot", func(t *testing.T) {
		writeFiles(t, state, map[string]string{MetaFile: "the service's own file"})
		res := mustCommit(t, r, opts(conf, state, empty))
		targets := []string{filepath.Join(t.TempDir(), "conf"), filepath.Join(t.TempDir(), "state"), filepath.Join(t.TempDir(), "empty")}
		if err := restoreTo(t, r, res.Hash, targets...); err != nil {
			t.Fatal(err)
		}
		testutil.SameTree(t, state, targets[1])
	})
}

// testCommitMetaFileName: a source's own file named like MetaFile at its
// root is left out (reported in Result.Skipped) and the commit's metadata
// file is ours; one deeper is kept.
func testCommitMetaFileName(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	writeFiles(t, src, map[string]string{MetaFile: "the service's own\n", "sub/" + MetaFile: "deeper: kept\n", "a.txt": "a"})
	r := newRepo(t)
	res := mustCommit(t, r, opts(src))
	if want := []string{filepath.Join(src, MetaFile)}; !slices.Equal(res.Skipped, want) {
		t.Errorf("Skipped = %v, want %v", res.Skipped, want)
	}
	if got := metaPaths(t, r, res.Hash); !slices.Contains(got, "a.txt") { // decodes: it is ours
		t.Errorf("the metadata file lists %v", got)
	}
	dst := filepath.Join(t.TempDir(), "data")
	if err := restoreTo(t, r, res.Hash, dst); err != nil {
		t.Fatal(err)
	}
	if got, want := walkPaths(t, dst), []string{"a.txt", "sub", "sub/" + MetaFile}; !slices.Equal(got, want) {
		t.Errorf("restored %v, want %v", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "sub", MetaFile)); err != nil || string(b) != "deeper: kept\n" {
		t.Errorf("sub/%s: %q %v", MetaFile, b, err)
	}
}

// testCommitNamesGitRefuses: names Git itself refuses as .git (any letter
// case, trailing dots or spaces, the NTFS short name git~1, HFS+'s
// ignorable code points) are left out and reported as .git is: otherwise
// the commit fails git fsck --strict (hasDotgit; a remote with
// receive.fsckObjects refuses every later push) and a git clone cannot
// check it out.
func testCommitNamesGitRefuses(t *testing.T) {
	refused := []string{".GIT", ".Git.", ".git ", "git~1", "GIT~1", ".g\u200cit"}
	src := filepath.Join(t.TempDir(), "data")
	files := map[string]string{"a.txt": "a", ".gitignore": "kept", "sub/.github/x": "kept"}
	for _, n := range refused {
		files["sub/"+n+"/f"] = "left out"
	}
	writeFiles(t, src, files)
	r := newRepo(t)
	res := mustCommit(t, r, opts(src))
	var want []string
	for _, n := range refused {
		want = append(want, filepath.Join(src, "sub", n))
	}
	if got := slices.Sorted(slices.Values(res.Skipped)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("Skipped = %q, want %q", got, want)
	}
	bare := filepath.Join(t.TempDir(), "remote.git")
	if err := r.Push(context.Background(), mustRemote(t, "git+file://"+bare), Settings{}); err != nil {
		t.Fatal(err)
	}
	if _, err := storetest.GitCLIErr(t, bare, "fsck", "--strict"); err != nil {
		t.Errorf("git fsck --strict: %v", err)
	}
	clone := filepath.Join(t.TempDir(), "clone")
	if _, err := storetest.GitCLIErr(t, "", "clone", "-q", "--branch", testBranch, bare, clone); err != nil {
		t.Errorf("git clone: %v", err)
	}
}

// testCommitNonUTF8Names: names that are not UTF-8 (a Latin-1 file name)
// keep their metadata: mode, time, an empty directory, hard links.
// encoding/json writes such bytes as U+FFFD, so the metadata file must
// carry them another way.
func testCommitNonUTF8Names(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	latin1 := "caf\xe9.txt"
	writeFiles(t, src, map[string]string{latin1: "x", "ok.txt": "y", "h\xe9": "linked"})
	if err := os.Chmod(filepath.Join(src, latin1), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "empty-\xff"), 0o700); err != nil {
		t.Fatal(err)
	}
	r := newRepo(t)
	res := mustCommit(t, r, opts(src))
	dst := filepath.Join(t.TempDir(), "data")
	if err := restoreTo(t, r, res.Hash, dst); err != nil {
		t.Fatal(err)
	}
	testutil.SameTree(t, src, dst)

	t.Run("hardLink", func(t *testing.T) {
		if err := os.Link(filepath.Join(src, "h\xe9"), filepath.Join(src, "h\xe9-link")); err != nil {
			t.Fatal(err)
		}
		res := mustCommit(t, r, opts(src))
		dst := filepath.Join(t.TempDir(), "data")
		if err := restoreTo(t, r, res.Hash, dst); err != nil {
			t.Fatalf("a snapshot with a hard link between names that are not UTF-8 does not restore: %v", err)
		}
		testutil.SameTree(t, src, dst)
	})
}
