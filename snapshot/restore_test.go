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

	"snapvisor/internal/testutil"
	"snapvisor/seal"
)

// restoreFixture is a source directory with a known tree and its snapshot directory.
type restoreFixture struct {
	cfg    Config
	src    string
	parent string
	want   map[string]node
}

func newRestoreFixture(t *testing.T) restoreFixture {
	t.Helper()
	parent := t.TempDir()
	src := filepath.Join(parent, "data")
	writeFile(t, filepath.Join(src, "precious.txt"), []byte("do not touch"), 0o644)
	writeFile(t, filepath.Join(src, "sub", "file"), []byte("nested"), 0o600)
	cfg := Config{Sources: []string{src}, Dir: filepath.Join(t.TempDir(), "backups"), Name: "snapshot", Compression: CompressionGzip}
	must(t, os.MkdirAll(cfg.Dir, 0o700))
	return restoreFixture{cfg: cfg, src: src, parent: parent, want: model(t, src)}
}

// untouched checks that the target and its parent are as before a refused restore.
func (f restoreFixture) untouched(t *testing.T) {
	t.Helper()
	sameTree(t, f.want, model(t, f.src), false)
	if got := entriesOf(t, f.parent); len(got) != 1 {
		t.Fatalf("parent of the target holds %v, want only the target (no staging, no pre-restore)", got)
	}
}

func TestRestore_RefusesMaliciousArchives(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside")
	must(t, os.MkdirAll(outside, 0o755))
	dir := func(name string) tar.Header { return tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755} }
	reg := func(name string) tar.Header { return tar.Header{Typeflag: tar.TypeReg, Name: name} }
	cases := []struct {
		name    string
		entries []tarEntry
		entry   string // named in the error
	}{
		{"DotDot", []tarEntry{{dir("data/"), ""}, {reg("data/../evil"), "pwned"}}, "data/../evil"},
		{"DotDotDeep", []tarEntry{{dir("data/"), ""}, {reg("data/sub/../../../evil"), "pwned"}}, "data/sub/../../../evil"},
		{"Absolute", []tarEntry{{dir("data/"), ""}, {reg(filepath.Join(outside, "evil")), "pwned"}}, filepath.Join(outside, "evil")},
		{"SymlinkThenFile", []tarEntry{
			{dir("data/"), ""},
			{tar.Header{Typeflag: tar.TypeSymlink, Name: "data/escape", Linkname: outside}, ""},
			{reg("data/escape/evil"), "pwned"},
		}, "data/escape/evil"},
		{"SymlinkDirThenFile", []tarEntry{
			{dir("data/"), ""},
			{tar.Header{Typeflag: tar.TypeSymlink, Name: "data/a", Linkname: "."}, ""},
			{reg("data/a/evil"), "pwned"},
		}, "data/a/evil"},
		{"HardlinkOutside", []tarEntry{
			{dir("data/"), ""},
			{tar.Header{Typeflag: tar.TypeLink, Name: "data/passwd", Linkname: "../../../../etc/passwd"}, ""},
		}, "data/passwd"},
		{"DeviceNode", []tarEntry{
			{dir("data/"), ""},
			{tar.Header{Typeflag: tar.TypeChar, Name: "data/mem", Devmajor: 1, Devminor: 1}, ""},
		}, "data/mem"},
		{"OtherTopLevel", []tarEntry{{dir("data/"), ""}, {reg("etc/evil"), "pwned"}}, "etc/evil"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newRestoreFixture(t)
			archive := craft(t, f.cfg.Dir, "20240101T000000Z", tc.entries)
			err := Restore(context.Background(), f.cfg, archive, RestoreOptions{}, testLogger(t))
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("Restore = %v, want a refusal", err)
			}
			if !strings.Contains(err.Error(), archive) || !strings.Contains(err.Error(), `"`+tc.entry+`"`) {
				t.Errorf("error %q does not name the archive and the entry %q", err, tc.entry)
			}
			f.untouched(t)
			if got := entriesOf(t, outside); len(got) != 0 {
				t.Fatalf("something was written outside: %v", got)
			}
			if _, err := os.Lstat(filepath.Join(filepath.Dir(f.parent), "evil")); err == nil {
				t.Fatal("evil was written beside the parent")
			}
		})
	}
}

