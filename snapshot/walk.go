package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Read-ahead: a goroutine walks the sources and opens regular files ahead of
// the tar writer, asking the kernel to start reading them, so that directory
// reads, stats, opens and disk reads overlap framing and compression.
const (
	readAheadEntries = 16      // entries (and open files) queued ahead of the tar writer
	readAheadBytes   = 2 << 20 // per file, read ahead by the kernel as soon as it is opened
)

// walker writes the sources into a tar stream.
type walker struct {
	cfg     Config
	log     *zap.Logger
	hooks   hooks
	ctx     context.Context
	tw      *tar.Writer
	links   map[devIno]string // first archive name of each multiply linked file whose content is stored
	skipDir devIno            // the snapshot directory, never archived
	buf     []byte
	// space, when set, gives the buffer to read file content into: the
	// compressor's own (blockWriter.space), saving a copy.
	space func() []byte
	sum   Summary
}

// walkItem is one entry found by the read-ahead walk.
type walkItem struct {
	path, arch string
	fi         fs.FileInfo // for regular files, the fstat of f
	f          *os.File    // regular files: open, checked to be the file the walk found
	skipped    bool        // a regular file swapped for something else after the walk saw it: count it
	err        error       // the walk failed
}

func (w *walker) run(sources []string, start time.Time) error {
	host, _ := os.Hostname()
	m := Manifest{Format: Format, Version: Version, Host: host, Instance: InstanceID(), Created: start, Exclude: w.cfg.Exclude,
		Compression: w.cfg.Compression, Level: w.cfg.level()}
	for _, s := range sources {
		m.Sources = append(m.Sources, ManifestSource{Path: s, Dir: sourceBase(s)})
	}
	if w.cfg.Compression == CompressionNone {
		m.Level = 0
	}
	if err := writeJSONEntry(w.tw, ManifestName, m, start); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(w.ctx)
	items := make(chan walkItem, readAheadEntries)
	go w.readAhead(ctx, sources, items)
	defer func() {
		cancel()
		for it := range items { // the walk stops at its next entry; close what it opened
			if it.f != nil {
				it.f.Close()
			}
		}
	}()
	for it := range items {
		if it.err != nil {
			return it.err
		}
		if err := w.entry(it); err != nil {
			return err
		}
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	w.sum.Finished = time.Now().UTC()
	return writeJSONEntry(w.tw, summaryName, w.sum, w.sum.Finished)
}

// readAhead walks the sources in order on its own goroutine, sending their
// entries to out (closed at the end). It stops when ctx is done.
func (w *walker) readAhead(ctx context.Context, sources []string, out chan<- walkItem) {
	defer close(out)
	send := func(it walkItem) error {
		select {
		case out <- it:
			return nil
		case <-ctx.Done():
			if it.f != nil {
				it.f.Close()
			}
			return ctx.Err()
		}
	}
	for _, s := range sources {
		if err := w.walkSource(ctx, s, send); err != nil {
			if ctx.Err() == nil {
				send(walkItem{err: err})
			}
			return
		}
	}
}

func (w *walker) excluded(base, rel, arch string) bool { return w.cfg.Excluded(base, rel, arch) }

// Excluded reports whether an entry matches SNAPVISOR_EXCLUDE: base is its
// name, rel its path relative to its source, arch <source-base>/<rel>.
func (c Config) Excluded(base, rel, arch string) bool {
	for _, p := range c.Exclude {
		for _, s := range [...]string{base, rel, arch} {
			if ok, _ := path.Match(p, s); ok {
				return true
			}
		}
	}
	return false
}

// walkSource walks one source. A source that is a symlink (or lies under one)
// is walked where it points to, and its entries are still archived under the
// configured path's base name.
func (w *walker) walkSource(ctx context.Context, src string, send func(walkItem) error) error {
	top := sourceBase(src)
	root, err := filepath.EvalSymlinks(src)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if root != src {
		w.log.Info("source is a symlink: archiving the directory it points to", zap.String("source", src), zap.String("directory", root))
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != root && errors.Is(err, fs.ErrNotExist) {
				w.log.Warn("entry vanished during the walk", zap.String("path", p))
				return nil
			}
			if errors.Is(err, fs.ErrPermission) {
				return unreadable(root, p, err)
			}
			return fmt.Errorf("walk %s: %w", p, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("walk %s: %w", p, err)
		}
		rel = filepath.ToSlash(rel)
		arch := top
		if rel != "." {
			if !strings.Contains(rel, "/") && skippedAtRoot(rel, d.IsDir()) {
				// Restore's own work files inside a mount-point source, and
				// the file system's lost+found (root-only 0700 on ext4).
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			arch = top + "/" + rel
			if w.excluded(d.Name(), rel, arch) {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("entry vanished during the walk", zap.String("path", p))
			return nil
		}
		if errors.Is(err, fs.ErrPermission) {
			return unreadable(root, p, err)
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if d.IsDir() && rel != "." && statKey(fi) == w.skipDir {
			return fs.SkipDir
		}
		it := walkItem{path: p, arch: arch, fi: fi}
		if fi.Mode().IsRegular() {
			if w.hooks.beforeOpen != nil {
				w.hooks.beforeOpen(p)
			}
			f, now, err := w.openRegular(p, fi)
			switch {
			case errors.Is(err, errSwapped):
				it.skipped = true
			case errors.Is(err, fs.ErrPermission):
				return unreadable(root, p, err)
			case err != nil:
				return err
			case f == nil:
				return nil // vanished
			default:
				it.f, it.fi = f, now
			}
		}
		return send(it)
	})
}

var errSwapped = errors.New("swapped")

// unreadable is the error for an entry p under a source's root that the
// snapshot's user may not read: it names the entry, the uid and the
// SNAPVISOR_EXCLUDE pattern that leaves it out.
func unreadable(root, p string, err error) error {
	rel, rerr := filepath.Rel(root, p)
	if rerr != nil || rel == "." {
		return fmt.Errorf("cannot read the source %s as uid %d: %w", p, os.Geteuid(), err)
	}
	// A literal path.Match pattern: escape the metacharacters; a comma
	// (the list separator) can only be matched by "?".
	pattern := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `,`, `?`).Replace(filepath.ToSlash(rel))
	return fmt.Errorf("cannot read %s as uid %d: make it readable for that user, or leave it out of snapshots with SNAPVISOR_EXCLUDE=%s: %w",
		p, os.Geteuid(), pattern, err)
}

// openRegular opens the regular file the walk found at p without following a
// symlink or blocking on a FIFO that took its place, and checks that it is
// still that file (same device and inode). It returns nil, nil, nil when the
// file vanished and errSwapped (warned about) when something else is there now.
func (w *walker) openRegular(p string, walked fs.FileInfo) (*os.File, fs.FileInfo, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		w.log.Warn("file vanished during the walk", zap.String("path", p))
		return nil, nil, nil
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENODEV):
		// A symlink (O_NOFOLLOW), a socket or a device without a driver now.
		w.log.Warn("skipping a file replaced by another kind of entry during the walk", zap.String("path", p), zap.Error(err))
		return nil, nil, errSwapped
	case err != nil:
		return nil, nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("open %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	now, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat %s: %w", p, err)
	}
	if !now.Mode().IsRegular() || statKey(now) != statKey(walked) {
		f.Close()
		w.log.Warn("skipping a file replaced during the walk", zap.String("path", p), zap.String("type", now.Mode().Type().String()))
		return nil, nil, errSwapped
	}
	// Start reading it now; sequential access doubles the kernel's read-ahead.
	_ = unix.Fadvise(fd, 0, 0, unix.FADV_SEQUENTIAL)
	if n := min(now.Size(), readAheadBytes); n > 0 {
		_ = unix.Fadvise(fd, 0, n, unix.FADV_WILLNEED)
	}
	return f, now, nil
}

