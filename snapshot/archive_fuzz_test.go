package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.uber.org/zap"

	"snapvisor/internal/sealtest"
	"snapvisor/seal"
)

// Fuzz targets of the archive reader and of restore. Their seed corpora
// (valid snapshots of every compression and encryption, and the hostile
// archives of the reliability findings) are written by TestFuzzSeeds
// (fuzzseeds_test.go).

// restoreKinds are the file name extensions FuzzRestore picks from: every
// compression with every encryption.
var restoreKinds = func() []string {
	var out []string
	for _, c := range compressions {
		for _, a := range algorithms {
			out = append(out, extension(c, a))
		}
	}
	return out
}()

// kindOf returns the index in restoreKinds of a compression and an algorithm.
func kindOf(compression, algorithm string) uint8 {
	return uint8(slices.Index(restoreKinds, extension(compression, algorithm)))
}

// restoreBound bounds what one FuzzRestore execution may extract (bytes of
// tar stream and declared content), so that a 60 s run stays in memory
// (the targets live on tmpfs) and fast: a decompression bomb or a huge
// sparse file is skipped, as production would be slow on it, not wrong.
const restoreBound = 16 << 20

// plainTar returns the tar stream of an unencrypted archive, or ok false
// when it (or the content its headers declare) exceeds restoreBound.
func plainTar(compression string, data []byte) (plain []byte, ok bool) {
	var r io.Reader = bytes.NewReader(data)
	switch compression {
	case CompressionGzip:
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, true // refused before anything is extracted
		}
		r = z
	case CompressionZstd:
		z, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, true
		}
		defer z.Close()
		r = z
	}
	plain, _ = io.ReadAll(io.LimitReader(r, restoreBound+1))
	if len(plain) > restoreBound {
		return nil, false
	}
	var declared int64
	tr := tar.NewReader(bytes.NewReader(plain))
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		if declared += max(hdr.Size, 0); declared > restoreBound || hdr.Size < 0 {
			return nil, false
		}
	}
	return plain, true
}

// FuzzReadArchive: the archive reader (decompression, tar framing, manifest
// and summary, the summary's counts) never panics on any bytes, and reports
// what it cannot read as ErrCorrupt; every entry name it passes on is
// either refused by the extractor's path check or maps inside its root.
func FuzzReadArchive(f *testing.F) {
	f.Fuzz(func(t *testing.T, comp uint8, data []byte) {
		compression := compressions[int(comp)%len(compressions)]
		if len(data) > 64<<10 || (compression == CompressionZstd && len(data) > 16<<10) {
			return // zstd reaches 1:30000: 16 KiB decode to 500 MiB at most
		}
		roots := map[string]string{"data": "/staging/.data.restore-1", "other": "/staging/.other.restore-1"}
		x := &extractor{roots: roots}
		check := func(name string) {
			root, rest, err := x.resolve(name)
			if err != nil {
				if !errors.Is(err, ErrRefused) {
					t.Fatalf("resolve(%q): %v, not ErrRefused", name, err)
				}
				return
			}
			if !slices.Contains([]string{roots["data"], roots["other"]}, root) || (rest != "" && !filepath.IsLocal(rest)) {
				t.Fatalf("resolve(%q) = %q, %q: outside its root", name, root, rest)
			}
			if p := filepath.Join(root, rest); p != root && !strings.HasPrefix(p, root+"/") {
				t.Fatalf("resolve(%q) maps to %q, outside %q", name, p, root)
			}
		}
		fn := func(hdr *tar.Header, name string, tr *tar.Reader) error {
			check(name)
			if hdr.Typeflag == tar.TypeLink {
				check(entryName(hdr.Linkname))
			}
			return nil
		}
		s, err := readArchive(context.Background(), bytes.NewReader(data), compression, fn)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("readArchive (%s): %v, not ErrCorrupt", compression, err)
		}
		if err == nil && s.summary != nil && s.summary.Files != s.counted.Files {
			t.Fatalf("readArchive accepted a summary of %d files for %d", s.summary.Files, s.counted.Files)
		}
	})
}

