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
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"snapvisor/internal/fsx"
	"snapvisor/internal/progress"
	"snapvisor/seal"
)

// Pipeline tuning. A read-ahead goroutine walks the sources and opens files
// ahead of the tar writer (walk.go); the caller's goroutine reads them and
// frames tar; a fixed pool of workers compresses blocks (blockwriter.go); one
// goroutine hashes and writes the result. All of them overlap.
const (
	copyBufSize = 512 << 10 // read size for file content
	outBufSize  = 256 << 10 // buffer between compressor and file+hash
	// At most this many compression workers whatever the core count, so that
	// memory does not grow with it: a gzip worker costs ~6 MiB (blocks, the
	// deflate state of the encoder levels it uses, ~1.1 MiB each, see
	// gzipLadder, and the sample's estimator), a zstd worker ~7 MiB (blocks,
	// a 1 MiB window, hash tables). The heap of a snapshot stays at 16-22 MiB;
	// the rest of its peak RSS (README, benchmark) is the binary's own pages.
	gzipWorkers   = 3
	zstdWorkers   = 2
	gzipBlockSize = 512 << 10 // larger ones save under 0.01%
	zstdBlockSize = 1 << 20   // also the zstd window: 512 KiB costs 0.8% size, 2 MiB saves 0.4% for 5 MiB more memory
	// DefaultProgressInterval is Config.ProgressInterval when it is 0.
	DefaultProgressInterval = 30 * time.Second
	// The archive's pages are handed to the kernel's writeback every this
	// many bytes while it is written (see writeback).
	writebackEvery = 8 << 20
	// While a snapshot runs the Go heap is kept close to its live size: the
	// pipeline's buffers are allocated once (at most ~25 MiB, pointer-free,
	// cheap to scan), so frequent collections cost little and keep the
	// per-file garbage of the walk from piling up on top of them as the data
	// grows. heapLimit is a soft cap on all the Go runtime's memory.
	gcPercent = 10
	heapLimit = 32 << 20
)

// hooks lets tests reach into a run without mocks; the zero value is production behaviour.
type hooks struct {
	now           func() time.Time
	beforeOpen    func(path string)      // on the read-ahead goroutine, after the walk's lstat, before the open
	beforeCopy    func(path string)      // after the header is written, before the content is read
	progressEvery time.Duration          // overrides Config.ProgressInterval
	syncDir       func(dir string) error // fsyncs the snapshot directory after the rename

	// renameat2 does every rename of restore's swap and journal (swap.go).
	renameat2 func(oldPath, newPath string, flags uint) error
}

// Create writes one snapshot of cfg.Sources into cfg.Dir and returns its Info.
// It streams in constant memory: walk, tar, compress, hash and write all
// happen concurrently into a temporary file that is fsynced, gets its
// .sha256 and is renamed into place. On error nothing new is listed.
// Leftover temporary files of earlier crashed runs are removed first.
// Runs on the same Dir are serialised by a lock; a concurrent run fails.
// cfg must have passed Validate; the keyring file, if any, is read again
// after key rotation (seal.Config.RereadKeyring).
// While it runs, the process's Go memory limit (debug.SetMemoryLimit) is
// lowered to 32 MiB and its GC percentage (debug.SetGCPercent) to 10 unless
// they are already lower; both are restored afterwards.
func Create(ctx context.Context, cfg Config, log *zap.Logger) (Info, error) {
	return create(ctx, cfg, log, hooks{})
}

