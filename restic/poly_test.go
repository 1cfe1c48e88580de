package restic

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"snapvisor/store"
)

// TestBackup_Polynomials: a repository we initialise takes the chunker
// polynomial of the first existing one (here restic's), so content is
// chunked once for both; another repository restic initialised keeps its
// own polynomial and is chunked its way; all deduplicate and check clean.
func TestBackup_Polynomials(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "data")
	richTree(t, src)
	ctx := context.Background()
	dirs := []string{filepath.Join(tmp, "ours"), filepath.Join(tmp, "theirs1"), filepath.Join(tmp, "theirs2")}
	resticCLI(t, dirs[1], "init")
	resticCLI(t, dirs[2], "init")
	repos, errs := OpenAll(ctx, []store.Store{openFileStore(t, dirs[0]), openFileStore(t, dirs[1]), openFileStore(t, dirs[2])}, Password(testPassword), true, 0)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", dirs[i], err)
		}
	}
	sts := repos
	if sts[0].cfg.ChunkerPolynomial != sts[1].cfg.ChunkerPolynomial {
		t.Fatalf("our new repository has polynomial %v, the first existing one %v", sts[0].cfg.ChunkerPolynomial, sts[1].cfg.ChunkerPolynomial)
	}
	if sts[2].cfg.ChunkerPolynomial == sts[1].cfg.ChunkerPolynomial {
		t.Fatal("two restic init share a polynomial: the test needs two")
	}
	backupNow(t, src, sts...)
	// A second snapshot after one small change adds little to every repository.
	must(t, os.WriteFile(filepath.Join(src, "a.txt"), []byte("changed"), 0o644))
	res := backupNow(t, src, sts...)
	for _, r := range res {
		if added := r.Snapshot.Summary.DataAddedPacked; added > 64<<10 {
			t.Errorf("%s: second snapshot added %d bytes", r.Repo.Name(), added)
		}
	}
	for _, d := range dirs {
		resticCLI(t, d, "check", "--read-data")
		out := filepath.Join(tmp, "out-"+filepath.Base(d))
		resticCLI(t, d, "restore", "latest", "--target", out)
		sameTree(t, src, filepath.Join(out, src))
	}
}
