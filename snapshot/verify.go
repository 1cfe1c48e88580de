package snapshot

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"

	"snapvisor/internal/progress"
	"snapvisor/seal"
)

// ErrChecksum is wrapped by errors reporting that an archive does not match its .sha256.
var ErrChecksum = errors.New("checksum mismatch")

// ErrCorrupt is wrapped by errors reporting an archive that cannot be read to its end.
var ErrCorrupt = errors.New("corrupt, truncated or foreign archive")

const (
	readBufSize    = 1 << 20
	gunzipBlock    = 1 << 20
	gunzipBlocks   = 4
	maxJSONEntry   = 1 << 20
	zstdMaxWindow  = 128 << 20
	zeroChunkBytes = 64 << 10
)

// Magic numbers at the start of compressed files.
const (
	gzipMagic = "\x1f\x8b"
	zstdMagic = "\x28\xb5\x2f\xfd"
)

// decompress returns the tar stream inside br, checking the magic number
// against the compression the name announces.
func decompress(br *bufio.Reader, compression string) (io.Reader, func(), error) {
	head, _ := br.Peek(512)
	if alg := seal.Sniff(head); alg != "" && !strings.HasPrefix(string(head), gzipMagic) && !strings.HasPrefix(string(head), zstdMagic) &&
		(len(head) < 512 || string(head[257:262]) != "ustar") {
		return nil, nil, fmt.Errorf("%w: the file starts like %s encryption but its name has no %s suffix: rename it", ErrCorrupt, alg, seal.Suffix(alg))
	}
	switch compression {
	case CompressionGzip:
		if !strings.HasPrefix(string(head), gzipMagic) {
			return nil, nil, fmt.Errorf("%w: not a gzip file", ErrCorrupt)
		}
		z, err := pgzip.NewReaderN(br, gunzipBlock, gunzipBlocks)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: gzip: %v", ErrCorrupt, err)
		}
		return z, func() { z.Close() }, nil
	case CompressionZstd:
		if !strings.HasPrefix(string(head), zstdMagic) {
			return nil, nil, fmt.Errorf("%w: not a zstd file", ErrCorrupt)
		}
		z, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderConcurrency(2))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		return z, z.Close, nil
	}
	if len(head) < 512 || (string(head[257:262]) != "ustar") {
		for _, c := range []struct{ compression, magic string }{{CompressionGzip, gzipMagic}, {CompressionZstd, zstdMagic}} {
			if strings.HasPrefix(string(head), c.magic) {
				return nil, nil, fmt.Errorf("%w: the file is %s but its name has no %s extension: rename it", ErrCorrupt, compressionWord(c.compression), extension(c.compression, seal.None))
			}
		}
		return nil, nil, fmt.Errorf("%w: not a tar file", ErrCorrupt)
	}
	return br, func() {}, nil
}

// scanned is what a pass over an archive's entries learned.
type scanned struct {
	manifest *Manifest
	summary  *Summary
	counted  Summary
	tops     map[string]bool // top-level directories seen
}

// entryName normalises a tar entry name: "./" prefixes and trailing slashes removed.
func entryName(n string) string {
	for strings.HasPrefix(n, "./") {
		n = n[2:]
	}
	return strings.TrimRight(n, "/")
}

