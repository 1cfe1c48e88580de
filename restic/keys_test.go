package restic

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"snapvisor/store"
)

// TestKeys_OpenAll: a remembered key is reused while the repository's config
// is unchanged, and a repository recreated at the same place is opened anew.
func TestKeys_OpenAll(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "data")
	writeTree(t, src, map[string]string{"f": "x"})
	dir := filepath.Join(tmp, "repo")
	var keys Keys
	open := func() *Repo {
		t.Helper()
		repos, errs := keys.OpenAll(ctx, []store.Store{openFileStore(t, dir)}, Password(testPassword), true, 0)
		must(t, errs[0])
		return repos[0]
	}
	first := open()
	again := open()
	if again.key != first.key || again.cfg != first.cfg {
		t.Fatal("the remembered key was not reused")
	}
	backupNow(t, src, again)
	must(t, os.RemoveAll(dir))
	fresh := open() // a new repository at the same place: new key, new config
	if fresh.cfg.ID == first.cfg.ID || fresh.key == first.key {
		t.Fatal("a recreated repository was opened with the old key")
	}
	backupNow(t, src, fresh)
	resticCLI(t, dir, "check", "--read-data")
}
