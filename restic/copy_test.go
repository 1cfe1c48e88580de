package restic

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapvisor/remote"
	"snapvisor/store"
	"snapvisor/store/storetest"
)

// TestCopyRepo_Copy: a repository written by the restic CLI and by us is
// copied file by file to MinIO and from there to a directory that the restic
// CLI checks (--read-data) and lists; a rerun copies nothing; a copy cut
// short (snapshot files and a pack missing) is completed by the next one.
func TestCopyRepo_Copy(t *testing.T) {
	ctx := storetest.Ctx(t, 5*time.Minute)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "data")
	richTree(t, src)
	srcRepo := filepath.Join(tmp, "repo")
	resticCLI(t, srcRepo, "init")
	resticCLI(t, srcRepo, "backup", src)
	writeTree(t, src, map[string]string{"more/new.txt": strings.Repeat("new data ", 5000)})
	backupNow(t, src, openOrInit(t, openFileStore(t, srcRepo)))

	m := storetest.StartMinIO(t)
	m.MakeBucket(t, "snapvisor")
	s3 := store.WithRetry(storetest.Open(t, m.URL("snapvisor", "restic"), storetest.MinIOConfig()), store.Policy{Retries: 1}, nil)
	from := openFileStore(t, srcRepo)
	st, err := CopyRepo(ctx, from, s3)
	if err != nil {
		t.Fatalf("copy to s3: %v", err)
	}
	if st.Files == 0 || st.Skipped != 0 {
		t.Fatalf("first copy: %+v", st)
	}
	dstRepo := filepath.Join(tmp, "copy")
	dst := openFileStore(t, dstRepo)
	if _, err := CopyRepo(ctx, s3, dst); err != nil {
		t.Fatalf("copy from s3: %v", err)
	}
	resticCLI(t, dstRepo, "check", "--read-data")
	if got := len(cliSnapshots(t, cliRepo{Repo: dstRepo})); got != 2 {
		t.Fatalf("restic snapshots on the copy: %d, want 2", got)
	}

	again, err := CopyRepo(ctx, from, s3)
	if err != nil || again.Files != 0 || again.Skipped == 0 {
		t.Fatalf("rerun: %+v, %v; want nothing copied, everything skipped", again, err)
	}

	// Cut short: the snapshot files (written last) and a pack are missing.
	for _, dir := range []string{"snapshots", "data"} {
		ents, err := filepath.Glob(filepath.Join(dstRepo, dir, "*"))
		must(t, err)
		if dir == "data" {
			ents, err = filepath.Glob(filepath.Join(dstRepo, "data", "*", "*"))
			must(t, err)
			ents = ents[:1]
		}
		for _, e := range ents {
			must(t, os.Remove(e))
		}
	}
	resumed, err := CopyRepo(ctx, from, dst)
	if err != nil || resumed.Files != 3 {
		t.Fatalf("resume: %+v, %v; want 3 files (2 snapshots, 1 pack)", resumed, err)
	}
	resticCLI(t, dstRepo, "check", "--read-data")
	if got := len(cliSnapshots(t, cliRepo{Repo: dstRepo})); got != 2 {
		t.Fatalf("restic snapshots after the resumed copy: %d, want 2", got)
	}
}

// TestCopyRepo_Refused: a damaged source file (bytes altered, same size) is
// never copied (ErrChecksum, no snapshot on the destination); a destination
// holding another repository is refused and left as it was; the same
// location is refused.
func TestCopyRepo_Refused(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "data")
	writeTree(t, src, map[string]string{"a.txt": strings.Repeat("alpha ", 10000)})
	srcRepo := filepath.Join(tmp, "repo")
	resticCLI(t, srcRepo, "init")
	resticCLI(t, srcRepo, "backup", src)
	from := openFileStore(t, srcRepo)

	t.Run("otherRepository", func(t *testing.T) {
		other := filepath.Join(tmp, "other")
		resticCLI(t, other, "init")
		resticCLI(t, other, "backup", src)
		_, err := CopyRepo(ctx, from, openFileStore(t, other))
		if !errors.Is(err, ErrOtherRepository) {
			t.Fatalf("copy into another repository: %v, want ErrOtherRepository", err)
		}
		resticCLI(t, other, "check")
		if got := len(cliSnapshots(t, cliRepo{Repo: other})); got != 1 {
			t.Fatalf("the other repository holds %d snapshots, want its own 1", got)
		}
	})
	t.Run("sameLocation", func(t *testing.T) {
		if _, err := CopyRepo(ctx, from, openFileStore(t, srcRepo+"/")); !errors.Is(err, remote.ErrSameLocation) {
			t.Fatalf("copy onto itself: %v, want ErrSameLocation", err)
		}
	})
	t.Run("damagedSource", func(t *testing.T) {
		packs, err := filepath.Glob(filepath.Join(srcRepo, "data", "*", "*"))
		must(t, err)
		b, err := os.ReadFile(packs[0])
		must(t, err)
		b[len(b)/2] ^= 0xff
		must(t, os.WriteFile(packs[0], b, 0o600))
		dstRepo := filepath.Join(tmp, "dst")
		_, err = CopyRepo(ctx, from, openFileStore(t, dstRepo))
		if !errors.Is(err, remote.ErrChecksum) {
			t.Fatalf("copy of a damaged pack: %v, want ErrChecksum", err)
		}
		if snaps, _ := filepath.Glob(filepath.Join(dstRepo, "snapshots", "*")); len(snaps) != 0 {
			t.Fatalf("the destination lists snapshots after a failed copy: %v", snaps)
		}
		if _, err := os.Stat(filepath.Join(dstRepo, "data", filepath.Base(filepath.Dir(packs[0])), filepath.Base(packs[0]))); err == nil {
			t.Fatal("the damaged pack reached the destination")
		}
	})
}
