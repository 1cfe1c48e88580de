package snapshot

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Pipeline tuning. The compressors run on their own goroutines; the walk
// reads files and frames tar on the caller's goroutine, so reading, framing,
// compression and hashing+writing overlap.
const (
	copyBufSize    = 512 << 10 // read size for file content
	outBufSize     = 256 << 10 // buffer between compressor and file+hash
	gzipBlockSize  = 1 << 20   // pgzip block size
	zstdWindowSize = 256 << 10 // zstd window: parallel jobs are 4 windows each, so it bounds memory; costs ~1.5% size vs 2 MiB
	progressEvery  = 5 * time.Second
	// heapLimit caps the Go heap while Create runs so that the process stays
	// under 40 MiB resident (about 34 MiB measured, whatever the data size):
	// the pipeline's live buffers are ~20 MiB and pointer-free, so the extra
	// collections are cheap.
	heapLimit = 32 << 20
)

// hooks lets tests reach into a run without mocks; the zero value is production behaviour.
type hooks struct {
	now           func() time.Time
	beforeCopy    func(path string) // after the header is written, before the content is read
	progressEvery time.Duration
}

// Create writes one snapshot of cfg.Sources into cfg.Dir and returns its Info.
// It streams in constant memory: walk, tar, compress, hash and write all
// happen concurrently into a temporary file that is fsynced, gets its
// .sha256 and is renamed into place. On error nothing new is listed.
// Leftover temporary files of earlier crashed runs are removed first.
// Runs on the same Dir are serialised by a lock; a concurrent run fails.
// While it runs, the process's Go memory limit (debug.SetMemoryLimit) is
// lowered to 32 MiB unless it is already lower; it is restored afterwards.
func Create(ctx context.Context, cfg Config, log *zap.Logger) (Info, error) {
	return create(ctx, cfg, log, hooks{})
}

func create(ctx context.Context, cfg Config, log *zap.Logger, h hooks) (Info, error) {
	if err := cfg.Validate(); err != nil {
		return Info{}, err
	}
	if strings.TrimSpace(cfg.Dir) == "" {
		return Info{}, fmt.Errorf("snapshot: no snapshot directory (SNAPVISOR_DIR is empty): use Stream to write to a remote")
	}
	h = h.withDefaults()
	defer limitMemory()()
	sources, err := resolveSources(cfg.Sources)
	if err != nil {
		return Info{}, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return Info{}, fmt.Errorf("snapshot directory %s: %w", cfg.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Info{}, fmt.Errorf("create snapshot directory: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	removeLeftovers(dir, log)

	start := h.now().UTC()
	final := FileName(cfg, start)
	finalPath := filepath.Join(dir, final)
	if _, err := os.Lstat(finalPath); err == nil {
		return Info{}, fmt.Errorf("snapshot %s already exists (one snapshot per second and name)", finalPath)
	}
	log = log.With(zap.String("snapshot", final))

	tmp, err := os.CreateTemp(dir, "."+final+".tmp-*")
	if err != nil {
		return Info{}, fmt.Errorf("create temporary snapshot file: %w", err)
	}
	tmpPath := tmp.Name()
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmpPath)
		}
	}()

	var skip devIno
	if fi, err := os.Stat(dir); err == nil {
		skip = statKey(fi)
	}
	info, err := write(ctx, cfg, sources, tmp, start, skip, log, h)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return Info{}, fmt.Errorf("snapshot %s: %w", finalPath, err)
	}
	if err := commit(dir, final, tmpPath, info.SHA256); err != nil {
		return Info{}, fmt.Errorf("snapshot %s: %w", finalPath, err)
	}
	committed = true
	info.Path = finalPath
	log.Info("snapshot written", zap.String("path", finalPath), zap.Int64("size", info.Size), zap.Int64("files", info.Files),
		zap.Int64("bytes", info.Bytes), zap.Int64("changed", info.Changed), zap.Int64("skipped", info.Skipped),
		zap.Duration("elapsed", time.Since(start)), zap.Float64("mib_per_s", rate(info.Bytes, time.Since(start))))
	return info, nil
}

