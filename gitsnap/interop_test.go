package gitsnap

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"snapvisor/store/storetest"
)

// TestRepo_Fetch: a commit made by hand with the git CLI in a clone of the
// remote (a file added, one removed, one made executable) and pushed is
// fetched and restored exactly as the clone holds it, and Log counts its
// changes (computed: it has no trailer).
func TestRepo_Fetch(t *testing.T) {
	for _, kind := range remoteKinds {
		if kind.name == "ssh" || kind.name == "fileMissing" {
			continue // the transports are TestRemotes'; ssh logins are slow here
		}
		t.Run(kind.name, func(t *testing.T) {
			ctx := context.Background()
			env := kind.make(t)
			src := filepath.Join(t.TempDir(), "data")
			writeFiles(t, src, map[string]string{"a.txt": "a\n", "b.txt": "b\n", "run.sh": "#!/bin/sh\necho hi\n", "conf/c.yaml": "c: 1\n"})
			r := newRepo(t)
			mustCommit(t, r, opts(src))
			if err := r.Push(ctx, env.rem, env.s); err != nil {
				t.Fatal(err)
			}

			clone := filepath.Join(t.TempDir(), "clone")
			storetest.GitCLI(t, "", append(slices.Clone(env.cliArgs), "clone", "-q", "--branch", testBranch, env.cli, clone)...)
			writeFiles(t, clone, map[string]string{"added.txt": "added by hand\n"})
			storetest.GitCLI(t, clone, "rm", "-q", "b.txt")
			if err := os.Chmod(filepath.Join(clone, "run.sh"), 0o755); err != nil {
				t.Fatal(err)
			}
			storetest.GitCLI(t, clone, "add", "-A")
			storetest.GitCLI(t, clone, "commit", "-q", "-m", "by hand")
			storetest.GitCLI(t, clone, append(slices.Clone(env.cliArgs), "push", "-q", "origin", testBranch)...)
			cli := revParse(t, clone, "HEAD")

			r2 := newRepo(t)
			h, err := r2.Fetch(ctx, env.rem, env.s)
			if err != nil {
				t.Fatal(err)
			}
			if h.String() != cli {
				t.Fatalf("Fetch = %s, want the CLI's commit %s", h, cli)
			}
			log, err := r2.LogFrom(h)
			if err != nil || len(log) != 2 {
				t.Fatalf("LogFrom = %+v, %v", log, err)
			}
			if log[0].Changed != 3 || log[0].Subject != "by hand" {
				t.Errorf("the hand-made commit is listed as %+v, want 3 files changed", log[0])
			}
			dst := filepath.Join(t.TempDir(), "data")
			if err := restoreTo(t, r2, h, dst); err != nil {
				t.Fatal(err)
			}
			want := checkoutFiles(t, clone)
			delete(want, MetaFile)
			got := checkoutFiles(t, dst)

			// git gc packs the remote's objects as git does (deltas): they read the same.
			t.Run("afterGitGC", func(t *testing.T) {
				storetest.GitCLI(t, env.bare, "gc", "-q", "--aggressive")
				r3 := newRepo(t)
				h3, err := r3.Fetch(ctx, env.rem, env.s)
				if err != nil || h3 != h {
					t.Fatalf("Fetch after git gc = %s, %v; want %s", h3, err, h)
				}
				if rep, err := r3.Verify(ctx, h3); err != nil || rep.Commits != 2 {
					t.Fatalf("Verify after git gc = %+v, %v", rep, err)
				}
				dst3 := filepath.Join(t.TempDir(), "data")
				if err := restoreTo(t, r3, h3, dst3); err != nil {
					t.Fatal(err)
				}
				sameFiles(t, "restored after git gc", got, checkoutFiles(t, dst3))
			})

			t.Run("withoutMetadata", func(t *testing.T) { commitWithoutMetadata(t, env, clone) })

			wantExec, gotExec := want["run.sh"], got["run.sh"]
			delete(want, "run.sh")
			delete(got, "run.sh")
			sameFiles(t, "restored", want, got)
			t.Run("executableBit", func(t *testing.T) {
				if gotExec != wantExec {
					t.Errorf("restored run.sh is %q, the clone's %q", gotExec, wantExec)
				}
			})
		})
	}
}

// commitWithoutMetadata: a commit another tool made without the metadata
// file restores with Git's modes (directories 0755, files 0644 or 0755)
// and the commit's time, as Restore's contract says.
func commitWithoutMetadata(t *testing.T, env remoteEnv, clone string) {
	ctx := context.Background()
	storetest.GitCLI(t, clone, "rm", "-q", MetaFile)
	storetest.GitCLI(t, clone, "commit", "-q", "-m", "no metadata")
	storetest.GitCLI(t, clone, append(slices.Clone(env.cliArgs), "push", "-q", "origin", testBranch)...)
	r := newRepo(t)
	h, err := r.Fetch(ctx, env.rem, env.s)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.commit(h)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "data")
	if err := restoreTo(t, r, h, dst); err != nil {
		t.Fatal(err)
	}
	want := checkoutFiles(t, clone)
	sameFiles(t, "restored", want, checkoutFiles(t, dst))
	err = filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir() && fi.Mode().Perm() != 0o755:
			t.Errorf("%s: directory mode %v, want 0755", p, fi.Mode().Perm())
		case fi.Mode().IsRegular() && fi.Mode().Perm() != 0o644 && fi.Mode().Perm() != 0o755:
			t.Errorf("%s: mode %v, want 0644 or 0755", p, fi.Mode().Perm())
		}
		if p != dst && !fi.ModTime().Truncate(time.Second).Equal(c.Committer.When.Truncate(time.Second)) {
			t.Errorf("%s: mtime %v, want the commit's time %v", p, fi.ModTime(), c.Committer.When)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
