package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapvisor/store"
	"snapvisor/store/storetest"

	"snapvisor/rotation"
	"snapvisor/snapshot"
)

// TestBackends runs the snapshot suite against every store kind on real
// servers (storetest.Backends; the storage suite is store's TestConformance).
func TestBackends(t *testing.T) {
	for _, k := range storetest.Backends {
		t.Run(k.Name, func(t *testing.T) {
			b := k.Start(t)
			t.Run("snapshots", func(t *testing.T) { testSnapshots(t, b.Open(t, storetest.FreshPrefix())) })
			t.Run("restoreIntoEmptyDirectory", func(t *testing.T) { testRestore(t, b.Open(t, storetest.FreshPrefix())) })
			t.Run("leases", func(t *testing.T) { testLeases(t, b.Open(t, storetest.FreshPrefix())) })
			t.Run("pushSameSecond", func(t *testing.T) { testPushSameSecond(t, b.Open(t, storetest.FreshPrefix())) })
			t.Run("unfinishedUploads", func(t *testing.T) {
				if b.LeaveUpload == nil {
					t.Skip("the service discards unfinished uploads by itself (Azure: uncommitted blocks after 7 days; GCS: resumable sessions after a week; Redis: uncommitted chunks expire; PostgreSQL, SQLite: an unfinished upload is a rolled-back transaction)")
				}
				testUnfinishedUploads(t, b, storetest.FreshPrefix())
			})
		})
	}
}