// Stream writes one snapshot of cfg.Sources to w (a remote upload, say) and
// returns its Info with an empty Path: the name it should be stored under,
// its size and the sha256 of the bytes written. It needs no snapshot
// directory and takes no lock; w sees exactly the bytes Create would have
// put in the file. On error, what was written to w is not a snapshot.
func Stream(ctx context.Context, cfg Config, w io.Writer, log *zap.Logger) (Info, error) {
	return stream(ctx, cfg, w, log, hooks{})
}

func stream(ctx context.Context, cfg Config, w io.Writer, log *zap.Logger, h hooks) (Info, error) {
	if err := cfg.Validate(); err != nil {
		return Info{}, err
	}
	h = h.withDefaults()
	defer limitMemory()()
	sources, err := resolveSources(cfg.Sources)
	if err != nil {
		return Info{}, err
	}
	start := h.now().UTC()
	log = log.With(zap.String("snapshot", FileName(cfg, start)))
	info, err := write(ctx, cfg, sources, w, start, devIno{}, log, h)
	if err != nil {
		return Info{}, fmt.Errorf("snapshot %s: %w", FileName(cfg, start), err)
	}
	log.Info("snapshot streamed", zap.Int64("size", info.Size), zap.Int64("files", info.Files),
		zap.Int64("bytes", info.Bytes), zap.Int64("changed", info.Changed), zap.Int64("skipped", info.Skipped),
		zap.Duration("elapsed", time.Since(start)), zap.Float64("mib_per_s", rate(info.Bytes, time.Since(start))))
	return info, nil
}

// FileName is the snapshot file name for cfg at time t:
// <name>-<UTC YYYYMMDDTHHMMSSZ><extension>.
func FileName(cfg Config, t time.Time) string {
	return fmt.Sprintf("%s-%s%s", cfg.Name, t.UTC().Format(TimeLayout), cfg.extension())
}

func (h hooks) withDefaults() hooks {
	if h.now == nil {
		h.now = time.Now
	}
	if h.progressEvery == 0 {
		h.progressEvery = progressEvery
	}
	return h
}

// limitMemory lowers the Go memory limit to heapLimit for the length of a
// run unless it is already lower; the returned func restores it.
func limitMemory() (restore func()) {
	if old := debug.SetMemoryLimit(-1); old > heapLimit {
		debug.SetMemoryLimit(heapLimit)
		return func() { debug.SetMemoryLimit(old) }
	}
	return func() {}
}

// write is the pipeline every snapshot goes through: walk and tar framing on
// this goroutine, compression on the compressor's, then sha256 and dst. It
// returns the Info of what reached dst (no Path).
func write(ctx context.Context, cfg Config, sources []string, dst io.Writer, start time.Time, skip devIno, log *zap.Logger, h hooks) (Info, error) {
	log.Info("snapshot started", zap.Strings("sources", sources), zap.String("compression", cfg.Compression), zap.Int("level", cfg.level()))
	w := &walker{cfg: cfg, log: log, hooks: h, ctx: ctx, links: map[devIno]string{}, buf: make([]byte, copyBufSize), skipDir: skip}
	hasher := sha256.New()
	out := &countingWriter{w: io.MultiWriter(dst, hasher)}
	bw := bufio.NewWriterSize(out, outBufSize)
	comp, err := newCompressor(cfg, bw)
	if err != nil {
		return Info{}, err
	}
	in := &countingWriter{w: comp}
	w.tw = tar.NewWriter(in)

	stopProgress := startProgress(log, "snapshot progress", h.progressEvery, &in.n, &out.n, start)
	err = w.run(sources, start)
	stopProgress()
	if err == nil {
		err = w.tw.Close()
	}
	if cerr := comp.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("compress: %w", cerr)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return Info{}, err
	}
	s := w.sum
	return Info{Name: FileName(cfg, start), Time: start.Truncate(time.Second), Size: out.n.Load(), Compression: cfg.Compression,
		SHA256: hex.EncodeToString(hasher.Sum(nil)), Files: s.Files + s.Hardlinks, Bytes: s.Bytes, Changed: s.Changed, Skipped: s.Skipped}, nil
}

