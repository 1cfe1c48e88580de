package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"snapvisor/config"
	"snapvisor/internal/fuzzseed"
	"snapvisor/internal/sealtest"
	"snapvisor/seal"
)

// The generator of this package's seed corpora (seal's encryption targets
// have theirs in seal). TestFuzzSeeds checks them
// (every seed file present, deterministic ones byte for byte) in every test
// run; FUZZ_SEEDS=update go test -run TestFuzzSeeds ./snapshot/ rewrites
// them. The hostile archives are those of the "What held" table of the
// reliability findings, built entry by entry (archive/tar refuses to write
// some of them, so rawHeader writes those blocks by hand).

// rawHeader is a tar header written byte by byte.
type rawHeader struct {
	name, link string
	typ        byte
	size       int64 // bytes stored; base-256 when it does not fit 11 octal digits
	mode       int64
	gnu        bool       // GNU magic ("ustar  \x00") instead of POSIX ("ustar\x0000")
	sparse     [][2]int64 // old GNU sparse map: (offset, length) of the data regions
	realSize   int64      // old GNU sparse: the size of the file
}

// field writes v as a NUL-terminated octal number, or base-256 when it does not fit.
func field(b []byte, v int64) {
	s := fmt.Sprintf("%0*o", len(b)-1, v)
	if v >= 0 && len(s) <= len(b)-1 {
		copy(b, s)
		return
	}
	clear(b)
	for i := len(b) - 1; i > 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	b[0] |= 0x80
}

func (h rawHeader) block() []byte {
	b := make([]byte, 512)
	copy(b[0:100], h.name)
	field(b[100:108], h.mode)
	field(b[108:116], 0)
	field(b[116:124], 0)
	field(b[124:136], h.size)
	field(b[136:148], 0)
	b[156] = h.typ
	copy(b[157:257], h.link)
	if h.gnu {
		copy(b[257:265], "ustar  \x00")
	} else {
		copy(b[257:265], "ustar\x0000")
	}
	for i, s := range h.sparse {
		field(b[386+24*i:398+24*i], s[0])
		field(b[398+24*i:410+24*i], s[1])
	}
	if h.sparse != nil {
		field(b[483:495], h.realSize)
	}
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// rawEntry is a header and its content, padded to whole blocks.
func rawEntry(h rawHeader, body []byte) []byte {
	out := append(h.block(), body...)
	return append(out, make([]byte, (512-len(body)%512)%512)...)
}

// paxRecords encodes PAX records "<len> key=value\n" (key, value, key, value...).
func paxRecords(kv ...string) []byte {
	var b []byte
	for i := 0; i+1 < len(kv); i += 2 {
		rec := " " + kv[i] + "=" + kv[i+1] + "\n"
		n := len(rec)
		for len(fmt.Sprint(n+len(fmt.Sprint(n)))) != len(fmt.Sprint(n)) {
			n++
		}
		n += len(fmt.Sprint(n))
		b = append(b, fmt.Sprintf("%d%s", n, rec)...)
	}
	return b
}

// endOfArchive is the two zero blocks that end a tar stream.
var endOfArchive = make([]byte, 1024)

// tarOf writes entries with archive/tar (sizes from the bodies).
func tarOf(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeCont {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 && !strings.Contains(h.Name, "closed") {
			h.Mode = 0o644
		}
		must(t, tw.WriteHeader(&h))
		_, err := io.WriteString(tw, e.body)
		must(t, err)
	}
	must(t, tw.Close())
	return buf.Bytes()
}

func dirEntry(name string) tarEntry {
	return tarEntry{tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}, ""}
}
func regEntry(name, body string) tarEntry {
	return tarEntry{tar.Header{Typeflag: tar.TypeReg, Name: name}, body}
}
func symlinkEntry(name, to string) tarEntry {
	return tarEntry{tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: to}, ""}
}
func hardlinkEntry(name, to string) tarEntry {
	return tarEntry{tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: to}, ""}
}

// compress returns plain compressed as a snapshot of that compression is.
func compress(t *testing.T, compression string, plain []byte) []byte {
	t.Helper()
	switch compression {
	case CompressionGzip:
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, err := zw.Write(plain)
		must(t, err)
		must(t, zw.Close())
		return buf.Bytes()
	case CompressionZstd:
		zw, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		must(t, err)
		defer zw.Close()
		return zw.EncodeAll(plain, nil)
	}
	return plain
}

// namedTar is one hostile archive: a name and its tar stream.
type namedTar struct {
	name  string
	plain []byte
}