func TestRestore_RefusesDamagedArchives(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		damage  func(t *testing.T, archive string)
		want    error
		message string
	}{
		{"FlippedByte", func(t *testing.T, p string) {
			b, err := os.ReadFile(p)
			must(t, err)
			b[len(b)/2] ^= 0x40
			must(t, os.WriteFile(p, b, 0o600))
		}, ErrChecksum, "checksum mismatch"},
		{"Truncated", func(t *testing.T, p string) {
			fi, err := os.Stat(p)
			must(t, err)
			must(t, os.Truncate(p, fi.Size()*2/3))
		}, ErrChecksum, "checksum mismatch"},
		{"TruncatedWithMatchingChecksum", func(t *testing.T, p string) {
			fi, err := os.Stat(p)
			must(t, err)
			must(t, os.Truncate(p, fi.Size()*2/3))
			writeSum(t, p)
		}, ErrCorrupt, "unexpected EOF"},
		{"FlippedByteWithMatchingChecksum", func(t *testing.T, p string) {
			b, err := os.ReadFile(p)
			must(t, err)
			b[len(b)/2] ^= 0x40
			must(t, os.WriteFile(p, b, 0o600))
			writeSum(t, p)
		}, ErrCorrupt, ""},
		{"Foreign", func(t *testing.T, p string) {
			must(t, os.WriteFile(p, []byte("%PDF-1.4 this is not a snapshot at all\n"), 0o600))
			writeSum(t, p)
		}, ErrCorrupt, "not a gzip file"},
		{"MissingChecksum", func(t *testing.T, p string) {
			must(t, os.Remove(p+".sha256"))
		}, os.ErrNotExist, ".sha256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newRestoreFixture(t)
			// Incompressible, so that the middle of the archive is stored content
			// that a flipped byte always changes (a flip in a padding bit, like those
			// at gzip block boundaries, or in a repetitive compressed stream can
			// decode to the same bytes). 2.5 MiB keeps block boundaries away from it.
			big := make([]byte, 5<<19)
			x := uint64(88172645463325252)
			for i := range big {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				big[i] = byte(x)
			}
			writeFile(t, filepath.Join(f.src, "big"), big, 0o644)
			info, err := Create(ctx, f.cfg, testLogger(t))
			must(t, err)
			f.want = model(t, f.src)
			tc.damage(t, info.Path)

			err = VerifyWith(ctx, info.Path, seal.Config{})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), info.Path) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("Verify = %v, want %v naming the file and %q", err, tc.want, tc.message)
			}
			err = Restore(ctx, f.cfg, info.Path, RestoreOptions{}, testLogger(t))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), info.Path) {
				t.Fatalf("Restore = %v, want %v naming the file", err, tc.want)
			}
			f.untouched(t)
		})
	}
}

// mountTmpfs mounts a tmpfs of size at dir until the test ends; it skips (fails when CI=true) without root.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		testutil.Unavailable(t, "cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
}

// TestRestore_MountPoint restores into a source that is a mount point (a
// container volume): it cannot be renamed, so its entries are swapped.
func TestRestore_MountPoint(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "data")
	mountTmpfs(t, src, "64m")
	makeTree(t, src)
	want := model(t, src)
	cfg := testConfig(t, CompressionZstd, src)
	info, err := Create(ctx, cfg, testLogger(t))
	must(t, err)

	must(t, os.WriteFile(filepath.Join(src, "text.txt"), []byte("changed"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "new-file"), []byte("new"), 0o644))
	must(t, Restore(ctx, cfg, info.Path, RestoreOptions{}, testLogger(t)))
	got := model(t, src)
	var kept string
	for rel := range got {
		if strings.HasPrefix(rel, preRestorePrefix) {
			if !strings.Contains(rel, "/") {
				kept = rel
			}
			delete(got, rel)
		}
	}
	sameTree(t, want, got, false)
	if b, err := os.ReadFile(filepath.Join(src, kept, "new-file")); err != nil || string(b) != "new" {
		t.Fatalf("previous contents not kept inside the mount point (%q): %v", kept, err)
	}

	t.Run("SnapshotSkipsKeptCopy", func(t *testing.T) {
		cfg2 := cfg
		cfg2.Dir = filepath.Join(t.TempDir(), "b2")
		info2, err := Create(ctx, cfg2, testLogger(t))
		must(t, err)
		f, err := os.Open(info2.Path)
		must(t, err)
		defer f.Close()
		_, err = readArchive(ctx, f, CompressionZstd, func(h *tar.Header, name string, _ *tar.Reader) error {
			if strings.Contains(name, preRestorePrefix) {
				t.Errorf("kept copy entry %s was snapshotted", name)
			}
			return nil
		})
		must(t, err)
	})

	t.Run("DiscardCurrent", func(t *testing.T) {
		must(t, os.RemoveAll(filepath.Join(src, kept)))
		must(t, os.WriteFile(filepath.Join(src, "new-file"), []byte("new"), 0o644))
		must(t, Restore(ctx, cfg, info.Path, RestoreOptions{DiscardCurrent: true}, testLogger(t)))
		sameTree(t, want, model(t, src), false)
	})
}
