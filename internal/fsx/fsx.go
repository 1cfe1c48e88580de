// Package fsx holds the small file-system and I/O helpers that several
// packages share, so that each fact has one home: atomic, durable writes
// under the ".<name>.tmp-<random>" temporary names that snapshot listings
// and store listings skip and that cleanup removes; directory fsync;
// renames that never replace; byte counting; a sleep that ends with its ctx.
//
// Written by hand rather than taken from github.com/google/renameio: that
// library names its temporaries differently (listings and cleanup rely on
// ours), does not fsync the directory and cannot refuse to replace.
package fsx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// TempPattern is the os.CreateTemp pattern of the temporary files written
// for a file named base: ".<base>.tmp-*" in the same directory.
func TempPattern(base string) string { return "." + base + ".tmp-*" }

// File is a file being written atomically: it is created under a temporary
// name beside its final path (TempPattern) and gets the final name only on
// Commit. Callers defer Discard right after CreateTemp.
type File struct {
	*os.File
	path      string
	committed bool
}

// CreateTemp creates the temporary file (mode 0600) for path in path's
// directory.
func CreateTemp(path string) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), TempPattern(filepath.Base(path)))
	if err != nil {
		return nil, err
	}
	return &File{File: f, path: path}, nil
}

// Commit fsyncs and closes f and renames it to its final path, replacing
// whatever file is there. It does not fsync the directory: SyncDir does
// that, once after the last rename. On error the temporary is left for
// Discard.
func (f *File) Commit() error { return f.commit(os.Rename) }

// CommitNoReplace is Commit failing (fs.ErrExist) when the final path exists.
func (f *File) CommitNoReplace() error { return f.commit(RenameNoReplace) }

func (f *File) commit(rename func(oldPath, newPath string) error) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rename(f.Name(), f.path)
	}
	if err != nil {
		return err
	}
	f.committed = true
	return nil
}

// Discard closes and removes the temporary file unless Commit renamed it.
func (f *File) Discard() {
	if f.committed {
		return
	}
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// WriteFile replaces path with data atomically and durably: a temporary
// file with mode perm beside it, fsynced, renamed over path, and the
// directory fsynced. A reader sees the old or the new contents, never a mix;
// on error path is untouched and no temporary file is left.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	f, err := CreateTemp(path)
	if err != nil {
		return err
	}
	defer f.Discard()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Commit(); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs the directory dir, so that the names created, renamed or
// removed in it survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Renameat2 is renameat2(2) on two paths with flags (unix.RENAME_NOREPLACE,
// unix.RENAME_EXCHANGE); with flags 0 it falls back to renameat(2) on a
// kernel older than 3.15. Its errors are *os.LinkError.
func Renameat2(oldPath, newPath string, flags uint) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldPath, unix.AT_FDCWD, newPath, flags)
	if errors.Is(err, unix.ENOSYS) && flags == 0 {
		err = unix.Renameat(unix.AT_FDCWD, oldPath, unix.AT_FDCWD, newPath)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldPath, New: newPath, Err: err}
	}
	return nil
}

// RenameNoReplace renames oldPath to newPath, failing (fs.ErrExist) when
// newPath exists. Where the file system has no RENAME_NOREPLACE it checks
// first: racy, but only against other writers of our own work files.
func RenameNoReplace(oldPath, newPath string) error {
	return RenameNoReplaceVia(Renameat2, oldPath, newPath)
}

// RenameNoReplaceVia is RenameNoReplace through rename, a Renameat2 (or a
// test's stand-in for it that injects failures).
func RenameNoReplaceVia(rename func(oldPath, newPath string, flags uint) error, oldPath, newPath string) error {
	err := rename(oldPath, newPath, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if _, serr := os.Lstat(newPath); serr == nil {
			return fmt.Errorf("rename %s: %s: %w", oldPath, newPath, fs.ErrExist)
		}
		return rename(oldPath, newPath, 0)
	}
	return err
}

// CountingReader reads from R and counts the bytes read in N, which another
// goroutine (a progress logger) may Load at any time.
type CountingReader struct {
	R io.Reader
	N atomic.Int64
}

func (c *CountingReader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N.Add(int64(n))
	return n, err
}

// CountingWriter writes to W and counts the bytes written in N, which
// another goroutine (a progress logger) may Load at any time.
type CountingWriter struct {
	W io.Writer
	N atomic.Int64
}

func (c *CountingWriter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N.Add(int64(n))
	return n, err
}

// ReadAtMost reads all of r when it holds at most n bytes; more is an error
// ("larger than n bytes"). A small file of known purpose (a checksum, a
// lease) never fills memory, whatever is found in its place.
func ReadAtMost(r io.Reader, n int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, n+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > n {
		return nil, fmt.Errorf("larger than %d bytes", n)
	}
	return b, nil
}

// Sleep waits for d or until ctx ends, whichever comes first. It returns
// nil after d, ctx.Err() when ctx ended first (at once when d <= 0 and ctx
// has already ended).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
