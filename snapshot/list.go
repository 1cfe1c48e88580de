package snapshot

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"snapvisor/internal/fsx"
	"snapvisor/seal"
)

// TimeLayout is the UTC time stamp in snapshot file names.
const TimeLayout = "20060102T150405Z"

// Info describes one snapshot file.
type Info struct {
	Name        string    `json:"name"`        // file base name, e.g. snapshot-20250101T000000Z.tar.gz
	Path        string    `json:"path"`        // full path of the archive
	Time        time.Time `json:"time"`        // creation time (UTC, from the name)
	Size        int64     `json:"size"`        // archive size in bytes
	Compression string    `json:"compression"` // gzip, zstd or none
	Encryption  string    `json:"encryption"`  // none, aes256-gcm, age, gpg or aes256-cbc (from the name)
	SHA256      string    `json:"sha256"`      // hex checksum from the .sha256 file

	// Set by Create only (zero from List).
	Files   int64 `json:"files,omitempty"`   // regular files and hardlinks stored
	Bytes   int64 `json:"bytes,omitempty"`   // content bytes stored (before compression)
	Changed int64 `json:"changed,omitempty"` // files that grew or shrank while read
	Skipped int64 `json:"skipped,omitempty"` // FIFOs, sockets and devices left out
}

// snapshotRE matches snapshot archive names: prefix, time stamp, extension, encryption suffix.
var snapshotRE = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9._-]*)-(\d{8}T\d{6}Z)(\.tar(?:\.gz|\.zst)?)(\.aes256gcm|\.age|\.gpg|\.aes256cbc)?$`)

// tempRE matches the temporary files Create leaves behind when it crashes.
var tempRE = regexp.MustCompile(`^\.[A-Za-z0-9][A-Za-z0-9._-]*-\d{8}T\d{6}Z\.tar(?:\.gz|\.zst)?(?:\.aes256gcm|\.age|\.gpg|\.aes256cbc)?(?:\.sha256)?\.tmp-.*$`)

// ParseName splits a snapshot file name
// "<name>-<UTC YYYYMMDDTHHMMSSZ>.tar[.gz|.zst][.aes256gcm|.age|.gpg|.aes256cbc]"
// into its name, time and compression (gzip, zstd or none); ok is false for
// any other base name. Every place that recognises snapshots uses it;
// EncryptionOf gives the encryption of the same names.
func ParseName(base string) (name string, t time.Time, compression string, ok bool) {
	m := snapshotRE.FindStringSubmatch(base)
	if m == nil {
		return "", time.Time{}, "", false
	}
	t, err := time.Parse(TimeLayout, m[2])
	if err != nil {
		return "", time.Time{}, "", false
	}
	switch m[3] {
	case ".tar.gz":
		compression = CompressionGzip
	case ".tar.zst":
		compression = CompressionZstd
	default:
		compression = CompressionNone
	}
	return m[1], t.UTC(), compression, true
}

// EncryptionOf returns the encryption a snapshot file name announces by its
// last suffix: aes256-gcm (.aes256gcm), age (.age), gpg (.gpg), aes256-cbc
// (.aes256cbc), or none.
func EncryptionOf(base string) string { return seal.FromSuffix(base) }

// maxChecksumFile bounds what is read of a checksum file: one sha256sum line.
const maxChecksumFile = 4 << 10

// ReadChecksum reads "<archive>.sha256" and returns the hex digest; the file
// must be one sha256sum line naming the archive's base name (ParseChecksum).
// It is read with readSmallFile: a FIFO, a symlink (to /dev/zero, say), a
// directory or a file larger than 4 KiB in its place is an error, never a
// hang or a huge read. Every reader of a local checksum file uses it.
func ReadChecksum(archive string) (string, error) {
	sumPath := archive + ".sha256"
	b, err := readSmallFile(sumPath, maxChecksumFile)
	if err != nil {
		return "", fmt.Errorf("checksum file: %w", err)
	}
	sum, err := ParseChecksum(b, filepath.Base(archive))
	if err != nil {
		return "", fmt.Errorf("checksum file %s: %w", sumPath, err)
	}
	return sum, nil
}

// ParseChecksum parses the content of a checksum file: exactly one complete
// sha256sum line ("<64 hex digits>  <base>" or "... *<base>") naming base.
// It returns the digest in lower case.
func ParseChecksum(b []byte, base string) (string, error) {
	line, rest, found := bytes.Cut(b, []byte("\n"))
	if !found || len(rest) != 0 {
		return "", errors.New("not a single complete sha256sum line")
	}
	sum, name, found := strings.Cut(string(line), "  ")
	if !found {
		sum, name, found = strings.Cut(string(line), " *")
	}
	if !found || len(sum) != 64 {
		return "", errors.New("not in sha256sum format")
	}
	if _, err := hex.DecodeString(sum); err != nil {
		return "", fmt.Errorf("bad digest: %w", err)
	}
	if name != base {
		return "", fmt.Errorf("names %q, not %q", name, base)
	}
	return strings.ToLower(sum), nil
}

// readSmallFile reads the regular file p, at most limit bytes, without
// following a symlink and without blocking on a FIFO (O_NOFOLLOW,
// O_NONBLOCK): side files (checksums, restore journals) sit in directories
// that others may write to, and must neither hang a reader nor fill its
// memory. Anything but a regular file of at most limit bytes is an error.
func readSmallFile(p string, limit int64) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s is a symlink: not followed", p)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", p, fi.Mode().Type())
	}
	b, err := fsx.ReadAtMost(f, limit)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return b, nil
}

// List returns the complete snapshots in dir named <name>-<time>.tar[.gz|.zst][.<encryption>]
// (any name when name is ""), newest first. A snapshot is complete when its
// .sha256 file is one complete sha256sum line naming it; temporary files and
// archives without a valid checksum file are not listed. A missing dir lists nothing.
func List(dir, name string) ([]Info, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots in %s: %w", dir, err)
	}
	var out []Info
	for _, e := range entries {
		n, t, comp, ok := ParseName(e.Name())
		if !ok || (name != "" && n != name) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		sum, err := ReadChecksum(p)
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, Info{Name: e.Name(), Path: p, Time: t, Size: fi.Size(), Compression: comp, Encryption: EncryptionOf(e.Name()), SHA256: sum})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.After(out[j].Time)
		}
		return out[i].Name > out[j].Name
	})
	return out, nil
}

// Archives returns the paths of the files in dir named like snapshots
// <name>-<time>.tar[.gz|.zst][.<encryption>] (any name when name is ""), newest first,
// whether or not their .sha256 file is valid: unlike List it leaves none out,
// so that verifying them all reports a missing or damaged checksum file.
// A missing dir has none.
func Archives(dir, name string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots in %s: %w", dir, err)
	}
	type archive struct {
		name string
		t    time.Time
	}
	var found []archive
	for _, e := range entries {
		n, t, _, ok := ParseName(e.Name())
		if ok && (name == "" || n == name) && e.Type().IsRegular() {
			found = append(found, archive{e.Name(), t})
		}
	}
	sort.SliceStable(found, func(i, j int) bool {
		if !found[i].t.Equal(found[j].t) {
			return found[i].t.After(found[j].t)
		}
		return found[i].name > found[j].name
	})
	out := make([]string, len(found))
	for i, a := range found {
		out[i] = filepath.Join(dir, a.name)
	}
	return out, nil
}