// tarMode converts a file mode to tar mode bits, setuid, setgid and sticky included.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// entry writes one walked entry; it owns it.f.
func (w *walker) entry(it walkItem) error {
	if it.skipped {
		w.sum.Skipped++
		return nil
	}
	p, arch, fi := it.path, it.arch, it.fi
	hdr := &tar.Header{Name: arch, Mode: tarMode(fi.Mode()), ModTime: fi.ModTime(), Format: tar.FormatPAX}
	var st *syscall.Stat_t
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st = s
		hdr.Uid, hdr.Gid = int(s.Uid), int(s.Gid)
	}
	switch t := fi.Mode().Type(); {
	case t == 0:
		defer it.f.Close()
		hdr.Typeflag = tar.TypeReg
		linked := st != nil && st.Nlink > 1
		key := statKey(fi)
		if linked {
			if first, seen := w.links[key]; seen {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				w.sum.Hardlinks++
				return w.writeHeader(hdr)
			}
		}
		if err := w.regular(it.f, p, hdr, fi); err != nil {
			return err
		}
		if linked {
			// Only now: later links must point to a name the archive holds.
			w.links[key] = arch
		}
		return nil
	case t == fs.ModeDir:
		hdr.Typeflag, hdr.Name = tar.TypeDir, arch+"/"
		w.sum.Dirs++
		return w.writeHeader(hdr)
	case t == fs.ModeSymlink:
		target, err := os.Readlink(p)
		if errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("entry vanished during the walk", zap.String("path", p))
			return nil
		}
		if err != nil {
			return fmt.Errorf("read symlink: %w", err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		w.sum.Symlinks++
		return w.writeHeader(hdr)
	default:
		w.sum.Skipped++
		w.log.Warn("skipping special file (FIFO, socket or device)", zap.String("path", p), zap.String("type", t.String()))
		return nil
	}
}