// hostileArchives are the hostile archives of the reliability findings
// ("What held": escapes, links, devices, damage) and a few more of the
// same families. The target is the source "data"; "../../outside" from an
// entry of data/ (or of its staging directory) is the directory beside the
// target's parent that FuzzRestore watches.
func hostileArchives(t *testing.T) []namedTar {
	long := "data/" + strings.Repeat("a/", 60) + strings.Repeat("../", 62) + "outside/evil"
	valid := tarOf(t, dirEntry("data/"), regEntry("data/f", strings.Repeat("content ", 100)), dirEntry("data/sub/"), regEntry("data/sub/g", "g"))
	dataDir := tarOf(t, dirEntry("data/"))[:512] // the header alone, to put raw entries after
	manifest, summary := `{"format":1,"sources":["/srv/data"]}`, `{"files":1,"hardlinks":0,"dirs":1,"symlinks":0,"bytes":5}`
	return []namedTar{
		{"dotdot", tarOf(t, dirEntry("data/"), regEntry("data/../evil", "pwned"))},
		{"dotdot-deep", tarOf(t, dirEntry("data/"), regEntry("data/sub/../../evil", "pwned"), regEntry("data/sub/../../../outside/evil", "pwned"))},
		{"absolute", tarOf(t, dirEntry("data/"), regEntry("/snapvisor-fuzz-evil", "pwned"), regEntry("/data/evil", "pwned"))},
		{"pax-path-dotdot", concat(
			rawEntry(rawHeader{name: "PaxHeaders/ok", typ: tar.TypeXHeader, size: int64(len(paxRecords("path", "data/../../outside/evil")))}, paxRecords("path", "data/../../outside/evil")),
			rawEntry(rawHeader{name: "data/ok", typ: tar.TypeReg, size: 5, mode: 0o644}, []byte("pwned")), endOfArchive)},
		{"pax-linkpath-dotdot", concat(
			dataDir,
			rawEntry(rawHeader{name: "PaxHeaders/l", typ: tar.TypeXHeader, size: int64(len(paxRecords("linkpath", "../../outside")))}, paxRecords("linkpath", "../../outside")),
			rawEntry(rawHeader{name: "data/l", typ: tar.TypeSymlink, link: "x", mode: 0o777}, nil),
			rawEntry(rawHeader{name: "data/l/evil", typ: tar.TypeReg, size: 5, mode: 0o644}, []byte("pwned")), endOfArchive)},
		{"pax-size-huge", concat(
			rawEntry(rawHeader{name: "PaxHeaders/f", typ: tar.TypeXHeader, size: int64(len(paxRecords("size", "1099511627776")))}, paxRecords("size", "1099511627776")),
			rawEntry(rawHeader{name: "data/f", typ: tar.TypeReg, size: 10, mode: 0o644}, []byte("0123456789")), endOfArchive)},
		{"gnu-longname-dotdot", concat(
			rawEntry(rawHeader{name: "././@LongLink", typ: tar.TypeGNULongName, size: int64(len(long) + 1), gnu: true}, append([]byte(long), 0)),
			rawEntry(rawHeader{name: "data/short", typ: tar.TypeReg, size: 5, mode: 0o644, gnu: true}, []byte("pwned")), endOfArchive)},
		{"symlink-absolute-then-write", tarOf(t, dirEntry("data/"), symlinkEntry("data/escape", "/snapvisor-fuzz-outside"), regEntry("data/escape/evil", "pwned"))},
		{"symlink-relative-then-write", tarOf(t, dirEntry("data/"), symlinkEntry("data/escape", "../../outside"), regEntry("data/escape/evil", "pwned"))},
		{"symlink-dot-then-write", tarOf(t, dirEntry("data/"), symlinkEntry("data/a", "."), regEntry("data/a/evil", "pwned"))},
		{"symlink-chain-then-write", tarOf(t, dirEntry("data/"), symlinkEntry("data/b", "../../outside"), symlinkEntry("data/a", "b"), regEntry("data/a/evil", "pwned"))},
		{"symlink-then-file-same-name", tarOf(t, dirEntry("data/"), symlinkEntry("data/x", "../../outside/sentinel"), regEntry("data/x", "pwned"))},
		{"symlink-then-dir-same-name", tarOf(t, dirEntry("data/"), symlinkEntry("data/x", "../../outside"), dirEntry("data/x/"), regEntry("data/x/evil", "pwned"))},
		{"hardlink-absolute", tarOf(t, dirEntry("data/"), hardlinkEntry("data/passwd", "/etc/passwd"))},
		{"hardlink-dotdot", tarOf(t, dirEntry("data/"), hardlinkEntry("data/h", "../../outside/sentinel"), hardlinkEntry("data/h2", "data/../../outside/sentinel"))},
		{"hardlink-through-symlink", tarOf(t, dirEntry("data/"), symlinkEntry("data/l", "../../outside"), hardlinkEntry("data/h", "data/l/sentinel"))},
		{"hardlink-to-symlink", tarOf(t, dirEntry("data/"), symlinkEntry("data/s", "../../outside/sentinel"), hardlinkEntry("data/h", "data/s"), regEntry("data/h", "pwned"))},
		{"hardlink-to-itself", tarOf(t, dirEntry("data/"), hardlinkEntry("data/h", "data/h"))},
		{"hardlink-to-directory", tarOf(t, dirEntry("data/"), dirEntry("data/d/"), hardlinkEntry("data/h", "data/d"))},
		{"devices", tarOf(t, dirEntry("data/"), tarEntry{tar.Header{Typeflag: tar.TypeBlock, Name: "data/sda", Devmajor: 8}, ""},
			tarEntry{tar.Header{Typeflag: tar.TypeChar, Name: "data/mem", Devmajor: 1, Devminor: 1}, ""})},
		{"contiguous", tarOf(t, dirEntry("data/"), tarEntry{tar.Header{Typeflag: tar.TypeCont, Name: "data/c"}, "contiguous"})},
		{"fifo", tarOf(t, dirEntry("data/"), tarEntry{tar.Header{Typeflag: tar.TypeFifo, Name: "data/fifo"}, ""}, regEntry("data/f", "after"))},
		{"dir-then-symlink-over-it", tarOf(t, dirEntry("data/"), dirEntry("data/d/"), symlinkEntry("data/d", "../../outside"), regEntry("data/d/evil", "pwned"))},
		{"file-then-dir", tarOf(t, dirEntry("data/"), regEntry("data/x", "file"), dirEntry("data/x/"), regEntry("data/x/y", "y"))},
		{"symlink-root", tarOf(t, symlinkEntry("data", "../outside"), regEntry("data/evil", "pwned"))},
		{"file-root", tarOf(t, regEntry("data", "a file where the directory belongs"))},
		{"extra-top-level", tarOf(t, dirEntry("data/"), regEntry("etc/evil", "pwned"))},
		{"dot-root", tarOf(t, dirEntry("./"), dirEntry("./data/"), regEntry("./data/f", "f"))},
		{"no-source-dir", tarOf(t, dirEntry("other/"), regEntry("other/f", "f"))},
		{"manifest-mid-archive", tarOf(t, dirEntry("data/"), regEntry(ManifestName, manifest), regEntry("data/f", "f"))},
		{"manifest-and-summary", tarOf(t, regEntry(ManifestName, manifest), dirEntry("data/"), regEntry("data/f", "hello"), regEntry(summaryName, summary))},
		{"summary-mismatch", tarOf(t, regEntry(ManifestName, manifest), dirEntry("data/"), regEntry("data/f", "hello"), regEntry("data/g", "g"), regEntry(summaryName, summary))},
		{"entry-after-summary", tarOf(t, regEntry(ManifestName, manifest), dirEntry("data/"), regEntry("data/f", "hello"), regEntry(summaryName, summary), regEntry("data/late", "late"))},
		{"summary-missing", tarOf(t, regEntry(ManifestName, manifest), dirEntry("data/"), regEntry("data/f", "hello"))},
		{"summary-not-json", tarOf(t, dirEntry("data/"), regEntry(summaryName, "{"))},
		{"dir-mode-0000", tarOf(t, dirEntry("data/"), tarEntry{tar.Header{Typeflag: tar.TypeDir, Name: "data/closed/"}, ""}, regEntry("data/closed/f", "inside"))},
		{"setuid-and-times", tarOf(t, dirEntry("data/"), tarEntry{tar.Header{Typeflag: tar.TypeReg, Name: "data/suid", Mode: 0o4755, Uid: 1234, Gid: 5678}, "x"})},
		{"regular-with-slash", concat(dataDir,
			rawEntry(rawHeader{name: "data/f/", typ: tar.TypeReg, size: 5, mode: 0o644}, []byte("slash")), endOfArchive)},
		{"huge-declared-size", concat(dataDir,
			rawEntry(rawHeader{name: "data/huge", typ: tar.TypeReg, size: 1 << 40, mode: 0o644}, bytes.Repeat([]byte("x"), 100)))},
		{"negative-size", concat(rawEntry(rawHeader{name: "data/neg", typ: tar.TypeReg, size: -5, mode: 0o644}, nil), endOfArchive)},
		{"truncated", valid[:len(valid)/2+100]},
		{"bad-checksum-block", func() []byte { b := bytes.Clone(valid); b[148] = '7'; return b }()},
		{"sparse-small", concat(dataDir,
			rawEntry(rawHeader{name: "data/sparse", typ: tar.TypeGNUSparse, size: 10, mode: 0o644, gnu: true, sparse: [][2]int64{{1 << 20, 10}}, realSize: 4 << 20}, []byte("0123456789")),
			endOfArchive)},
		{"sparse-huge", concat(dataDir,
			rawEntry(rawHeader{name: "data/sparse", typ: tar.TypeGNUSparse, size: 10, mode: 0o644, gnu: true, sparse: [][2]int64{{1 << 40, 10}}, realSize: 1<<40 + 10}, []byte("0123456789")),
			endOfArchive)},
		{"valid-small", valid},
		{"empty", nil},
		{"zero-blocks-only", endOfArchive},
	}
}

