package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"snapvisor/internal/fsx"
	"snapvisor/internal/progress"
)

// ErrRefused is wrapped by errors reporting an archive entry that restore refuses
// (escaping the target, writing through a symlink, device nodes).
var ErrRefused = errors.New("refused")

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// DiscardCurrent removes the current contents after the swap instead of
	// keeping them as <target>.pre-restore-<UTC time>.
	DiscardCurrent bool
	// Now gives the time in the pre-restore name; time.Now when nil.
	Now func() time.Time
}

// Restore restores the snapshot at path into the source directories of cfg.
// It first completes any swap an earlier restore left interrupted (Recover).
// It extracts every source into a hidden staging directory beside it (same
// parent), refusing entries that would escape it, while computing the
// archive's sha256; only when the whole archive is extracted, read to its end
// and matches its .sha256 (and the staging data is synced) does it swap each
// staging directory into place: a journal is written for every target, then
// the current directory and the staging directory are exchanged (renameat2
// RENAME_EXCHANGE, so the target path always holds a complete directory) and
// the previous contents are kept as <target>.pre-restore-<UTC
// YYYYMMDDTHHMMSSZ> (removed when DiscardCurrent). A mount point is staged
// inside and its entries swapped in two journaled phases (see the package
// documentation). ctx is checked last just before the journals are written:
// once the swap has begun it is completed whatever ctx says, and a crash
// from then on is completed by the next Recover.
// A target that is a symlink stays one: the restore goes into the directory
// it points to (created if missing), beside which the previous contents are
// kept. On any error the
// staging directories are removed and the targets are untouched. Ownership is
// restored when running as root. Errors name the archive, the entry and the fault.
// cfg must have passed Validate: it decrypts with the credentials Validate
// read, so that restoring one candidate after another reads no key file again.
func Restore(ctx context.Context, cfg Config, path string, opts RestoreOptions, log *zap.Logger) error {
	return restore(ctx, cfg, path, opts, log, hooks{})
}