// scanTar reads every entry of the tar stream r, decoding the manifest and
// summary and passing other entries to fn (nil: content is skipped). It checks
// the summary's counts against the entries read.
func scanTar(ctx context.Context, r io.Reader, fn func(hdr *tar.Header, name string, tr *tar.Reader) error) (scanned, error) {
	s := scanned{tops: map[string]bool{}}
	tr := tar.NewReader(r)
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return s, fmt.Errorf("%w: reading entry %d: %v", ErrCorrupt, i+1, err)
		}
		name := entryName(hdr.Name)
		if s.summary != nil {
			return s, fmt.Errorf("%w: entry %q after the summary", ErrCorrupt, hdr.Name)
		}
		switch {
		case name == ManifestName && i == 0 && hdr.Typeflag == tar.TypeReg:
			m := &Manifest{}
			if err := decodeJSON(tr, m); err != nil {
				return s, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
			}
			s.manifest = m
			continue
		case name == summaryName && hdr.Typeflag == tar.TypeReg:
			sm := &Summary{}
			if err := decodeJSON(tr, sm); err != nil {
				return s, fmt.Errorf("%w: summary: %v", ErrCorrupt, err)
			}
			s.summary = sm
			continue
		case hdr.Typeflag == tar.TypeXGlobalHeader:
			continue
		}
		top, _, _ := strings.Cut(name, "/")
		s.tops[top] = true
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeGNUSparse:
			s.counted.Files++
			s.counted.Bytes += hdr.Size
		case tar.TypeLink:
			s.counted.Hardlinks++
		case tar.TypeDir:
			s.counted.Dirs++
		case tar.TypeSymlink:
			s.counted.Symlinks++
		}
		if fn != nil {
			if err := fn(hdr, name, tr); err != nil {
				return s, err
			}
		}
	}
	if s.manifest != nil && s.summary == nil {
		return s, fmt.Errorf("%w: the summary entry is missing (archive incomplete)", ErrCorrupt)
	}
	if sm := s.summary; sm != nil {
		c := s.counted
		if sm.Files != c.Files || sm.Hardlinks != c.Hardlinks || sm.Dirs != c.Dirs || sm.Symlinks != c.Symlinks || sm.Bytes != c.Bytes {
			return s, fmt.Errorf("%w: summary says %d files, %d hardlinks, %d dirs, %d symlinks, %d bytes; archive holds %d, %d, %d, %d, %d",
				ErrCorrupt, sm.Files, sm.Hardlinks, sm.Dirs, sm.Symlinks, sm.Bytes, c.Files, c.Hardlinks, c.Dirs, c.Symlinks, c.Bytes)
		}
	}
	return s, nil
}