// commit writes <final>.sha256, then renames the archive into place and fsyncs the directory.
func commit(dir, final, tmpPath, sum string) error {
	sumTmp, err := os.CreateTemp(dir, "."+final+".sha256.tmp-*")
	if err != nil {
		return fmt.Errorf("create checksum file: %w", err)
	}
	sumTmpPath := sumTmp.Name()
	_, err = fmt.Fprintf(sumTmp, "%s  %s\n", sum, final)
	if err == nil {
		err = sumTmp.Sync()
	}
	if cerr := sumTmp.Close(); err == nil {
		err = cerr
	}
	finalPath := filepath.Join(dir, final)
	if err == nil {
		err = renameNoReplace(sumTmpPath, finalPath+".sha256")
	}
	if err != nil {
		os.Remove(sumTmpPath)
		return fmt.Errorf("write checksum file: %w", err)
	}
	if err := renameNoReplace(tmpPath, finalPath); err != nil {
		os.Remove(finalPath + ".sha256")
		return fmt.Errorf("rename into place: %w", err)
	}
	return syncDir(dir)
}

func resolveSources(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, s := range in {
		abs, err := filepath.Abs(s)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", s, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("source %s is not a directory", abs)
		}
		out = append(out, abs)
	}
	return out, nil
}

// lockDir takes an exclusive, non-blocking flock on dir until unlock is called.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open snapshot directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("snapshot directory %s is in use by another snapshot run", dir)
		}
		return nil, fmt.Errorf("lock snapshot directory %s: %w", dir, err)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// removeLeftovers deletes temporary files of crashed runs and checksum files whose archive is missing.
// The caller holds the directory lock.
func removeLeftovers(dir string, log *zap.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		p := filepath.Join(dir, n)
		switch {
		case tempRE.MatchString(n):
		case strings.HasSuffix(n, ".sha256"):
			if _, _, _, ok := ParseName(strings.TrimSuffix(n, ".sha256")); !ok {
				continue
			}
			if _, err := os.Lstat(strings.TrimSuffix(p, ".sha256")); !errors.Is(err, fs.ErrNotExist) {
				continue
			}
		default:
			continue
		}
		if err := os.Remove(p); err != nil {
			log.Warn("cannot remove leftover of an interrupted snapshot", zap.String("path", p), zap.Error(err))
			continue
		}
		log.Info("removed leftover of an interrupted snapshot", zap.String("path", p))
	}
}

func newCompressor(cfg Config, w io.Writer) (io.WriteCloser, error) {
	switch cfg.Compression {
	case CompressionGzip:
		z, err := pgzip.NewWriterLevel(w, cfg.level())
		if err != nil {
			return nil, fmt.Errorf("gzip writer: %w", err)
		}
		if err := z.SetConcurrency(gzipBlockSize, 2*runtime.GOMAXPROCS(0)); err != nil {
			return nil, fmt.Errorf("gzip writer: %w", err)
		}
		return z, nil
	case CompressionZstd:
		z, err := zstd.NewWriter(w,
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(cfg.level())),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithWindowSize(zstdWindowSize),
			zstd.WithConcurrentBlocks(true),
			zstd.WithEncoderCRC(true))
		if err != nil {
			return nil, fmt.Errorf("zstd writer: %w", err)
		}
		return z, nil
	}
	return nopCloser{w}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// countingWriter counts bytes written through it; n is read by the progress logger.
type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / (1 << 20) / d.Seconds()
}

// startProgress logs msg with the bytes counted by in (and out, when not nil)
// and the rate every interval until stop is called.
func startProgress(log *zap.Logger, msg string, every time.Duration, in, out *atomic.Int64, start time.Time) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n := in.Load()
				fields := []zap.Field{zap.Int64("bytes", n), zap.Float64("mib_per_s", rate(n, time.Since(start)))}
				if out != nil {
					fields = append(fields, zap.Int64("written", out.Load()))
				}
				log.Info(msg, fields...)
			}
		}
	}()
	return func() { close(done); <-finished }
}

