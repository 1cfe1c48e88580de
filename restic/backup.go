package restic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/restic/chunker"
	"go.uber.org/zap"

	"snapvisor/snapshot"
)

// BackupOptions say what one snapshot holds and how it is labelled.
type BackupOptions struct {
	Sources  []string                          // absolute directory paths
	Excluded func(base, rel, arch string) bool // nil: nothing excluded
	Host     string                            // the snapshot's hostname: parents are looked up by it
	Tags     []string
	Time     time.Time // the snapshot's time
	Version  string    // program_version
	// Timeout bounds each repository's part (SNAPVISOR_REMOTE_TIMEOUT): a
	// repository that hangs fails alone once it passes; 0: none.
	Timeout time.Duration
	Log     *zap.Logger
}

// BackupResult is one repository's outcome.
type BackupResult struct {
	Repo     *Repo
	Snapshot *Snapshot // nil when Err
	Err      error
}

// target is one repository a backup writes to.
type target struct {
	ctx    context.Context // ends at the repository's time limit
	repo   *Repo
	w      *writer
	parent *Snapshot
	failed atomic.Pointer[error]
	snap   *Snapshot // the snapshot written, once finished
}

func (t *target) fail(err error) {
	t.failed.CompareAndSwap(nil, &err)
}

// add stores a blob: compressed (z) in a repository of version 2, as it
// is (plain) in one of version 1, which has no compressed blobs (restic
// refuses such a repository's index).
func (t *target) add(ctx context.Context, bt BlobType, id ID, plain, z []byte) error {
	if t.repo.cfg.Version < 2 {
		return t.w.Add(ctx, bt, id, plain, 0)
	}
	return t.w.Add(ctx, bt, id, z, len(plain))
}