func restore(ctx context.Context, cfg Config, path string, opts RestoreOptions, log *zap.Logger, h hooks) error {
	start := time.Now()
	log = log.With(zap.String("archive", path))
	want, err := ReadChecksum(path)
	if err != nil {
		return fmt.Errorf("restore %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	var s scanned
	fill := func(ctx context.Context, x *extractor) error {
		// The checksum is computed while the archive is read (on another
		// goroutine) and checked before anything is swapped.
		in := &fsx.CountingReader{R: f}
		total := int64(-1)
		if fi, err := f.Stat(); err == nil {
			total = fi.Size()
		}
		progress.From(ctx).Track("restore "+filepath.Base(path), &in.N, total)
		stopProgress := startProgress(log, "restore progress", h.progressInterval(cfg), &in.N, nil, start)
		stopFlusher := x.startFlusher()
		var err error
		s, err = readVerified(ctx, f, in, want, formatOf(path, cfg.Encryption), x.entry)
		stopProgress()
		if ferr := stopFlusher(); err == nil && ferr != nil {
			err = ferr
		}
		if err != nil {
			return err
		}
		log.Info("restore: checksum verified and archive read to its end", zap.String("sha256", want))
		for top, target := range x.targets {
			if !s.tops[top] {
				return fmt.Errorf("the archive has no directory %q for source %s (it holds %s)", top+"/", target, strings.Join(sortedKeys(s.tops), ", "))
			}
		}
		if err := x.finishDirs(); err != nil {
			return err
		}
		if m := s.manifest; m != nil {
			log.Info("restore: archive extracted", zap.String("created", m.Created.Format(time.RFC3339)), zap.String("host", m.Host),
				zap.String("instance", m.Instance), zap.String("version", m.Version), zap.Int64("files", s.counted.Files), zap.Int64("bytes", s.counted.Bytes))
		}
		return nil
	}
	if err := stagedRestore(ctx, cfg, path, fill, opts, log, h); err != nil {
		return err
	}
	log.Info("restore complete", zap.Strings("targets", cfg.Sources), zap.Int64("files", s.counted.Files),
		zap.Int64("bytes", s.counted.Bytes), zap.Duration("elapsed", time.Since(start)))
	return nil
}

// Filler writes a snapshot's content into staging directories: staging maps
// each source's base name (an archive's top-level directory) to an empty
// directory, whose own metadata the filler sets too.
type Filler func(ctx context.Context, staging map[string]string) error

// RestoreWith restores exactly as Restore does (lock, Recover, staging
// beside or inside each target, sync, journaled swap, previous contents
// kept), the content coming from fill instead of an archive: another
// snapshot format. what names the snapshot in errors. Nothing is swapped
// unless fill returns nil.
func RestoreWith(ctx context.Context, cfg Config, what string, fill Filler, opts RestoreOptions, log *zap.Logger) error {
	return stagedRestore(ctx, cfg, what, func(ctx context.Context, x *extractor) error {
		return fill(ctx, x.roots)
	}, opts, log, hooks{})
}

// stagedRestore makes a staging directory for every source, has fill write
// them, syncs them and swaps them into place (swapAll).
func stagedRestore(ctx context.Context, cfg Config, what string, fill func(context.Context, *extractor) error, opts RestoreOptions, log *zap.Logger, h hooks) error {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	start := time.Now()
	unlock, err := lockSources(cfg, true, log)
	if err != nil {
		return err
	}
	defer unlock()
	if err := recoverSwaps(cfg, log, h); err != nil {
		return fmt.Errorf("restore: %w", err)
	}

	x := &extractor{roots: map[string]string{}, targets: map[string]string{}, inside: map[string]bool{}, dirs: map[string]bool{}, rootSeen: map[string]bool{},
		chown: os.Geteuid() == 0, buf: make([]byte, readBufSize), zero: make([]byte, zeroChunkBytes), log: log}
	defer x.cleanup()
	x.ctx = ctx
	for _, src := range cfg.Sources {
		target, err := filepath.Abs(src)
		if err != nil {
			return fmt.Errorf("restore: source %s: %w", src, err)
		}
		top := sourceBase(target)
		if target, err = resolveTarget(target, log); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		parent := filepath.Dir(target)
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		// A mount point cannot be renamed: stage inside it and swap its entries.
		inside, err := isMountPoint(target)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		stagingParent, pattern := parent, "."+filepath.Base(target)+".restore-*"
		if inside {
			stagingParent, pattern = target, stagingPrefix+"*"
			x.inside[top] = true
		}
		staging, err := os.MkdirTemp(stagingParent, pattern)
		if err != nil {
			return fmt.Errorf("restore: create staging directory: %w", err)
		}
		x.roots[top] = staging
		x.targets[top] = target
		x.dirs[staging] = true
	}

	if err := fill(ctx, x); err != nil {
		return fmt.Errorf("restore %s: %w", what, err)
	}
	extracted := time.Now()
	for _, staging := range x.roots {
		if err := syncFS(staging); err != nil {
			return fmt.Errorf("restore %s: %w", what, err)
		}
	}
	log.Debug("restore: extracted and synced", zap.Duration("extract", extracted.Sub(start)), zap.Duration("sync", time.Since(extracted)))

	// The last point at which the restore is abandoned: from here on ctx is
	// not consulted (a TERM must not leave a half-swapped target).
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("restore %s: stopped before the swap, nothing changed: %w", what, err)
	}
	if err := swapAll(x, opts, h, log); err != nil {
		return fmt.Errorf("restore %s: swap into place: %w", what, err)
	}
	return nil
}

// swapAll puts every staging directory of x in place of its target. Every
// journal is written before the first swap starts, so that a crash at any
// point is completed by Recover for every target alike. A swap that fails
// returns every target to its previous contents.
func swapAll(x *extractor, opts RestoreOptions, h hooks, log *zap.Logger) error {
	stamp := opts.Now().UTC().Format(TimeLayout)
	tops := sortedKeys(x.targets)
	swaps := make([]*swap, 0, len(tops))
	for _, top := range tops {
		s, err := planSwap(x.targets[top], x.roots[top], stamp, x.inside[top], opts.DiscardCurrent, h, log)
		if err != nil {
			return err
		}
		swaps = append(swaps, s)
	}
	rollback := func(n int) {
		for i := n - 1; i >= 0; i-- {
			if err := swaps[i].back(); err != nil {
				// The journal stays: the next Recover completes the swap instead.
				log.Error("restore: rollback failed; the next start or restore completes the swap", zap.String("target", swaps[i].target), zap.Error(err))
				continue
			}
			x.roots[tops[i]] = swaps[i].at(swaps[i].j.Staging) // back at its path: removed by cleanup
		}
	}
	for i, s := range swaps {
		err := s.commit()
		if err != nil {
			rollback(i)
			return err
		}
		delete(x.roots, tops[i]) // the journal owns the staging directory now
	}
	for _, s := range swaps {
		if err := s.forward(); err != nil {
			rollback(len(swaps))
			return err
		}
	}
	for _, s := range swaps {
		if prev := s.finish(); prev != "" {
			log.Info("restore: previous contents kept", zap.String("previous", prev))
		}
	}
	return nil
}

// resolveTarget returns the directory a restore of target writes: target
// itself, or when it is a symlink (even a dangling one) the path it points to,
// so that the link stays and leads to the restored data.
func resolveTarget(target string, log *zap.Logger) (string, error) {
	p := target
	for hops := 0; ; hops++ {
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			break // created by the restore
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if !fi.IsDir() {
				return "", fmt.Errorf("target %s is not a directory", p)
			}
			break
		}
		if hops == 40 {
			return "", fmt.Errorf("target %s: too many levels of symbolic links", target)
		}
		link, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(link) {
			link = filepath.Join(filepath.Dir(p), link)
		}
		p = filepath.Clean(link)
	}
	if p != target {
		log.Info("restore: the target is a symlink; restoring into the directory it points to", zap.String("target", target), zap.String("directory", p))
	}
	return p, nil
}

