package gitsnap

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap/zaptest"
)

// TestSet_Adopt: a repository without the branch takes the remote's
// history; when its branch cannot be written there, Adopt says so (the
// remote's error among unreadable, no remote named) instead of reporting a
// history the repository does not hold.
func TestSet_Adopt(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "data")
	writeFiles(t, src, map[string]string{"f": "precious"})
	env := fileRemote(t, false)
	r := newRepo(t)
	res := mustCommit(t, r, opts(src))
	if err := r.Push(ctx, env.rem, Settings{}); err != nil {
		t.Fatal(err)
	}
	adopt := func(t *testing.T, harm func(path string)) (*Repo, string, []error) {
		t.Helper()
		set := Set{Dir: t.TempDir(), Name: "x", Settings: Settings{Branch: testBranch}, Remotes: []Remote{env.rem}}
		local, err := set.Open(true)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { local.Close() })
		harm(RepoPath(set.Dir, set.Name))
		from, h, unreadable := set.Adopt(ctx, local, zaptest.NewLogger(t))
		if from != "" && h != res.Hash {
			t.Errorf("Adopt took %s from %s, want the remote's %s", h, from, res.Hash)
		}
		return local, from, unreadable
	}

	t.Run("adopted", func(t *testing.T) {
		local, from, unreadable := adopt(t, func(string) {})
		if from != env.rem.Name() || len(unreadable) != 0 {
			t.Fatalf("Adopt = %q, %v; want it from %s", from, unreadable, env.rem.Name())
		}
		if h, err := local.Head(); err != nil || h != res.Hash {
			t.Fatalf("local head %s, %v; want %s", h, err, res.Hash)
		}
	})

	t.Run("branchCannotBeWritten", func(t *testing.T) {
		_, from, unreadable := adopt(t, func(repo string) {
			// A directory where the branch's ref file goes: no ref file can be written.
			if err := os.MkdirAll(filepath.Join(repo, "refs", "heads", filepath.FromSlash(testBranch), "x"), 0o755); err != nil {
				t.Fatal(err)
			}
		})
		if from != "" || len(unreadable) == 0 {
			t.Fatalf("Adopt = %q, %v; want no remote and the error of the branch that could not be written", from, unreadable)
		}
		t.Logf("reported: %v", unreadable)
	})
}
