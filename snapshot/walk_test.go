package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"snapvisor/seal"
)

// archiveEntries lists the entries of a gzip or zstd snapshot: name -> type flag and link name.
func archiveEntries(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	out := map[string]string{}
	_, err = readArchive(context.Background(), f, compressionOf(path), func(hdr *tar.Header, name string, tr *tar.Reader) error {
		out[name] = string(hdr.Typeflag) + hdr.Linkname
		return nil
	})
	must(t, err)
	return out
}

func TestCreate_SymlinkedSource(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	real := filepath.Join(base, "real", "pgdata")
	makeTree(t, real)
	want := model(t, real)
	must(t, os.Symlink(filepath.Join("real", "pgdata"), filepath.Join(base, "data"))) // data -> real/pgdata
	cfg := testConfig(t, CompressionGzip, filepath.Join(base, "data"))

	info, err := Create(ctx, cfg, testLogger(t))
	must(t, err)
	entries := archiveEntries(t, info.Path)
	if got := entries["data"]; got != string(tar.TypeDir) {
		t.Fatalf("archive top entry data is %q, want a directory (entries: %d)", got, len(entries))
	}
	if _, ok := entries["data/text.txt"]; !ok {
		t.Fatalf("archive lacks data/text.txt: the symlink was not followed")
	}

	t.Run("RestoreIntoLinkTarget", func(t *testing.T) {
		must(t, os.WriteFile(filepath.Join(real, "text.txt"), []byte("changed"), 0o644))
		now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		must(t, Restore(ctx, cfg, info.Path, RestoreOptions{Now: func() time.Time { return now }}, testLogger(t)))
		fi, err := os.Lstat(filepath.Join(base, "data"))
		must(t, err)
		if fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("the symlink data was replaced by %v", fi.Mode())
		}
		sameTree(t, want, model(t, real), false)
		if b, err := os.ReadFile(filepath.Join(real+".pre-restore-20300102T030405Z", "text.txt")); err != nil || string(b) != "changed" {
			t.Fatalf("previous contents not kept beside the link target: %q, %v", b, err)
		}
	})

	t.Run("RestoreThroughDanglingLink", func(t *testing.T) {
		other := filepath.Join(base, "elsewhere", "new")
		target := filepath.Join(t.TempDir(), "data")
		must(t, os.Symlink(other, target))
		cfg2 := cfg
		cfg2.Sources = []string{target}
		must(t, Restore(ctx, cfg2, info.Path, RestoreOptions{}, testLogger(t)))
		if fi, err := os.Lstat(target); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("the dangling symlink was not kept: %v, %v", fi, err)
		}
		sameTree(t, want, model(t, other), false)
	})
}

func TestCreate_HardlinkFirstNameVanishes(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "data")
	writeFile(t, filepath.Join(src, "a"), []byte("shared content"), 0o644)
	must(t, os.Link(filepath.Join(src, "a"), filepath.Join(src, "b")))
	must(t, os.Link(filepath.Join(src, "a"), filepath.Join(src, "c")))
	cfg := testConfig(t, CompressionGzip, src)
	h := hooks{beforeOpen: func(p string) {
		if filepath.Base(p) == "a" {
			must(t, os.Remove(p)) // after the walk saw a with 3 links, before it is opened
		}
	}}
	info, err := create(ctx, cfg, testLogger(t), h)
	must(t, err)
	entries := archiveEntries(t, info.Path)
	if _, ok := entries["data/a"]; ok {
		t.Fatalf("the vanished a is in the archive: %v", entries)
	}
	if entries["data/b"] != string(tar.TypeReg) || entries["data/c"] != string(tar.TypeLink)+"data/b" {
		t.Fatalf("entries %v; want b stored and c a hardlink to it", entries)
	}
	must(t, VerifyWith(ctx, info.Path, seal.Config{}))
	must(t, Restore(ctx, cfg, info.Path, RestoreOptions{DiscardCurrent: true}, testLogger(t)))
	for _, n := range []string{"b", "c"} {
		if b, err := os.ReadFile(filepath.Join(src, n)); err != nil || string(b) != "shared content" {
			t.Fatalf("restored %s = %q, %v", n, b, err)
		}
	}
}