func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("sync file system of %s: %w", dir, err)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type dirMeta struct {
	path string
	hdr  *tar.Header
}

// extractor writes archive entries into staging directories.
type extractor struct {
	roots    map[string]string // top-level archive directory -> staging directory (removed on cleanup)
	targets  map[string]string // top-level archive directory -> target
	inside   map[string]bool   // top-level archive directories staged inside their (mount point) target
	dirs     map[string]bool   // staging paths known to be real directories
	rootSeen map[string]bool   // staging directories whose own entry was in the archive
	meta     []dirMeta         // directory metadata, applied after their content
	chown    bool
	buf      []byte
	zero     []byte
	log      *zap.Logger
	flush    chan *os.File // files handed to the flusher goroutine

	ctx context.Context // checked between chunks: one entry can be endless (sparse holes)
}

func (x *extractor) cleanup() {
	for _, staging := range x.roots {
		// Directories restored as 0000 are still removable by root; make them
		// writable for everyone else.
		makeRemovable(staging)
		os.RemoveAll(staging)
	}
}

// resolve maps a normalised entry name to its staging path, refusing names that could escape.
func (x *extractor) resolve(name string) (string, string, error) {
	if name == "" || name == "." {
		return "", "", fmt.Errorf("%w: the archive's own root; a snapshot holds one top-level directory per source (e.g. made with tar -C /srv data)", ErrRefused)
	}
	if strings.HasPrefix(name, "/") {
		return "", "", fmt.Errorf("%w: absolute path", ErrRefused)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", "", fmt.Errorf("%w: path with \"..\"", ErrRefused)
		}
	}
	clean := path.Clean(name)
	top, rest, _ := strings.Cut(clean, "/")
	root, ok := x.roots[top]
	if !ok {
		return "", "", fmt.Errorf("%w: outside the source directories (%s)", ErrRefused, strings.Join(sortedKeys(x.roots), "/, ")+"/")
	}
	return root, rest, nil
}

