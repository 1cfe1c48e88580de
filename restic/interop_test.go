package restic

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"snapvisor/internal/testutil"
)

// richTree makes a source with what a tree must carry (testutil.RichTree).
func richTree(t *testing.T, src string) {
	t.Helper()
	testutil.RichTree(t, src)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestBackup_ResticReads(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "data")
	richTree(t, src)
	repoDir := filepath.Join(tmp, "repo")
	r := openOrInit(t, openFileStore(t, repoDir))
	backupNow(t, src, r)
	resticCLI(t, repoDir, "check", "--read-data")
	out := filepath.Join(tmp, "out")
	resticCLI(t, repoDir, "restore", "latest", "--target", out)
	sameTree(t, src, filepath.Join(out, src))
}

func TestRepo_RestoreTree(t *testing.T) {
	for _, writer := range []string{"ours", "restic"} {
		t.Run(writer, func(t *testing.T) {
			tmp := t.TempDir()
			src := filepath.Join(tmp, "data")
			richTree(t, src)
			repoDir := filepath.Join(tmp, "repo")
			if writer == "restic" {
				resticCLI(t, repoDir, "init")
				resticCLI(t, repoDir, "backup", src)
			}
			r := openOrInit(t, openFileStore(t, repoDir))
			if writer == "ours" {
				backupNow(t, src, r)
			}
			ctx := context.Background()
			snaps, err := r.Snapshots(ctx)
			must(t, err)
			n, err := r.FindPath(ctx, r.index, snaps[len(snaps)-1], src)
			must(t, err)
			out := filepath.Join(tmp, "out")
			must(t, os.Mkdir(out, 0o700))
			if _, err := r.RestoreTree(ctx, r.index, n, out, RestoreOptions{Chown: os.Geteuid() == 0}); err != nil {
				t.Fatal(err)
			}
			sameTree(t, src, out)
			if b, err := exec.Command("diff", "-r", "--no-dereference", src, out).CombinedOutput(); err != nil {
				t.Fatalf("diff: %v\n%s", err, b)
			}
			rep, err := r.Check(ctx, CheckOptions{ReadData: true})
			must(t, err)
			if !rep.OK() {
				t.Fatalf("check: %+v", rep)
			}
		})
	}
}
