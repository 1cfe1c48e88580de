package restic

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"snapvisor/internal/testutil"
	"snapvisor/store"
)

const testPassword = "correct horse battery staple"

// openFileStore opens a file:// store at dir.
func openFileStore(t *testing.T, dir string) store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), "file://"+dir, store.Config{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// openOrInit opens the repository on st, initialising it when missing.
func openOrInit(t *testing.T, st store.Store) *Repo {
	t.Helper()
	ctx := context.Background()
	r, err := Open(ctx, st, Password(testPassword))
	if err != nil {
		r, err = Init(ctx, st, Password(testPassword), 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// backupNow takes one snapshot of src into repos.
func backupNow(t *testing.T, src string, repos ...*Repo) []BackupResult {
	t.Helper()
	res, err := Backup(context.Background(), repos, BackupOptions{Sources: []string{src}, Host: "test-host", Time: time.Now(), Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Repo.Name(), r.Err)
		}
	}
	return res
}

// resticCLI runs the restic CLI on the repository at repo (its CLI string).
func resticCLI(t *testing.T, repo string, args ...string) string {
	t.Helper()
	return cliRepo{Repo: repo}.run(t, args...)
}

// writeTree fills dir with files of the given contents.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// sameTree fails unless the trees at a and b are alike (testutil.SameTree).
func sameTree(t *testing.T, a, b string) {
	t.Helper()
	testutil.SameTree(t, a, b)
}