// fuzzTempDir is a temporary directory on tmpfs when there is one: restore
// syncs the file system of its target, which on a shared disk costs far
// more than the restore.
func fuzzTempDir(t *testing.T) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "snapvisor-fuzz-"); err == nil {
			t.Cleanup(func() {
				makeRemovable(dir)
				os.RemoveAll(dir)
			})
			return dir
		}
	}
	return t.TempDir()
}

// escapeCandidates lists the paths outside base that the entries of the tar
// stream plain name or lead to (absolute names, symlinks and what is
// written under them, relative to the target or to its staging directory),
// at most limit of them: restore must create none of them. Paths inside
// base are covered by comparing the whole tree.
func escapeCandidates(plain []byte, base, parent string, limit int) []string {
	var out []string
	add := func(p string) {
		p = filepath.Clean(p)
		if len(out) < limit && p != base && !strings.HasPrefix(p, base+"/") && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	links := map[string][]string{} // symlink entry name -> where it may lead
	tr := tar.NewReader(bytes.NewReader(plain))
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		name := entryName(hdr.Name)
		if path.IsAbs(name) {
			add(name)
		}
		for s, dsts := range links {
			if rest, ok := strings.CutPrefix(name, s+"/"); ok {
				for _, d := range dsts {
					add(filepath.Join(d, rest))
				}
			}
		}
		if hdr.Typeflag == tar.TypeSymlink {
			var dsts []string
			for _, dir := range []string{filepath.Join(parent, path.Dir(name)), filepath.Join(parent, ".staging", path.Dir(name))} {
				d := hdr.Linkname
				if !path.IsAbs(d) {
					d = filepath.Join(dir, d)
				}
				dsts = append(dsts, d)
				add(d)
			}
			links[name] = dsts
		}
	}
	return out
}