func create(ctx context.Context, cfg Config, log *zap.Logger, h hooks) (Info, error) {
	if strings.TrimSpace(cfg.Dir) == "" {
		return Info{}, fmt.Errorf("snapshot: no snapshot directory (SNAPVISOR_DIR is empty): use Stream to write to a remote")
	}
	h = h.withDefaults()
	defer LimitMemory(0)()
	sources, err := resolveSources(cfg.Sources)
	if err != nil {
		return Info{}, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return Info{}, fmt.Errorf("snapshot directory %s: %w", cfg.Dir, err)
	}
	if err := makeSnapshotDir(dir, log); err != nil {
		return Info{}, err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	removeLeftovers(dir, log)

	start := h.now().UTC()
	if err := rotateKeys(cfg.Encryption, dir, start, log); err != nil {
		log.Error("encryption key rotation failed; this snapshot uses the current key", zap.Error(err))
	}
	if cfg.Encryption, err = cfg.Encryption.RereadKeyring(); err != nil {
		return Info{}, err
	}
	final := cfg.NameAt(start).String()
	finalPath := filepath.Join(dir, final)
	if _, err := os.Lstat(finalPath); err == nil {
		return Info{}, fmt.Errorf("snapshot %s already exists (one snapshot per second and name)", finalPath)
	}
	log = log.With(zap.String("snapshot", final))

	tmp, err := fsx.CreateTemp(finalPath)
	if err != nil {
		return Info{}, fmt.Errorf("create temporary snapshot file: %w", err)
	}
	defer tmp.Discard()

	var skip devIno
	if fi, err := os.Stat(dir); err == nil {
		skip = statKey(fi)
	}
	info, err := write(ctx, cfg, sources, &writeback{f: tmp.File}, start, skip, log, h)
	if err == nil {
		err = tmp.Sync()
	}
	if err != nil {
		return Info{}, fmt.Errorf("snapshot %s: %w", finalPath, err)
	}
	if err := commit(dir, final, tmp, info.SHA256, h.syncDir, log); err != nil {
		return Info{}, fmt.Errorf("snapshot %s: %w", finalPath, err)
	}
	info.Path = finalPath
	log.Info("snapshot written", zap.String("path", finalPath), zap.Int64("size", info.Size), zap.Int64("files", info.Files),
		zap.Int64("bytes", info.Bytes), zap.Int64("changed", info.Changed), zap.Int64("skipped", info.Skipped),
		zap.Duration("elapsed", time.Since(start)), zap.Float64("mib_per_s", rate(info.Bytes, time.Since(start))))
	return info, nil
}

// Stream writes one snapshot of cfg.Sources, named for at (the caller has
// chosen its name, cfg.NameAt(at), before the upload starts), to w (a
// remote upload, say) and returns its Info with an empty Path: that name,
// its size and the sha256 of the bytes written. It needs no snapshot
// directory and takes no lock; w sees exactly the bytes Create would have
// put in the file. On error, what was written to w is not a snapshot.
// When w has a MemoryNeeded() int64 method (upload buffers), the memory
// limit set for the run makes room for that much on top. cfg must have
// passed Validate, as for Create.
func Stream(ctx context.Context, cfg Config, at time.Time, w io.Writer, log *zap.Logger) (Info, error) {
	return stream(ctx, cfg, at, w, log, hooks{})
}

func stream(ctx context.Context, cfg Config, at time.Time, w io.Writer, log *zap.Logger, h hooks) (Info, error) {
	h = h.withDefaults()
	var extra int64
	if m, ok := w.(interface{ MemoryNeeded() int64 }); ok {
		extra = m.MemoryNeeded()
	}
	defer LimitMemory(extra)()
	sources, err := resolveSources(cfg.Sources)
	if err != nil {
		return Info{}, err
	}
	start := at.UTC()
	// No snapshot directory tells which keys the (remote) snapshots use: rotation drops none here.
	if err := rotateKeys(cfg.Encryption, "", start, log); err != nil {
		log.Error("encryption key rotation failed; this snapshot uses the current key", zap.Error(err))
	}
	if cfg.Encryption, err = cfg.Encryption.RereadKeyring(); err != nil {
		return Info{}, err
	}
	log = log.With(zap.String("snapshot", cfg.NameAt(start).String()))
	info, err := write(ctx, cfg, sources, w, start, devIno{}, log, h)
	if err != nil {
		return Info{}, fmt.Errorf("snapshot %s: %w", cfg.NameAt(start), err)
	}
	log.Info("snapshot streamed", zap.Int64("size", info.Size), zap.Int64("files", info.Files),
		zap.Int64("bytes", info.Bytes), zap.Int64("changed", info.Changed), zap.Int64("skipped", info.Skipped),
		zap.Duration("elapsed", time.Since(start)), zap.Float64("mib_per_s", rate(info.Bytes, time.Since(start))))
	return info, nil
}

func (h hooks) withDefaults() hooks {
	if h.now == nil {
		h.now = time.Now
	}
	if h.syncDir == nil {
		h.syncDir = fsx.SyncDir
	}
	return h
}

// limitMemory sets, for the length of a run, the Go memory limit to
// heapLimit (or the lower limit already set) plus extra, the memory of the
// writer's own buffers, and the GC percentage to gcPercent unless it is
// already lower; the returned func restores both. It is the one place that
// sets the process's memory limit.
func LimitMemory(extra int64) (restore func()) {
	oldLimit := debug.SetMemoryLimit(-1)
	limit := min(oldLimit, heapLimit)
	if limit < math.MaxInt64-extra {
		limit += extra
	}
	if limit != oldLimit {
		debug.SetMemoryLimit(limit)
	}
	oldPercent := debug.SetGCPercent(gcPercent)
	if oldPercent >= 0 && oldPercent < gcPercent {
		debug.SetGCPercent(oldPercent)
	}
	return func() {
		debug.SetMemoryLimit(oldLimit)
		debug.SetGCPercent(oldPercent)
	}
}

// write is the pipeline every snapshot goes through: walk and tar framing on
// this goroutine, compression on the compressor's, then sha256 and dst. It
// returns the Info of what reached dst (no Path).
func write(ctx context.Context, cfg Config, sources []string, dst io.Writer, start time.Time, skip devIno, log *zap.Logger, h hooks) (Info, error) {
	log.Info("snapshot started", zap.Strings("sources", sources), zap.String("compression", cfg.Compression), zap.Int("level", cfg.level()))
	w := &walker{cfg: cfg, log: log, hooks: h, ctx: ctx, links: map[devIno]string{}, buf: make([]byte, copyBufSize), skipDir: skip}
	hasher := sha256.New()
	out := &fsx.CountingWriter{W: io.MultiWriter(dst, hasher)}
	sink, err := seal.NewWriter(out, cfg.Encryption) // passes through to out when not encrypted
	if err != nil {
		return Info{}, err
	}
	bw := bufio.NewWriterSize(sink, outBufSize)
	comp, err := newCompressor(cfg, bw)
	if err != nil {
		return Info{}, err
	}
	in := &fsx.CountingWriter{W: comp}
	w.tw = tar.NewWriter(in)
	if bwr, ok := comp.(*blockWriter); ok {
		w.space = bwr.space // tar passes content through to comp unchanged
	}

	progress.From(ctx).Track("snapshot", &in.N, -1)
	stopProgress := startProgress(log, "snapshot progress", h.progressInterval(cfg), &in.N, &out.N, start)
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
	if err == nil {
		err = sink.Close()
	}
	if err != nil {
		return Info{}, err
	}
	s := w.sum
	return Info{Name: cfg.NameAt(start).String(), Time: start.Truncate(time.Second), Size: out.N.Load(), Compression: cfg.Compression, Encryption: cfg.Encryption.Effective(),
		SHA256: hex.EncodeToString(hasher.Sum(nil)), Files: s.Files + s.Hardlinks, Bytes: s.Bytes, Changed: s.Changed, Skipped: s.Skipped}, nil
}

// commit writes <final>.sha256, then renames the archive tmp into place and
// fsyncs the directory. Once the archive has its name the snapshot is
// complete: a failing directory fsync is only warned about.
func commit(dir, final string, tmp *fsx.File, sum string, sync func(dir string) error, log *zap.Logger) error {
	finalPath := filepath.Join(dir, final)
	sumTmp, err := fsx.CreateTemp(finalPath + SumSuffix)
	if err != nil {
		return fmt.Errorf("create checksum file: %w", err)
	}
	defer sumTmp.Discard()
	_, err = sumTmp.Write(FormatSum(sum, final))
	if err == nil {
		err = sumTmp.CommitNoReplace()
	}
	if err != nil {
		return fmt.Errorf("write checksum file: %w", err)
	}
	if err := tmp.CommitNoReplace(); err != nil {
		os.Remove(finalPath + SumSuffix)
		return fmt.Errorf("rename into place: %w", err)
	}
	if err := sync(dir); err != nil {
		log.Warn("snapshot complete, but syncing its directory failed: a crash soon could lose its name", zap.String("dir", dir), zap.Error(err))
	}
	return nil
}

// makeSnapshotDir creates the snapshot directory 0700 (missing parents 0755)
// when it does not exist. An existing directory keeps its mode: it may be a
// volume shared on purpose, and the archives in it are 0600 anyway.
func makeSnapshotDir(dir string, log *zap.Logger) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("snapshot directory %s is not a directory", dir)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			log.Debug("snapshot directory is accessible to group or others; its mode is left as it is (archives are 0600)",
				zap.String("dir", dir), zap.String("mode", fi.Mode().Perm().String()))
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("snapshot directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create snapshot directory: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create snapshot directory: %w", err)
	}
	return nil
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
	unlock, err = flockDir(dir)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return nil, fmt.Errorf("snapshot directory %s is in use by another snapshot run", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("lock snapshot directory: %w", err)
	}
	return unlock, nil
}