func (t *target) err() error {
	if p := t.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// Backup takes one snapshot of the sources into every repository. Content
// is read and chunked once per chunker polynomial (the repositories we
// initialise share one), compressed once, and encrypted for each
// repository. A repository that fails does not stop the others; Backup
// returns an error only when all failed or ctx ended. Each repository must
// have its index loaded (LoadIndex).
func Backup(ctx context.Context, repos []*Repo, opts BackupOptions) ([]BackupResult, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	groups := map[chunker.Pol][]*target{}
	var order []chunker.Pol
	all := make([]*target, len(repos))
	for i, r := range repos {
		x := r.index
		if x == nil {
			return nil, fmt.Errorf("%s: index not loaded", r.name)
		}
		t := &target{ctx: ctx, repo: r, w: newWriter(r, x)}
		if opts.Timeout > 0 {
			var cancel context.CancelFunc
			t.ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
			defer cancel()
		}
		all[i] = t
		pol := r.cfg.ChunkerPolynomial
		if groups[pol] == nil {
			order = append(order, pol)
		}
		groups[pol] = append(groups[pol], t)
	}
	paths := append([]string(nil), opts.Sources...)
	sort.Strings(paths)
	for _, t := range all {
		snaps, err := t.repo.Snapshots(t.ctx)
		if err != nil {
			t.fail(err)
			continue
		}
		t.parent = latest(snaps, opts.Host, paths, opts.Time)
	}
	for _, pol := range order {
		ts := live(groups[pol])
		if len(ts) == 0 {
			continue
		}
		b := &backup{opts: opts, pol: pol, targets: ts, start: time.Now()}
		b.run(ctx, paths)
	}
	res := make([]BackupResult, len(all))
	ok := 0
	for i, t := range all {
		res[i] = BackupResult{Repo: t.repo, Snapshot: t.snap, Err: t.err()}
		if res[i].Err == nil {
			ok++
		}
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if ok == 0 {
		return res, fmt.Errorf("no repository took the snapshot: %w", errors.Join(errsOf(res)...))
	}
	return res, nil
}

func errsOf(res []BackupResult) []error {
	var out []error
	for _, r := range res {
		if r.Err != nil {
			out = append(out, r.Err)
		}
	}
	return out
}

func live(ts []*target) []*target {
	var out []*target
	for _, t := range ts {
		if t.err() == nil {
			out = append(out, t)
		}
	}
	return out
}

// latest is the newest snapshot of host with exactly paths, not after now.
func latest(snaps []*Snapshot, host string, paths []string, now time.Time) *Snapshot {
	for i := len(snaps) - 1; i >= 0; i-- {
		s := snaps[i]
		if s.Hostname != host || s.Time.After(now) || s.Tree == nil {
			continue
		}
		p := append([]string(nil), s.Paths...)
		sort.Strings(p)
		if strings.Join(p, "\x00") == strings.Join(paths, "\x00") {
			return s
		}
	}
	return nil
}

// backup is one pass over the sources for the repositories sharing one
// chunker polynomial.
type backup struct {
	opts    BackupOptions
	pol     chunker.Pol
	targets []*target
	start   time.Time

	files  chan *fileJob
	blobs  chan *blobJob
	budget *budget

	stats struct {
		filesNew, filesChanged, filesUnmodified atomic.Uint64
		dirs                                    atomic.Uint64
		bytes                                   atomic.Uint64
	}
}

// fileJob is a file to read; done is closed once node.Content is final.
type fileJob struct {
	path string
	node *Node
	err  error
	done chan struct{}
}

// blobJob is a new chunk to compress and store in the repositories that need it.
type blobJob struct {
	id   ID
	data []byte
	to   []*target
}

// budget bounds the bytes of chunks in flight between reading and packing.
type budget struct {
	mu          sync.Mutex
	cond        *sync.Cond
	left, total int
}

func newBudget(n int) *budget {
	b := &budget{left: n, total: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *budget) take(n int) {
	b.mu.Lock()
	for b.left < n && b.left < b.total { // a chunk larger than the budget goes alone
		b.cond.Wait()
	}
	b.left -= n
	b.mu.Unlock()
}

func (b *budget) give(n int) {
	b.mu.Lock()
	b.left += n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// inFlight is the chunk bytes between reader and packer: enough to keep
// every core compressing, small against the 64 MiB bound.
const inFlight = 8 << 20

func (b *backup) run(ctx context.Context, paths []string) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.files = make(chan *fileJob, 64)
	b.blobs = make(chan *blobJob, 4)
	b.budget = newBudget(inFlight)
	var readers, packers sync.WaitGroup
	for range 2 { // two files read at once: restic's choice, measured there and here
		readers.Go(func() {
			rd := &reader{}
			for j := range b.files {
				j.err = b.readFile(ctx, rd, j)
				close(j.done)
			}
		})
	}
	for range runtime.GOMAXPROCS(0) {
		packers.Go(func() {
			var buf []byte
			for j := range b.blobs {
				if cap(buf) > 2<<20 {
					buf = nil // once a large chunk passed (zeros), give its buffer back
				}
				buf = encoder().EncodeAll(j.data, buf[:0])
				for _, t := range j.to {
					if t.err() != nil {
						continue
					}
					if err := t.add(t.ctx, DataBlob, j.id, j.data, buf); err != nil {
						t.fail(err)
					}
				}
				b.budget.give(cap(j.data))
				putChunkBuffer(j.data)
			}
		})
	}
	// The process's memory stays flat: chunks in flight, packs being
	// filled and uploaded, for every repository.
	defer snapshot.LimitMemory(int64(inFlight + 2*packBufferSize*len(b.targets)))()
	root, err := b.rootTree(ctx, paths)
	close(b.files)
	readers.Wait()
	close(b.blobs)
	packers.Wait()
	if err != nil {
		for _, t := range b.targets {
			t.fail(err)
		}
		for _, t := range b.targets {
			t.w.Abandon()
		}
		return
	}
	for _, t := range b.targets {
		if t.err() != nil {
			t.w.Abandon()
			continue
		}
		b.finish(ctx, t, root, paths)
	}
}

// finish flushes t's packs and index and writes its snapshot file.
func (b *backup) finish(ctx context.Context, t *target, root ID, paths []string) {
	if err := t.w.Flush(t.ctx); err != nil {
		t.fail(err)
		return
	}
	sn := &Snapshot{Time: b.opts.Time, Tree: &root, Paths: paths, Hostname: b.opts.Host, Username: username(),
		UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Tags: b.opts.Tags, ProgramVersion: b.opts.Version}
	if t.parent != nil {
		p := t.parent.ID
		sn.Parent = &p
	}
	sn.Summary = &SnapshotSummary{
		BackupStart: b.start, BackupEnd: time.Now(),
		FilesNew: uint(b.stats.filesNew.Load()), FilesChanged: uint(b.stats.filesChanged.Load()), FilesUnmodified: uint(b.stats.filesUnmodified.Load()),
		DataBlobs: t.w.blobsNew, DataAdded: uint64(t.w.addedRaw), DataAddedPacked: uint64(t.w.added),
		TotalFilesProcessed: uint(b.stats.filesNew.Load() + b.stats.filesChanged.Load() + b.stats.filesUnmodified.Load()),
		TotalBytesProcessed: b.stats.bytes.Load(),
	}
	id, err := t.repo.SaveJSON(t.ctx, SnapshotFile, sn)
	if err != nil {
		t.fail(err)
		return
	}
	sn.ID = id
	t.snap = sn
}

// rootTree builds the snapshot's root tree: the sources with their parent
// directories, as restic records absolute paths.
func (b *backup) rootTree(ctx context.Context, paths []string) (ID, error) {
	type dirent struct {
		children map[string]*dirent
		source   string // set when this path is a source
	}
	top := &dirent{children: map[string]*dirent{}}
	for _, p := range paths {
		d := top
		for _, part := range strings.Split(strings.Trim(filepath.Clean(p), "/"), "/") {
			c := d.children[part]
			if c == nil {
				c = &dirent{children: map[string]*dirent{}}
				d.children[part] = c
			}
			d = c
		}
		d.source = p
	}
	parents := make([]*Tree, len(b.targets))
	for i, t := range b.targets {
		if t.parent != nil {
			parents[i], _ = t.repo.LoadTree(t.ctx, t.repo.index, *t.parent.Tree) // no parent tree: everything is read
		}
	}
	var build func(d *dirent, dir string, parents []*Tree) (ID, error)
	build = func(d *dirent, dir string, parents []*Tree) (ID, error) {
		tree := &Tree{}
		for name, c := range d.children {
			p := filepath.Join(dir, name)
			sub := b.subParents(ctx, parents, name)
			// A source, and every directory on the way to it, is recorded
			// where a symlink points (as the restic CLI records them).
			fi, err := os.Stat(p)
			if err != nil {
				return ID{}, fmt.Errorf("source: %w", err)
			}
			n, err := nodeOf(name, p, fi)
			if err != nil {
				return ID{}, err
			}
			if n.Type != "dir" {
				return ID{}, fmt.Errorf("source %s is not a directory", p)
			}
			var id ID
			if c.source != "" {
				id, err = b.dir(ctx, p, c.source, "", sub)
			} else {
				id, err = build(c, p, sub)
			}
			if err != nil {
				return ID{}, err
			}
			n.Subtree = &id
			tree.Nodes = append(tree.Nodes, n)
		}
		return b.saveTree(ctx, tree)
	}
	return build(top, "/", parents)
}

func (b *backup) subParents(ctx context.Context, parents []*Tree, name string) []*Tree {
	out := make([]*Tree, len(parents))
	for i, pt := range parents {
		if pt == nil {
			continue
		}
		if n := pt.Find(name); n != nil && n.Type == "dir" && n.Subtree != nil {
			out[i], _ = b.targets[i].repo.LoadTree(ctx, b.targets[i].repo.index, *n.Subtree)
		}
	}
	return out
}

// dir saves the tree of directory p (rel: its path inside source src) and
// everything below it.
func (b *backup) dir(ctx context.Context, p, src, rel string, parents []*Tree) (ID, error) {
	if err := ctx.Err(); err != nil {
		return ID{}, err
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		return ID{}, err
	}
	b.stats.dirs.Add(1)
	tree := &Tree{Nodes: make([]*Node, 0, len(ents))}
	var jobs []*fileJob
	base := filepath.Base(src)
	for _, e := range ents {
		name := e.Name()
		r := name
		if rel != "" {
			r = rel + "/" + name
		}
		if b.opts.Excluded != nil && b.opts.Excluded(name, r, base+"/"+r) {
			continue
		}
		cp := filepath.Join(p, name)
		fi, err := os.Lstat(cp)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed while we walked
		}
		if err != nil {
			return ID{}, err
		}
		n, err := nodeOf(name, cp, fi)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return ID{}, err
		}
		tree.Nodes = append(tree.Nodes, n)
		switch n.Type {
		case "dir":
			id, err := b.dir(ctx, cp, src, r, b.subParents(ctx, parents, name))
			if err != nil {
				return ID{}, err
			}
			n.Subtree = &id
		case "file":
			if content, ok := b.reuse(n, parents); ok {
				n.Content = content
				b.stats.filesUnmodified.Add(1)
				b.stats.bytes.Add(n.Size)
				continue
			}
			j := &fileJob{path: cp, node: n, done: make(chan struct{})}
			if b.known(parents, name) {
				b.stats.filesChanged.Add(1)
			} else {
				b.stats.filesNew.Add(1)
			}
			jobs = append(jobs, j)
			select {
			case b.files <- j:
			case <-ctx.Done():
				return ID{}, ctx.Err()
			}
		}
	}
	for _, j := range jobs {
		<-j.done
		if j.err != nil {
			return ID{}, j.err
		}
	}
	return b.saveTree(ctx, tree)
}

func (b *backup) known(parents []*Tree, name string) bool {
	for _, pt := range parents {
		if pt != nil && pt.Find(name) != nil {
			return true
		}
	}
	return false
}

// reuse returns the parent snapshot's content of an unchanged file: when
// every repository's parent has it unchanged and holds all its blobs.
func (b *backup) reuse(n *Node, parents []*Tree) ([]ID, bool) {
	var content []ID
	for i, pt := range parents {
		if pt == nil {
			return nil, false
		}
		old := pt.Find(n.Name)
		if !unchanged(n, old) {
			return nil, false
		}
		if content == nil {
			content = old.Content
		}
		for _, id := range content {
			if !b.targets[i].repo.index.Has(DataBlob, id) {
				return nil, false
			}
		}
	}
	return content, content != nil
}

// chunkBuffers recycles the buffers chunks are read into and handed from
// the readers to the packers. The chunker appends a chunk to the buffer it
// is given, growing it for a chunk above its capacity: buffers are 1 MiB
// (restic's average chunk), and a grown one (a large chunk, as long runs of
// zeros make) is left to the collector, so that what stays resident is
// near the bytes actually in flight rather than the 8 MiB maximum per buffer.
var chunkBuffers sync.Pool

const chunkBufferSize = 1 << 20

func chunkBuffer() []byte {
	if b, ok := chunkBuffers.Get().([]byte); ok {
		return b[:0]
	}
	return make([]byte, 0, chunkBufferSize)
}

func putChunkBuffer(b []byte) {
	if cap(b) <= 2*chunkBufferSize {
		//lint:ignore SA6002 the slice header Put boxes is 24 bytes per 1 MiB buffer
		chunkBuffers.Put(b[:0])
	}
}

// reader is one file reader's reusable chunker.
type reader struct {
	c *chunker.Chunker
}

// readFile chunks one file and queues its new chunks; node.Content and
// node.Size come from what was read.
func (b *backup) readFile(ctx context.Context, rd *reader, j *fileJob) error {
	f, err := os.OpenFile(j.path, os.O_RDONLY|syscall.O_NOATIME, 0)
	if err != nil {
		f, err = os.Open(j.path)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed since it was listed: its node stays with no content, size 0
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if rd.c == nil {
		rd.c = chunker.New(f, b.pol)
	} else {
		rd.c.Reset(f, b.pol)
	}
	c := rd.c
	buf := chunkBuffer()
	defer func() { putChunkBuffer(buf) }()
	var size uint64
	content := []ID{}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ch, err := c.Next(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", j.path, err)
		}
		id := Hash(ch.Data)
		content = append(content, id)
		size += uint64(ch.Length)
		var to []*target
		for _, t := range b.targets {
			if t.err() == nil && t.w.Claim(DataBlob, id) {
				to = append(to, t)
			}
		}
		if len(to) == 0 {
			buf = ch.Data // read the next chunk into the same buffer
			if cap(buf) > 2*chunkBufferSize {
				buf = chunkBuffer()
			}
			continue
		}
		b.budget.take(cap(ch.Data)) // the memory it holds, not only its length
		buf = chunkBuffer()         // ch.Data goes to a packer, which gives it back
		select {
		case b.blobs <- &blobJob{id: id, data: ch.Data, to: to}:
		case <-ctx.Done():
			b.budget.give(cap(ch.Data))
			putChunkBuffer(ch.Data)
			return ctx.Err()
		}
	}
	j.node.Content, j.node.Size = content, size
	b.stats.bytes.Add(size)
	return nil
}

// saveTree encodes a tree and stores it where it is new.
func (b *backup) saveTree(ctx context.Context, t *Tree) (ID, error) {
	data, err := encodeTree(t)
	if err != nil {
		return ID{}, err
	}
	id := Hash(data)
	var z []byte
	for _, tg := range b.targets {
		if tg.err() != nil || !tg.w.Claim(TreeBlob, id) {
			continue
		}
		if z == nil {
			z = encoder().EncodeAll(data, nil)
		}
		if err := tg.add(tg.ctx, TreeBlob, id, data, z); err != nil {
			tg.fail(err)
		}
	}
	if len(live(b.targets)) == 0 {
		return ID{}, errors.Join(errsOfTargets(b.targets)...)
	}
	return id, nil
}

func errsOfTargets(ts []*target) []error {
	var out []error
	for _, t := range ts {
		if err := t.err(); err != nil {
			out = append(out, fmt.Errorf("%s: %w", t.repo.name, err))
		}
	}
	return out
}