// parents makes sure every parent of rest inside root is a real directory,
// creating missing ones, and refuses to go through a symlink or a file.
func (x *extractor) parents(root, rest string) error {
	dir := root
	comps := strings.Split(rest, "/")
	for _, c := range comps[:len(comps)-1] {
		dir = filepath.Join(dir, c)
		if x.dirs[dir] {
			continue
		}
		fi, err := os.Lstat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(dir, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: it would be written through the symlink %s", ErrRefused, strings.TrimPrefix(dir, root+"/"))
		case !fi.IsDir():
			return fmt.Errorf("parent %s is not a directory", strings.TrimPrefix(dir, root+"/"))
		}
		x.dirs[dir] = true
	}
	return nil
}

// clear removes what is at p unless it is a directory (an error: entries do not replace directories).
func (x *extractor) clear(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("it would replace a directory")
	}
	return os.Remove(p)
}

func (x *extractor) entry(hdr *tar.Header, name string, tr *tar.Reader) error {
	if err := x.extract(hdr, name, tr); err != nil {
		return &entryError{entry: hdr.Name, err: err}
	}
	return nil
}

func (x *extractor) extract(hdr *tar.Header, name string, tr *tar.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("%w: device node", ErrRefused)
	case tar.TypeFifo:
		x.log.Warn("restore: skipping FIFO entry", zap.String("entry", hdr.Name))
		return nil
	}
	root, rest, err := x.resolve(name)
	if err != nil {
		return err
	}
	dst := root
	if rest != "" {
		dst = filepath.Join(root, rest)
		if err := x.parents(root, rest); err != nil {
			return err
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if rest != "" && !x.dirs[dst] {
			fi, err := os.Lstat(dst)
			if err == nil && !fi.IsDir() {
				if err := os.Remove(dst); err != nil {
					return err
				}
				err = fs.ErrNotExist
			}
			if errors.Is(err, fs.ErrNotExist) {
				if err := os.Mkdir(dst, 0o700); err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
			x.dirs[dst] = true
		}
		x.meta = append(x.meta, dirMeta{dst, hdr})
		if rest == "" {
			x.rootSeen[root] = true
		}
		return nil
	case tar.TypeReg, tar.TypeGNUSparse:
		if rest == "" {
			return fmt.Errorf("a file where the source directory belongs")
		}
		if err := x.clear(dst); err != nil {
			return err
		}
		if err := x.writeFile(dst, hdr, tr); err != nil {
			return err
		}
		return x.setMeta(dst, hdr, false)
	case tar.TypeLink:
		lroot, lrest, err := x.resolve(entryName(hdr.Linkname))
		if err != nil {
			return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
		}
		if lrest == "" {
			return fmt.Errorf("hardlink to a source directory")
		}
		if err := x.parents(lroot, lrest); err != nil {
			return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
		}
		old := filepath.Join(lroot, lrest)
		fi, err := os.Lstat(old)
		if err != nil {
			return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
		}
		if fi.IsDir() {
			return fmt.Errorf("hardlink to a directory")
		}
		if rest == "" {
			return fmt.Errorf("a hardlink where the source directory belongs")
		}
		if err := x.clear(dst); err != nil {
			return err
		}
		return os.Link(old, dst)
	case tar.TypeSymlink:
		if rest == "" {
			return fmt.Errorf("a symlink where the source directory belongs")
		}
		if err := x.clear(dst); err != nil {
			return err
		}
		if err := os.Symlink(hdr.Linkname, dst); err != nil {
			return err
		}
		return x.setMeta(dst, hdr, true)
	}
	return fmt.Errorf("%w: unsupported entry type %q", ErrRefused, string(hdr.Typeflag))
}

// writeFile writes an entry's content; runs of zeros become holes, so sparse files stay sparse.
func (x *extractor) writeFile(dst string, hdr *tar.Header, tr *tar.Reader) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	var off, end, kicked int64
	for {
		if x.ctx != nil && x.ctx.Err() != nil {
			f.Close()
			return x.ctx.Err()
		}
		if x.flush != nil && end-kicked >= writebackEvery {
			// A large file's pages go to writeback as they are written, as
			// the snapshot's do (create.go), not only when it is complete:
			// the syncfs before the swap then has little left to wait for.
			_ = unix.SyncFileRange(int(f.Fd()), kicked, end-kicked, unix.SYNC_FILE_RANGE_WRITE)
			kicked = end
		}
		n, rerr := io.ReadFull(tr, x.buf)
		b := x.buf[:n]
		for len(b) > 0 {
			// Coalesce a run of non-zero chunks into one write; skip zero chunks.
			c := min(len(b), len(x.zero))
			if bytes.Equal(b[:c], x.zero[:c]) {
				off += int64(c)
				b = b[c:]
				continue
			}
			run := c
			for run < len(b) {
				c2 := min(len(b)-run, len(x.zero))
				if bytes.Equal(b[run:run+c2], x.zero[:c2]) {
					break
				}
				run += c2
			}
			if _, err := f.WriteAt(b[:run], off); err != nil {
				f.Close()
				return err
			}
			off += int64(run)
			end = off
			b = b[run:]
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			if off != hdr.Size {
				f.Close()
				return fmt.Errorf("%w: content ends after %d of %d bytes", ErrCorrupt, off, hdr.Size)
			}
			break
		}
		if rerr != nil {
			f.Close()
			return fmt.Errorf("%w: %v", ErrCorrupt, rerr)
		}
	}
	if end < off {
		if err := f.Truncate(off); err != nil {
			f.Close()
			return err
		}
	}
	if end > 0 && x.flush != nil {
		// Start writeback now, off this goroutine, so that the syncfs before
		// the swap has little left to wait for. The flusher closes f.
		x.flush <- f
		return nil
	}
	return f.Close()
}