func TestCreate_FileSwappedDuringWalk(t *testing.T) {
	ctx := context.Background()
	secret := filepath.Join(t.TempDir(), "secret")
	writeFile(t, secret, []byte("not part of the source"), 0o600)
	src := filepath.Join(t.TempDir(), "data")
	for _, n := range []string{"fifo", "symlink", "other", "steady"} {
		writeFile(t, filepath.Join(src, n), []byte("regular "+n), 0o644)
	}
	cfg := testConfig(t, CompressionGzip, src)
	h := hooks{beforeOpen: func(p string) {
		switch filepath.Base(p) {
		case "fifo": // would block an open for reading forever
			must(t, os.Remove(p))
			must(t, syscall.Mkfifo(p, 0o644))
		case "symlink": // would be followed out of the source
			must(t, os.Remove(p))
			must(t, os.Symlink(secret, p))
		case "other": // another file (inode) under the same name
			must(t, os.Rename(filepath.Join(src, "steady"), p))
			writeFile(t, filepath.Join(src, "steady"), []byte("regular steady"), 0o644)
		}
	}}
	done := make(chan struct{})
	var info Info
	var err error
	go func() {
		defer close(done)
		info, err = create(ctx, cfg, testLogger(t), h)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Create blocked on a file swapped for a FIFO")
	}
	must(t, err)
	if info.Skipped != 3 || info.Files != 1 {
		t.Fatalf("info = %+v, want 3 skipped and 1 file", info)
	}
	entries := archiveEntries(t, info.Path)
	for _, n := range []string{"fifo", "symlink", "other"} {
		if _, ok := entries["data/"+n]; ok {
			t.Errorf("swapped %s archived as %q", n, entries["data/"+n])
		}
	}
	if entries["data/steady"] != string(tar.TypeReg) {
		t.Errorf("steady archived as %q", entries["data/steady"])
	}
}

func TestCreate_DirSyncFailureIsAWarning(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	writeFile(t, filepath.Join(src, "f"), []byte("f"), 0o644)
	cfg := testConfig(t, CompressionGzip, src)
	core, logs := observer.New(zap.WarnLevel)
	h := hooks{syncDir: func(string) error { return errors.New("fsync: input/output error") }}
	info, err := create(context.Background(), cfg, zap.New(core), h)
	if err != nil {
		t.Fatalf("Create = %v; the snapshot was renamed into place, so it is complete", err)
	}
	must(t, VerifyWith(context.Background(), info.Path, seal.Config{}))
	if logs.FilterMessageSnippet("syncing its directory failed").Len() != 1 {
		t.Fatalf("warnings %v, want one about the directory sync", logs.All())
	}
}

func TestCreate_SnapshotDirMode(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	writeFile(t, filepath.Join(src, "f"), []byte("f"), 0o644)
	t.Run("Created", func(t *testing.T) {
		cfg := testConfig(t, CompressionNone, src)
		cfg.Dir = filepath.Join(t.TempDir(), "new-parent", "backups")
		_, err := Create(context.Background(), cfg, testLogger(t))
		must(t, err)
		for p, want := range map[string]os.FileMode{cfg.Dir: 0o700, filepath.Dir(cfg.Dir): 0o755} {
			fi, err := os.Stat(p)
			must(t, err)
			if fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
			}
		}
	})
	t.Run("ExistingKeepsItsMode", func(t *testing.T) {
		cfg := testConfig(t, CompressionNone, src)
		must(t, os.Mkdir(cfg.Dir, 0o755))
		must(t, os.Chmod(cfg.Dir, 0o750))
		info, err := Create(context.Background(), cfg, testLogger(t))
		must(t, err)
		fi, err := os.Stat(cfg.Dir)
		must(t, err)
		if fi.Mode().Perm() != 0o750 {
			t.Errorf("existing snapshot dir mode changed to %v", fi.Mode().Perm())
		}
		if fi, err := os.Stat(info.Path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("archive mode %v (%v), want 0600", fi.Mode().Perm(), err)
		}
	})
	t.Run("NotADirectory", func(t *testing.T) {
		cfg := testConfig(t, CompressionNone, src)
		must(t, os.WriteFile(cfg.Dir, nil, 0o600))
		if _, err := Create(context.Background(), cfg, testLogger(t)); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("Create into a file = %v, want a not-a-directory error", err)
		}
	})
}