// flockDir takes an exclusive, non-blocking flock on dir until unlock is
// called; held elsewhere, it fails with unix.EWOULDBLOCK.
func flockDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", dir, err)
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
		case IsTemp(n):
		case strings.HasSuffix(n, SumSuffix):
			if _, ok := ParseFileName(strings.TrimSuffix(n, SumSuffix)); !ok {
				continue
			}
			if _, err := os.Lstat(strings.TrimSuffix(p, SumSuffix)); !errors.Is(err, fs.ErrNotExist) {
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

// newCompressor returns the compressor writing to w; its memory depends
// neither on the data size nor on the core count.
func newCompressor(cfg Config, w io.Writer) (io.WriteCloser, error) {
	procs := runtime.GOMAXPROCS(0)
	switch cfg.Compression {
	case CompressionGzip:
		c, err := gzipCodec(cfg.level())
		if err != nil {
			return nil, fmt.Errorf("gzip writer: %w", err)
		}
		return newBlockWriter(w, c, min(procs, gzipWorkers), gzipBlockSize), nil
	case CompressionZstd:
		workers := min(procs, zstdWorkers)
		c, err := zstdCodec(cfg.level(), workers, zstdBlockSize)
		if err != nil {
			return nil, fmt.Errorf("zstd writer: %w", err)
		}
		return newBlockWriter(w, c, workers, zstdBlockSize), nil
	}
	return nopCloser{w}, nil
}

// writeback writes to f and starts the kernel's writeback of every
// writebackEvery bytes as soon as they are written, so that the fsync at the
// end has little left to wait for instead of the whole archive.
type writeback struct {
	f           *os.File
	off, kicked int64
}

func (w *writeback) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.kicked >= writebackEvery {
		// Asynchronous (SYNC_FILE_RANGE_WRITE only); an error shows in the final fsync.
		_ = unix.SyncFileRange(int(w.f.Fd()), w.kicked, w.off-w.kicked, unix.SYNC_FILE_RANGE_WRITE)
		w.kicked = w.off
	}
	return n, err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// progressInterval is how often a run of cfg logs its progress.
func (h hooks) progressInterval(cfg Config) time.Duration {
	switch {
	case h.progressEvery > 0:
		return h.progressEvery
	case cfg.ProgressInterval > 0:
		return cfg.ProgressInterval
	}
	return DefaultProgressInterval
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
