package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"snapvisor/internal/fsx"
)

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

// maxChecksumFile bounds what is read of a checksum file: one sha256sum line.
const maxChecksumFile = 4 << 10

// ReadChecksum reads "<archive>.sha256" and returns the hex digest; the file
// must be one sha256sum line naming the archive's base name (ParseSum).
// It is read with readSmallFile: a FIFO, a symlink (to /dev/zero, say), a
// directory or a file larger than 4 KiB in its place is an error, never a
// hang or a huge read. Every reader of a local checksum file uses it.
func ReadChecksum(archive string) (string, error) {
	sumPath := archive + SumSuffix
	b, err := readSmallFile(sumPath, maxChecksumFile)
	if err != nil {
		return "", fmt.Errorf("checksum file: %w", err)
	}
	sum, err := ParseSum(b, filepath.Base(archive))
	if err != nil {
		return "", fmt.Errorf("checksum file %s: %w", sumPath, err)
	}
	return sum, nil
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
		n, ok := ParseFileName(e.Name())
		if !ok || (name != "" && n.Prefix != name) || !e.Type().IsRegular() {
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
		out = append(out, Info{Name: e.Name(), Path: p, Time: n.Time, Size: fi.Size(), Compression: n.Compression, Encryption: n.Encryption, SHA256: sum})
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
		n, ok := ParseFileName(e.Name())
		if ok && (name == "" || n.Prefix == name) && e.Type().IsRegular() {
			found = append(found, archive{e.Name(), n.Time})
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