func (w *walker) writeHeader(hdr *tar.Header) error {
	if err := w.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write tar header %s: %w", hdr.Name, err)
	}
	return nil
}

// regular stores the content of f, opened at p and described by fi. Exactly
// hdr.Size bytes go into the archive whatever happens to the file meanwhile:
// a file that shrank is padded with zeros, one that grew is cut at the
// promised size; both are warned about and counted.
func (w *walker) regular(f *os.File, p string, hdr *tar.Header, fi fs.FileInfo) error {
	hdr.Size = fi.Size()
	if err := w.writeHeader(hdr); err != nil {
		return err
	}
	if w.hooks.beforeCopy != nil {
		w.hooks.beforeCopy(p)
	}
	w.sum.Files++
	w.sum.Bytes += hdr.Size
	remaining := hdr.Size
	shrank := false
	for remaining > 0 {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		buf := w.buf
		if w.space != nil {
			buf = w.space()
		}
		n := min(remaining, int64(len(buf)))
		r, err := io.ReadFull(f, buf[:n])
		if r > 0 {
			if _, werr := w.tw.Write(buf[:r]); werr != nil {
				return fmt.Errorf("write %s: %w", hdr.Name, werr)
			}
			remaining -= int64(r)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			shrank = true
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
	}
	if shrank {
		clear(w.buf)
		for remaining > 0 {
			n := min(remaining, int64(len(w.buf)))
			if _, err := w.tw.Write(w.buf[:n]); err != nil {
				return fmt.Errorf("write %s: %w", hdr.Name, err)
			}
			remaining -= n
		}
	}
	now, err := f.Stat()
	if shrank || (err == nil && (now.Size() != hdr.Size || !now.ModTime().Equal(fi.ModTime()))) {
		w.sum.Changed++
		cur := int64(-1)
		if err == nil {
			cur = now.Size()
		}
		w.log.Warn("file changed while it was read; stored its first stat size (padded with zeros if it shrank, cut if it grew)",
			zap.String("path", p), zap.Int64("stored_size", hdr.Size), zap.Int64("current_size", cur), zap.Bool("shrank", shrank))
	}
	return nil
}