// restoreNow is the clock of FuzzRestore: its pre-restore copy has a fixed name.
var restoreNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// FuzzRestore restores any archive (any extension, with a matching or a
// wrong .sha256) over a small source directory in a temporary directory and
// checks the promises of restore:
//
//   - it returns (no panic), and an error names the archive; with a wrong
//     .sha256 the error is ErrChecksum;
//   - on error the target, its parent and everything beside them are as
//     before (no staging directory left, nothing swapped);
//   - on success the previous contents are kept intact beside the target;
//   - nothing is ever written outside the target and its parent: the whole
//     temporary directory is compared, and the paths outside it that the
//     archive names or leads to (absolute names, symlinks) must not appear;
//   - no restored file is a hardlink to a file outside the restored tree.
func FuzzRestore(f *testing.F) {
	enc := sealtest.Config()
	log := zap.NewNop()
	f.Fuzz(func(t *testing.T, kind uint8, data []byte, goodSum bool) {
		if len(data) > 1<<20 {
			return
		}
		ext := restoreKinds[int(kind)%len(restoreKinds)]
		base := fuzzTempDir(t)
		parent, outside, dir := filepath.Join(base, "parent"), filepath.Join(base, "outside"), filepath.Join(base, "backups")
		src := filepath.Join(parent, "data")
		archive := filepath.Join(dir, "snapshot-20240101T000000Z"+ext)
		var plain []byte
		if af := formatOf(archive, enc); af.encryption == seal.None {
			var ok bool
			if plain, ok = plainTar(af.compression, data); !ok {
				return
			}
		} else if sealtest.CostlyKDF(data) {
			return
		}
		writeFile(t, filepath.Join(src, "precious.txt"), []byte("do not touch"), 0o644)
		writeFile(t, filepath.Join(src, "sub", "file"), []byte("nested"), 0o600)
		writeFile(t, filepath.Join(outside, "sentinel"), []byte("outside"), 0o644)
		must(t, os.MkdirAll(dir, 0o700))
		must(t, os.WriteFile(archive, data, 0o600))
		writeSum(t, archive)
		if !goodSum {
			sum, err := os.ReadFile(archive + ".sha256")
			must(t, err)
			if sum[0] == '0' { // another hex digit: the checksum of other bytes
				sum[0] = '1'
			} else {
				sum[0] = '0'
			}
			must(t, os.WriteFile(archive+".sha256", sum, 0o600))
		}
		wantSrc, wantOutside := model(t, src), model(t, outside)
		var absent []string
		for _, p := range escapeCandidates(plain, base, parent, 64) {
			if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
				absent = append(absent, p)
			}
		}

		cfg := Config{Sources: []string{src}, Dir: dir, Name: "snapshot", Compression: CompressionGzip, Encryption: enc}
		err := Restore(context.Background(), cfg, archive, RestoreOptions{Now: func() time.Time { return restoreNow }}, log)

		for _, p := range absent {
			if _, lerr := os.Lstat(p); lerr == nil {
				os.RemoveAll(p) // ours: it did not exist before
				t.Fatalf("restore (err %v) created %s, outside the target", err, p)
			}
		}
		if got := entriesOf(t, base); !slices.Equal(got, []string{"backups", "outside", "parent"}) {
			t.Fatalf("restore (err %v) left %v beside the target's parent", err, got)
		}
		sameTree(t, wantOutside, model(t, outside), false)
		pre := "data.pre-restore-" + restoreNow.Format(TimeLayout)
		if err != nil {
			if !strings.Contains(err.Error(), archive) {
				t.Fatalf("restore error %q does not name the archive", err)
			}
			if !goodSum && !errors.Is(err, ErrChecksum) {
				t.Fatalf("restore with a wrong .sha256: %v, not ErrChecksum", err)
			}
			if got := entriesOf(t, parent); !slices.Equal(got, []string{"data"}) {
				t.Fatalf("failed restore (%v) left %v in the target's parent", err, got)
			}
			sameTree(t, wantSrc, model(t, src), false)
			return
		}
		if !goodSum {
			t.Fatal("restore accepted an archive that does not match its .sha256")
		}
		if got := entriesOf(t, parent); !slices.Equal(got, []string{"data", pre}) {
			t.Fatalf("restore left %v in the target's parent, want the target and %s", got, pre)
		}
		sameTree(t, wantSrc, model(t, filepath.Join(parent, pre)), false)
		links := map[uint64]uint64{} // inode -> names in the restored tree
		var nlink = map[uint64]uint64{}
		must(t, filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			links[st.Ino]++
			nlink[st.Ino] = uint64(st.Nlink)
			return nil
		}))
		for ino, n := range links {
			if nlink[ino] != n {
				t.Fatalf("a restored file (inode %d) has %d links, %d of them in the restored tree: it is linked to a file outside", ino, nlink[ino], n)
			}
		}
	})
}

// TestRestore_SparseBomb: an archive of a few KiB can declare a sparse file
// of 1 TiB; archive/tar expands its holes into zeros that restore reads (a
// CPU-bound hour per TiB, never ENOSPC since holes take no space). A
// cancelled restore (TERM during auto-restore) must not wait for the entry
// to end: it stops within a chunk, removes its staging and leaves the
// target untouched. Found by FuzzRestore (which skips such inputs to stay
// fast).
func TestRestore_SparseBomb(t *testing.T) {
	f := newRestoreFixture(t)
	plain := concat(tarOf(t, dirEntry("data/"))[:512],
		rawEntry(rawHeader{name: "data/sparse", typ: tar.TypeGNUSparse, size: 10, mode: 0o644, gnu: true,
			sparse: [][2]int64{{1 << 40, 10}}, realSize: 1<<40 + 10}, []byte("0123456789")),
		endOfArchive)
	archive := filepath.Join(f.cfg.Dir, "snapshot-20240101T000000Z.tar")
	must(t, os.WriteFile(archive, plain, 0o600))
	writeSum(t, archive)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Restore(ctx, f.cfg, archive, RestoreOptions{}, testLogger(t)) }()
	// Cancel once the sparse file is being written.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if m, _ := filepath.Glob(filepath.Join(f.parent, ".data.restore-*", "sparse")); len(m) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("restore did not start writing the sparse file within 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Restore = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Restore did not return within 30 s of its cancellation (it reads the 1 TiB of holes to the end)")
	}
	f.untouched(t)
}