func decodeJSON(r io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, maxJSONEntry))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// VerifyWith checks the snapshot at path: its content matches its .sha256
// file, and the archive decrypts with enc's credentials (the algorithm comes
// from the file name; the zero Encryption for a plain snapshot),
// decompresses and reads to its end, with the summary's counts matching when
// it has one. The authentication of aes256-gcm, age and gpg is checked to the
// last byte. Errors name the file and the fault and wrap ErrChecksum or
// ErrCorrupt; missing or wrong credentials give an error wrapping seal.ErrKey.
func VerifyWith(ctx context.Context, path string, enc seal.Config) error {
	want, err := ReadChecksum(path)
	if err != nil {
		return fmt.Errorf("verify %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	total := int64(-1)
	if fi, err := f.Stat(); err == nil {
		total = fi.Size()
	}
	r := progress.From(ctx).Reader("verify "+filepath.Base(path), f, total)
	if _, err := readVerified(ctx, f, r, want, formatOf(path, enc), nil); err != nil {
		return fmt.Errorf("verify %s: %w", path, err)
	}
	return nil
}

// readVerified reads the archive in f (through r, which reads f from its
// start) to its end, passing entries to fn, while another goroutine hashes
// the file; a checksum mismatch stops the read and takes precedence over
// the archive errors it probably caused.
func readVerified(ctx context.Context, f *os.File, r io.Reader, want string, af archiveFormat, fn func(*tar.Header, string, *tar.Reader) error) (scanned, error) {
	readCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	sumc := make(chan error, 1)
	go func() {
		h := sha256.New()
		_, err := io.CopyBuffer(h, io.NewSectionReader(f, 0, math.MaxInt64), make([]byte, readBufSize))
		if err != nil {
			err = fmt.Errorf("read: %w", err)
		} else if got := hex.EncodeToString(h.Sum(nil)); got != want {
			err = fmt.Errorf("%w (file corrupted or modified: sha256 is %s, .sha256 says %s)", ErrChecksum, got, want)
		}
		if err != nil {
			cancel() // no point extracting a damaged archive
		}
		sumc <- err
	}()
	s, archErr := readArchiveAs(readCtx, r, af, fn)
	if sumErr := <-sumc; sumErr != nil {
		return s, sumErr
	}
	if err := ctx.Err(); err != nil {
		return s, err
	}
	var ee *entryError
	if archErr != nil && !errors.As(archErr, &ee) && !errors.Is(archErr, seal.ErrKey) {
		return s, fmt.Errorf("checksum matches but the archive is unreadable: %w", archErr)
	}
	return s, archErr
}

// archiveFormat is how a snapshot file is stored: a compressed tar stream,
// optionally encrypted, and the credentials to decrypt it.
type archiveFormat struct {
	compression string
	encryption  string // a seal algorithm (seal.None, seal.AESGCM, ...)
	keys        seal.Config
}

// formatOf returns the format the name of the file at p announces (any
// name: the extension grammar of snapshot names), with enc's credentials.
func formatOf(p string, enc seal.Config) archiveFormat {
	_, compression, encryption, _ := splitExtension(filepath.Base(p))
	return archiveFormat{compression: compression, encryption: encryption, keys: enc}
}

// readArchive decompresses r and scans its tar stream to the end, then
// drains the decompressor so that trailers (gzip CRC, zstd checksum) are checked.
func readArchive(ctx context.Context, r io.Reader, compression string, fn func(*tar.Header, string, *tar.Reader) error) (scanned, error) {
	return readArchiveAs(ctx, r, archiveFormat{compression: compression, encryption: seal.None}, fn)
}

// readArchiveAs is readArchive for any format: an encrypted stream is
// decrypted before it is decompressed, and read to its very end afterwards
// so that the final authentication (last chunk, MDC) is checked.
func readArchiveAs(ctx context.Context, r io.Reader, af archiveFormat, fn func(*tar.Header, string, *tar.Reader) error) (scanned, error) {
	br := bufio.NewReaderSize(r, readBufSize)
	compression := af.compression
	encrypted := af.encryption != "" && af.encryption != seal.None
	if encrypted {
		plain, err := seal.NewReader(br, af.encryption, af.keys)
		if err != nil {
			return scanned{}, asCorrupt(err)
		}
		br = bufio.NewReaderSize(corruptReader{plain}, readBufSize)
		if err := peekPlain(br, af.encryption, compression); err != nil {
			return scanned{}, err
		}
	}
	dec, closeDec, err := decompress(br, compression)
	if err != nil {
		return scanned{}, err
	}
	defer closeDec()
	s, err := scanTar(ctx, dec, fn)
	if err != nil {
		if errors.Is(err, ErrCorrupt) || ctx.Err() != nil {
			return s, err
		}
		var ee *entryError
		if errors.As(err, &ee) {
			return s, err
		}
		return s, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if _, err := io.Copy(io.Discard, dec); err != nil {
		return s, fmt.Errorf("%w: after the last entry: %v", ErrCorrupt, err)
	}
	if encrypted {
		if _, err := io.Copy(io.Discard, br); err != nil {
			return s, fmt.Errorf("%w: after the last entry: %v", ErrCorrupt, err)
		}
	}
	return s, nil
}

// asCorrupt returns err marked as ErrCorrupt when it reports damage found by
// seal (seal.ErrDamaged), with its text unchanged; other errors as they are.
func asCorrupt(err error) error {
	if err != nil && errors.Is(err, seal.ErrDamaged) && !errors.Is(err, ErrCorrupt) {
		return corruptError{err}
	}
	return err
}

// corruptError is seal's damage error as ErrCorrupt.
type corruptError struct{ error }

func (e corruptError) Unwrap() []error { return []error{ErrCorrupt, e.error} }

// corruptReader marks the damage errors of a decrypting reader as ErrCorrupt.
type corruptReader struct{ r io.Reader }

func (c corruptReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	return n, asCorrupt(err)
}

// peekPlain checks, for algorithms without authentication (aes256-cbc), that
// the decrypted stream starts like the compression the name announces; a
// mismatch means a wrong passphrase far more often than damage.
func peekPlain(br *bufio.Reader, algorithm, compression string) error {
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if algorithm != seal.AESCBC {
		return nil
	}
	ok := false
	switch compression {
	case CompressionGzip:
		ok = strings.HasPrefix(string(head), gzipMagic)
	case CompressionZstd:
		ok = strings.HasPrefix(string(head), zstdMagic)
	default:
		ok = len(head) >= 512 && string(head[257:262]) == "ustar"
	}
	if !ok {
		return fmt.Errorf("%w: aes256-cbc: the decrypted data is not %s: wrong passphrase (SNAPVISOR_ENCRYPTION_KEY) or iteration count (SNAPVISOR_PBKDF2_ITER)", seal.ErrKey, compressionWord(compression))
	}
	return nil
}

func compressionWord(c string) string {
	switch c {
	case CompressionGzip:
		return "a gzip stream"
	case CompressionZstd:
		return "a zstd stream"
	}
	return "a tar archive"
}

// entryError is a refusal or failure tied to one archive entry.
type entryError struct {
	entry string
	err   error
}

func (e *entryError) Error() string { return fmt.Sprintf("entry %q: %v", e.entry, e.err) }
func (e *entryError) Unwrap() error { return e.err }