// concat joins byte slices.
func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// bombTar is a tar stream of one 2 MiB file of one repeated byte: a few KiB
// compressed (small, so that the seed stays fast; the fuzzer grows it).
func bombTar(t *testing.T) []byte {
	return tarOf(t, dirEntry("data/"), regEntry("data/bomb", strings.Repeat("A", 2<<20)))
}

// tinyTree writes a source directory named data with an entry of each kind.
func tinyTree(t *testing.T, parent string) string {
	src := filepath.Join(parent, "data")
	writeFile(t, filepath.Join(src, "a.txt"), []byte("hello\n"), 0o644)
	writeFile(t, filepath.Join(src, "sub", "b.txt"), []byte("b\n"), 0o600)
	must(t, os.MkdirAll(filepath.Join(src, "empty"), 0o750))
	must(t, os.Symlink("a.txt", filepath.Join(src, "link")))
	must(t, os.Link(filepath.Join(src, "a.txt"), filepath.Join(src, "hard")))
	return src
}

// snapshotOf creates a snapshot of src with the fuzz credentials and returns its bytes.
func snapshotOf(t *testing.T, src, compression, algorithm string) []byte {
	dir := t.TempDir()
	enc := seal.Config{Algorithm: algorithm}
	switch algorithm {
	case seal.AESGCM:
		enc.Keys = config.Secret(sealtest.GCMKeyID + ":" + sealtest.GCMKey)
	case seal.AESCBC:
		enc.Key, enc.PBKDF2Iter = sealtest.CBCPass, 1000
	case seal.Age:
		enc.AgeRecipients = []string{sealtest.AgeRecipient(t)}
	case seal.GPG:
		var pub bytes.Buffer
		must(t, sealtest.GPGEntity(t).Serialize(&pub))
		enc.GPGPublicKeyring = filepath.Join(dir, "pub.gpg")
		must(t, os.WriteFile(enc.GPGPublicKeyring, pub.Bytes(), 0o600))
	}
	cfg := Config{Sources: []string{src}, Dir: filepath.Join(dir, "backups"), Name: "snapshot", Compression: compression, Encryption: enc}
	info, err := Create(context.Background(), cfg, testLogger(t))
	must(t, err)
	b, err := os.ReadFile(info.Path)
	must(t, err)
	return b
}