// startFlusher starts the goroutine that starts writeback of written files
// and closes them; stop waits for it and returns the first close error.
func (x *extractor) startFlusher() (stop func() error) {
	ch := make(chan *os.File, 256)
	x.flush = ch
	done := make(chan error, 1)
	go func() {
		var first error
		for f := range ch {
			_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
			if err := f.Close(); err != nil && first == nil {
				first = fmt.Errorf("close %s: %w", f.Name(), err)
			}
		}
		done <- first
	}()
	return func() error {
		close(ch)
		x.flush = nil
		return <-done
	}
}

// setMeta applies ownership (as root), mode and times.
func (x *extractor) setMeta(p string, hdr *tar.Header, symlink bool) error {
	if x.chown {
		if err := os.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	if !symlink {
		if err := os.Chmod(p, fileMode(hdr.Mode)); err != nil {
			return err
		}
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// finishDirs applies directory metadata after their content, deepest last-seen
// first; a source directory without its own entry gets mode 0755.
func (x *extractor) finishDirs() error {
	for _, root := range x.roots {
		if !x.rootSeen[root] {
			if err := os.Chmod(root, 0o755); err != nil {
				return err
			}
		}
	}
	for i := len(x.meta) - 1; i >= 0; i-- {
		m := x.meta[i]
		if err := x.setMeta(m.path, m.hdr, false); err != nil {
			return &entryError{entry: m.hdr.Name, err: err}
		}
	}
	return nil
}

func fileMode(mode int64) fs.FileMode {
	m := fs.FileMode(mode & 0o777)
	if mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}