func TestArchives(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"snapshot-20240101T000000Z.tar.gz":        "valid",
		"snapshot-20240102T000000Z.tar.zst":       "empty checksum",
		"snapshot-20240103T000000Z.tar":           "no checksum",
		"other-20240104T000000Z.tar.gz":           "other name",
		".snapshot-20240105T000000Z.tar.gz.tmp-1": "temporary",
		"notes.txt": "not a snapshot",
	}
	for n, content := range files {
		must(t, os.WriteFile(filepath.Join(dir, n), []byte(content), 0o600))
	}
	writeSum(t, filepath.Join(dir, "snapshot-20240101T000000Z.tar.gz"))
	must(t, os.WriteFile(filepath.Join(dir, "snapshot-20240102T000000Z.tar.zst.sha256"), nil, 0o600))
	must(t, os.Mkdir(filepath.Join(dir, "snapshot-20240106T000000Z.tar"), 0o700)) // not a file
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"snapshot", []string{"snapshot-20240103T000000Z.tar", "snapshot-20240102T000000Z.tar.zst", "snapshot-20240101T000000Z.tar.gz"}},
		{"", []string{"other-20240104T000000Z.tar.gz", "snapshot-20240103T000000Z.tar", "snapshot-20240102T000000Z.tar.zst", "snapshot-20240101T000000Z.tar.gz"}},
	} {
		t.Run("Name="+tc.name, func(t *testing.T) {
			got, err := Archives(dir, tc.name)
			must(t, err)
			var names []string
			for _, p := range got {
				if filepath.Dir(p) != dir {
					t.Errorf("path %s is not in %s", p, dir)
				}
				names = append(names, filepath.Base(p))
			}
			if strings.Join(names, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("Archives = %v, want %v", names, tc.want)
			}
		})
	}
	t.Run("MissingDir", func(t *testing.T) {
		got, err := Archives(filepath.Join(dir, "missing"), "")
		if err != nil || len(got) != 0 {
			t.Fatalf("Archives of a missing dir = %v, %v", got, err)
		}
	})
	// Verify, which verify --all runs on each, reports the two broken ones.
	for _, n := range []string{"snapshot-20240102T000000Z.tar.zst", "snapshot-20240103T000000Z.tar"} {
		if err := VerifyWith(context.Background(), filepath.Join(dir, n), seal.Config{}); err == nil || !strings.Contains(err.Error(), n) {
			t.Errorf("VerifyWith(%s) = %v, want an error naming it", n, err)
		}
	}
}

// TestCreate_SkipsLostFound: lost+found at a source root belongs to the file
// system (a fresh ext4 volume has one, root-owned 0700) and is left out of
// snapshots; a lost+found deeper down, or one that is not a directory, is data.
func TestCreate_SkipsLostFound(t *testing.T) {
	ctx := context.Background()
	t.Run("Ext4Root", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "data")
		mountExt4(t, src)
		writeFile(t, filepath.Join(src, "lost+found", "#12"), []byte("fsck found this"), 0o600)
		writeFile(t, filepath.Join(src, "db"), []byte("data"), 0o644)
		cfg := testConfig(t, CompressionGzip, src)
		info, err := Create(ctx, cfg, testLogger(t))
		must(t, err)
		got := archiveEntries(t, info.Path)
		for name := range got {
			if strings.Contains(name, "lost+found") {
				t.Errorf("snapshot holds %s", name)
			}
		}
		if _, ok := got["data/db"]; !ok {
			t.Fatalf("snapshot lacks data/db: %v", got)
		}
	})
	t.Run("DeeperOrNotADirectory", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "data")
		writeFile(t, filepath.Join(src, "sub", "lost+found", "kept"), []byte("data"), 0o644)
		src2 := filepath.Join(t.TempDir(), "other")
		writeFile(t, filepath.Join(src2, "lost+found"), []byte("a file of the service"), 0o644)
		cfg := testConfig(t, CompressionGzip, src, src2)
		info, err := Create(ctx, cfg, testLogger(t))
		must(t, err)
		got := archiveEntries(t, info.Path)
		for _, name := range []string{"data/sub/lost+found/kept", "other/lost+found"} {
			if _, ok := got[name]; !ok {
				t.Errorf("snapshot lacks %s: %v", name, got)
			}
		}
	})
}