func TestFuzzSeeds(t *testing.T) {
	src := tinyTree(t, t.TempDir())

	// The archive reader and restore.
	var readSeeds, restoreSeeds []fuzzseed.Seed
	none := kindOf(CompressionNone, seal.None)
	for _, h := range hostileArchives(t) {
		readSeeds = append(readSeeds, fuzzseed.Seed{Name: h.name, Args: []any{uint8(0), h.plain}},
			fuzzseed.Seed{Name: h.name + "-gzip", Args: []any{uint8(1), compress(t, CompressionGzip, h.plain)}})
		restoreSeeds = append(restoreSeeds, fuzzseed.Seed{Name: h.name, Args: []any{none, h.plain, true}})
	}
	bomb := bombTar(t)
	for i, c := range compressions[1:] {
		readSeeds = append(readSeeds, fuzzseed.Seed{Name: "bomb-" + c, Args: []any{uint8(i + 1), compress(t, c, bomb)}})
		restoreSeeds = append(restoreSeeds, fuzzseed.Seed{Name: "bomb-" + c, Args: []any{kindOf(c, seal.None), compress(t, c, bomb), true}})
	}
	readSeeds = append(readSeeds,
		fuzzseed.Seed{Name: "foreign", Args: []any{uint8(1), []byte("%PDF-1.4 this is not a snapshot at all\n")}},
		fuzzseed.Seed{Name: "gzip-named-zstd", Args: []any{uint8(2), compress(t, CompressionGzip, bombTar(t)[:2048])}},
		fuzzseed.Seed{Name: "encrypted-named-plain", Args: []any{uint8(1), []byte("SNAPVISOR-AES256GCM\x01\x04fuzz" + strings.Repeat("s", 64))}},
	)
	for _, c := range compressions {
		for _, a := range algorithms {
			data := snapshotOf(t, src, c, a)
			name := "valid-" + c + "-" + a
			restoreSeeds = append(restoreSeeds, fuzzseed.Seed{Name: name, Args: []any{kindOf(c, a), data, true}, Random: true})
			if a == seal.None {
				readSeeds = append(readSeeds, fuzzseed.Seed{Name: name, Args: []any{uint8(slices.Index(compressions, c)), data}, Random: true})
			}
			if c == CompressionGzip && a == seal.None {
				restoreSeeds = append(restoreSeeds,
					fuzzseed.Seed{Name: name + "-wrong-sha256", Args: []any{kindOf(c, a), data, false}, Random: true},
					fuzzseed.Seed{Name: name + "-truncated", Args: []any{kindOf(c, a), data[:len(data)*2/3], true}, Random: true})
			}
		}
	}
	fuzzseed.Sync(t, "FuzzReadArchive", readSeeds)
	fuzzseed.Sync(t, "FuzzRestore", restoreSeeds)

	// Names and checksum files.
	var names []fuzzseed.Seed
	for _, s := range []string{
		"snapshot-20240101T000000Z.tar", "snapshot-20240101T000000Z.tar.gz", "snapshot-20240101T000000Z.tar.zst",
		"snapshot-20240101T000000Z.tar.gz.aes256gcm", "snapshot-20240101T000000Z.tar.zst.age", "snapshot-20240101T000000Z.tar.gpg",
		"snapshot-20240101T000000Z.tar.gz.aes256cbc", "my.db_2-20991231T235959Z.tar.gz", "a-20240101T000000Z-20240102T000000Z.tar.gz",
		"snapshot-20240230T000000Z.tar.gz", "snapshot-20240101T240000Z.tar.gz", "snapshot-20240101T000060Z.tar.gz",
		"snapshot-20240101T000000Z.tgz", "snapshot-20240101T000000Z.tar.gz.sha256", ".snapshot-20240101T000000Z.tar.gz.tmp-1",
		"snapshot-20240101T000000Z.tar.gz.age.gpg", "-20240101T000000Z.tar", "snapshot-20240101T000000z.tar", "snapshot-٢٠٢٤0101T000000Z.tar",
		"snapshot-00000101T000000Z.tar", "snapshot.tar.gz-20240101T000000Z.tar.zst", "",
	} {
		names = append(names, fuzzseed.Seed{Name: fuzzseed.Name(s), Args: []any{s}})
	}
	fuzzseed.Sync(t, "FuzzParseName", names)
	fuzzseed.Sync(t, "FuzzFileName", []fuzzseed.Seed{
		{Name: "snapshot-epoch", Args: []any{"snapshot", int64(0), uint8(1), uint8(0)}},
		{Name: "dotted-2099-zstd-gcm", Args: []any{"my.db_2", int64(4102444799), uint8(2), uint8(1)}},
		{Name: "year-1", Args: []any{"x", int64(-62135596800), uint8(0), uint8(4)}},
		{Name: "year-9999", Args: []any{"x-1", int64(253402300799), uint8(1), uint8(3)}},
		{Name: "name-like-a-snapshot", Args: []any{"a-20240101T000000Z.tar", int64(1e9), uint8(0), uint8(2)}},
	})

	base := "snapshot-20240101T000000Z.tar.gz"
	digest := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	var sums []fuzzseed.Seed
	for _, s := range []string{
		digest + "  " + base + "\n", strings.ToUpper(digest) + " *" + base + "\n", digest + "  " + base, digest + "  " + base + "\n\n",
		digest + "  other.tar.gz\n", digest[:63] + "g  " + base + "\n", digest[:16] + "  " + base + "\n", digest + "\t" + base + "\n",
		digest + "  ./" + base + "\n", digest + "  " + base + "\r\n", "\n", "",
	} {
		sums = append(sums, fuzzseed.Seed{Name: fuzzseed.Name(s), Args: []any{[]byte(s)}})
	}
	fuzzseed.Sync(t, "FuzzReadChecksum", sums)
}