type devIno struct{ dev, ino uint64 }

func statKey(fi fs.FileInfo) devIno {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return devIno{uint64(st.Dev), st.Ino}
	}
	return devIno{}
}

// walker writes the sources into a tar stream.
type walker struct {
	cfg     Config
	log     *zap.Logger
	hooks   hooks
	ctx     context.Context
	tw      *tar.Writer
	links   map[devIno]string // first archive name of each multiply linked file
	skipDir devIno            // the snapshot directory, never archived
	buf     []byte
	sum     Summary
}

func (w *walker) run(sources []string, start time.Time) error {
	host, _ := os.Hostname()
	m := Manifest{Format: Format, Version: Version, Host: host, Created: start, Exclude: w.cfg.Exclude,
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
	for _, s := range sources {
		if err := w.walkSource(s); err != nil {
			return err
		}
	}
	w.sum.Finished = time.Now().UTC()
	return writeJSONEntry(w.tw, SummaryName, w.sum, w.sum.Finished)
}

func (w *walker) excluded(base, rel, arch string) bool {
	for _, p := range w.cfg.Exclude {
		for _, s := range [...]string{base, rel, arch} {
			if ok, _ := path.Match(p, s); ok {
				return true
			}
		}
	}
	return false
}

func (w *walker) walkSource(src string) error {
	top := sourceBase(src)
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != src && errors.Is(err, fs.ErrNotExist) {
				w.log.Warn("entry vanished during the walk", zap.String("path", p))
				return nil
			}
			return fmt.Errorf("walk %s: %w", p, err)
		}
		if err := w.ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return fmt.Errorf("walk %s: %w", p, err)
		}
		rel = filepath.ToSlash(rel)
		arch := top
		if rel != "." {
			if !strings.Contains(rel, "/") && (strings.HasPrefix(rel, stagingPrefix) || strings.HasPrefix(rel, preRestorePrefix)) {
				// Restore's own work directories inside a mount-point source.
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
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if d.IsDir() && rel != "." && statKey(fi) == w.skipDir {
			return fs.SkipDir
		}
		return w.entry(p, arch, fi)
	})
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

func (w *walker) entry(p, arch string, fi fs.FileInfo) error {
	hdr := &tar.Header{Name: arch, Mode: tarMode(fi.Mode()), ModTime: fi.ModTime(), Format: tar.FormatPAX}
	var st *syscall.Stat_t
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st = s
		hdr.Uid, hdr.Gid = int(s.Uid), int(s.Gid)
	}
	switch t := fi.Mode().Type(); {
	case t == 0:
		hdr.Typeflag = tar.TypeReg
		if st != nil && st.Nlink > 1 {
			key := devIno{uint64(st.Dev), st.Ino}
			if first, seen := w.links[key]; seen {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				w.sum.Hardlinks++
				return w.writeHeader(hdr)
			}
			w.links[key] = arch
		}
		return w.regular(p, hdr, fi)
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

// regular stores a file's content. Exactly hdr.Size bytes go into the
// archive whatever happens to the file meanwhile: a file that shrank is
// padded with zeros, one that grew is cut at the promised size; both are
// warned about and counted.
func (w *walker) regular(p string, hdr *tar.Header, fi fs.FileInfo) error {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		w.log.Warn("file vanished during the walk", zap.String("path", p))
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
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
		n := int64(len(w.buf))
		if remaining < n {
			n = remaining
		}
		r, err := io.ReadFull(f, w.buf[:n])
		if r > 0 {
			if _, werr := w.tw.Write(w.buf[:r]); werr != nil {
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

// renameNoReplace renames old to new, failing if new exists.
func renameNoReplace(oldPath, newPath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldPath, unix.AT_FDCWD, newPath, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if _, serr := os.Lstat(newPath); serr == nil {
			return fmt.Errorf("rename %s: %s already exists", oldPath, newPath)
		}
		return os.Rename(oldPath, newPath)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldPath, New: newPath, Err: err}
	}
	return nil
}

func syncDir(dir string) error {
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