func testSnapshots(t *testing.T, s store.Store) {
	ctx := storetest.Ctx(t, 2*time.Minute)
	local := t.TempDir()
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var paths []string
	for i, ext := range []string{".tar.gz", ".tar.zst", ".tar", ".tar.zst"} {
		paths = append(paths, storetest.MakeSnapshot(t, local, "app", t0.Add(time.Duration(i)*time.Hour), ext, 300<<10+int64(i)))
	}
	foreign := storetest.MakeSnapshot(t, local, "app-cache", t0.Add(10*time.Hour), ".tar.gz", 1000)
	other := storetest.MakeSnapshot(t, local, "other", t0.Add(11*time.Hour), ".tar.gz", 1000)
	for _, p := range append(append([]string{}, paths...), foreign, other) {
		rs, err := Push(ctx, s, p)
		if err != nil {
			t.Fatalf("push %s: %v", filepath.Base(p), err)
		}
		fi, _ := os.Stat(p)
		if rs.Key != filepath.Base(p) || rs.Size != fi.Size() || rs.Remote != s.Name() {
			t.Errorf("push result %+v", rs)
		}
	}
	// A partial upload (archive without .sha256), a .sha256 without archive and unrelated names.
	partial := fmt.Sprintf("app-%s.tar.gz", t0.Add(20*time.Hour).Format(snapshot.TimeLayout))
	if err := s.Put(ctx, partial, strings.NewReader("partial"), 7); err != nil {
		t.Fatal(err)
	}
	orphan := fmt.Sprintf("app-%s.tar.gz", t0.Add(21*time.Hour).Format(snapshot.TimeLayout))
	sb := snapshot.FormatSum(strings.Repeat("0", 64), orphan)
	if err := s.Put(ctx, orphan+".sha256", bytes.NewReader(sb), int64(len(sb))); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"app-notes.txt", "app-20250301T120000Z.tar.bz2", "sub/app-20250301T230000Z.tar.gz"} {
		if err := s.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}

	list, err := ListSnapshots(ctx, s, "app")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range list {
		keys = append(keys, r.Key)
	}
	want := []string{filepath.Base(paths[3]), filepath.Base(paths[2]), filepath.Base(paths[1]), filepath.Base(paths[0])}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("ListSnapshots(app) = %v, want %v (newest first; no partial, foreign or orphan)", keys, want)
	}
	if list[0].Compression != "zstd" || list[1].Compression != "none" || list[3].Compression != "gzip" || !list[0].Time.Equal(t0.Add(3*time.Hour)) ||
		list[0].Name != "app" || list[0].Size != 300<<10+3 {
		t.Errorf("ListSnapshots(app)[0] = %+v", list[0])
	}
	if all, _ := ListSnapshots(ctx, s, ""); len(all) != 6 {
		t.Errorf("ListSnapshots(\"\") lists %d, want 6", len(all))
	}

	// Pushing again uploads nothing (the modified time stays).
	again, err := Push(ctx, s, paths[3])
	if err != nil || !again.Modified.Equal(list[0].Modified) {
		t.Errorf("second push: %+v, %v; want the first upload's time %v", again, err, list[0].Modified)
	}

	// Fetch into an empty directory: same bytes, .sha256 beside it, no temporaries.
	dst := filepath.Join(t.TempDir(), "restore")
	got, err := Fetch(ctx, s, list[0].Key, dst)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if !sameFile(t, got, paths[3]) || !sameFile(t, got+".sha256", paths[3]+".sha256") {
		t.Errorf("fetched files differ from the pushed ones")
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 2 {
		t.Errorf("fetch left %d entries in %s, want 2", len(ents), dst)
	}
	// A corrupted remote archive: checksum error, nothing left behind.
	bad := filepath.Base(paths[0])
	if err := s.Put(ctx, bad, strings.NewReader(strings.Repeat("z", 1000)), 1000); err != nil {
		t.Fatal(err)
	}
	dst2 := t.TempDir()
	if _, err := Fetch(ctx, s, bad, dst2); !errors.Is(err, ErrChecksum) {
		t.Errorf("fetch of a corrupted archive: %v, want ErrChecksum", err)
	}
	if ents, _ := os.ReadDir(dst2); len(ents) != 0 {
		t.Errorf("failed fetch left %d entries", len(ents))
	}
	// Pushing repairs it: the stale .sha256 goes first, then a full upload.
	if _, err := Push(ctx, s, paths[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := Fetch(ctx, s, bad, dst2); err != nil {
		t.Errorf("fetch after repair: %v", err)
	}

	// Rotation keeps the newest 2 of this name only.
	_, deleted, err := Rotate(ctx, s, "app", rotation.Policy{Keep: 2}, t0.Add(24*time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 2 {
		t.Errorf("rotation deleted %v, want the 2 oldest", deleted)
	}
	list, _ = ListSnapshots(ctx, s, "app")
	if len(list) != 2 || list[0].Key != want[0] || list[1].Key != want[1] {
		t.Errorf("after rotation: %+v", list)
	}
	for _, k := range deleted {
		if objs, _ := s.List(ctx, k); len(objs) != 0 {
			t.Errorf("rotation left %+v", objs)
		}
	}
	if fl, _ := ListSnapshots(ctx, s, "app-cache"); len(fl) != 1 {
		t.Errorf("rotation of app touched app-cache: %+v", fl)
	}
	if err := DeleteSnapshot(ctx, s, filepath.Base(foreign)); err != nil {
		t.Fatal(err)
	}
	if fl, _ := ListSnapshots(ctx, s, "app-cache"); len(fl) != 0 {
		t.Errorf("after DeleteSnapshot: %+v", fl)
	}
	// The local snapshots are untouched.
	for _, p := range paths {
		if _, err := os.Stat(p + ".sha256"); err != nil {
			t.Errorf("local snapshot changed: %v", err)
		}
	}
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

// testRestore is the new-node case against a real store: a real snapshot of
// a directory tree, pushed from its local copy and also streamed with no
// local copy (snapshot.Stream into PushStream), each fetched into an empty
// directory and restored with snapshot.Restore into an empty target; the
// restored tree must equal the source (content, modes, symlinks, hardlinks).
func testRestore(t *testing.T, s store.Store) {
	ctx := storetest.Ctx(t, 2*time.Minute)
	src := filepath.Join(t.TempDir(), "data")
	writeTree(t, src)
	want := treeOf(t, src)
	log := storetest.Logger(t)

	t.Run("pushed", func(t *testing.T) {
		cfg := snapshot.Config{Sources: []string{src}, Dir: t.TempDir(), Name: "app", Compression: snapshot.CompressionZstd}
		info, err := snapshot.Create(ctx, cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Push(ctx, s, info.Path); err != nil {
			t.Fatal(err)
		}
		restoreAndCompare(t, ctx, s, "app", want)
	})
	t.Run("streamed", func(t *testing.T) {
		cfg := snapshot.Config{Sources: []string{src}, Name: "streamed", Compression: snapshot.CompressionGzip} // no Dir
		at := time.Now()
		key := cfg.NameAt(at).String()
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		var rs Snapshot
		go func() {
			var err error
			rs, err = PushStream(ctx, s, key, pr, nil)
			pr.CloseWithError(err)
			done <- err
		}()
		info, err := snapshot.Stream(ctx, cfg, at, pw, log)
		pw.CloseWithError(err)
		if perr := <-done; err != nil || perr != nil {
			t.Fatalf("stream: %v; push: %v", err, perr)
		}
		if info.Name != key || rs.Size != info.Size {
			t.Fatalf("streamed %+v, stored %+v", info, rs)
		}
		restoreAndCompare(t, ctx, s, "streamed", want)
	})
}

// restoreAndCompare fetches the newest snapshot named name into an empty
// directory, restores it into an empty target and compares the tree.
func restoreAndCompare(t *testing.T, ctx context.Context, s store.Store, name string, want map[string]string) {
	t.Helper()
	list, err := ListSnapshots(ctx, s, name)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListSnapshots(%s) = %+v, %v", name, list, err)
	}
	fetched := filepath.Join(t.TempDir(), "fetched") // does not exist yet
	p, err := Fetch(ctx, s, list[0].Key, fetched)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fetched); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("Fetch created %s with mode %v (%v), want 0700", fetched, fi.Mode().Perm(), err)
	}
	target := filepath.Join(t.TempDir(), "data") // same base name as the source: a new node's volume
	cfg := snapshot.Config{Sources: []string{target}, Dir: fetched, Name: name, Compression: snapshot.CompressionGzip}
	if err := snapshot.Restore(ctx, cfg, p, snapshot.RestoreOptions{}, storetest.Logger(t)); err != nil {
		t.Fatalf("restore %s from %s: %v", list[0].Key, s.Name(), err)
	}
	got := treeOf(t, target)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("restored %s = %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("restored an extra entry %s", k)
		}
	}
}

// writeTree writes a small tree with nested directories, modes, a symlink,
// a hardlink, an empty file and 3 MiB of data (several S3/Azure parts are not
// needed: the streaming tests cover size).
func writeTree(t *testing.T, root string) {
	t.Helper()
	for _, d := range []string{"a/b/c", "empty-dir"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{"a/hello.txt": "hello", "a/b/c/deep.txt": "deep", "empty": ""}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(root, "a/big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, storetest.Gen(9, 3<<20)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chmod(filepath.Join(root, "a/big.bin"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("hello.txt", filepath.Join(root, "a/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "a/hello.txt"), filepath.Join(root, "hard")); err != nil {
		t.Fatal(err)
	}
}

// treeOf describes every entry under root: type, mode and content hash or link target.
func treeOf(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += " " + hex.EncodeToString(sum[:8])
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
