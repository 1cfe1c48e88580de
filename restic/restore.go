package restic

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"snapvisor/snapshot"
)

// FindPath returns the node at the absolute path p inside snapshot sn's
// tree (a directory of its Paths), or an error naming what is missing.
func (r *Repo) FindPath(ctx context.Context, x *Index, sn *Snapshot, p string) (*Node, error) {
	if sn.Tree == nil {
		return nil, fmt.Errorf("snapshot %s has no tree", sn.ID.Str())
	}
	id := *sn.Tree
	var n *Node
	for _, part := range strings.Split(strings.Trim(path.Clean(p), "/"), "/") {
		t, err := r.LoadTree(ctx, x, id)
		if err != nil {
			return nil, err
		}
		n = t.Find(part)
		if n == nil {
			return nil, fmt.Errorf("snapshot %s holds no %s", sn.ID.Str(), p)
		}
		if n.Type != "dir" || n.Subtree == nil {
			return nil, fmt.Errorf("snapshot %s: %s is a %s, not a directory", sn.ID.Str(), p, n.Type)
		}
		id = *n.Subtree
	}
	return n, nil
}

// RestoreStats counts what a restore wrote.
type RestoreStats struct {
	Files, Dirs, Links int64
	Bytes              int64
}

// RestoreOptions tune RestoreTree.
type RestoreOptions struct {
	Chown bool // restore uid/gid (needs root)
	// Progress, when set, is called with the bytes written so far.
	Progress *atomic.Int64
}

// dest is where one blob goes: a file and an offset in it.
type dest struct {
	file *restoreFile
	off  int64
}

type restoreFile struct {
	path string
	node *Node
	left atomic.Int64 // blobs still to write
}

type restorer struct {
	r     *Repo
	x     *Index
	opts  RestoreOptions
	packs map[ID]map[ID][]dest // pack -> blob -> destinations
	files []*restoreFile
	metas []metaJob // directories and other entries, in creation order
	links map[[2]uint64]string
	stats RestoreStats
}

type metaJob struct {
	path string
	node *Node
}

// RestoreTree writes directory node dir (from FindPath) into the existing,
// empty directory into: every entry with its content, modes, times,
// ownership (opts.Chown), symlinks and hardlinks; the directory's own
// metadata last. Every blob is authenticated and checked against its ID;
// a missing or damaged pack is an error naming it, and what was written is
// then the caller's to remove (restore stages into a directory it discards).
func (r *Repo) RestoreTree(ctx context.Context, x *Index, dir *Node, into string, opts RestoreOptions) (RestoreStats, error) {
	rs := &restorer{r: r, x: x, opts: opts, packs: map[ID]map[ID][]dest{}, links: map[[2]uint64]string{}}
	if err := rs.plan(ctx, *dir.Subtree, into); err != nil {
		return rs.stats, err
	}
	if err := rs.fetch(ctx); err != nil {
		return rs.stats, err
	}
	// Metadata: files first, then everything else deepest last-created first
	// (a directory's times after its entries were written).
	for _, f := range rs.files {
		if err := rs.meta(f.path, f.node); err != nil {
			return rs.stats, err
		}
	}
	for i := len(rs.metas) - 1; i >= 0; i-- {
		if err := rs.meta(rs.metas[i].path, rs.metas[i].node); err != nil {
			return rs.stats, err
		}
	}
	if err := rs.meta(into, dir); err != nil {
		return rs.stats, err
	}
	return rs.stats, nil
}

// plan creates the tree's directories, symlinks and special files, creates
// every file at its size, and records where each blob goes.
func (rs *restorer) plan(ctx context.Context, tree ID, dir string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := rs.r.LoadTree(ctx, rs.x, tree)
	if err != nil {
		return err
	}
	for _, n := range t.Nodes {
		if n.Name == "" || n.Name == "." || n.Name == ".." || strings.ContainsRune(n.Name, '/') {
			return fmt.Errorf("tree %s: entry name %q: refused", tree.Str(), n.Name)
		}
		p := filepath.Join(dir, n.Name)
		switch n.Type {
		case "dir":
			if n.Subtree == nil {
				return fmt.Errorf("tree %s: directory %s has no subtree", tree.Str(), n.Name)
			}
			if err := os.Mkdir(p, 0o700); err != nil {
				return err
			}
			rs.stats.Dirs++
			rs.metas = append(rs.metas, metaJob{p, n})
			if err := rs.plan(ctx, *n.Subtree, p); err != nil {
				return err
			}
		case "file":
			if err := rs.file(p, n); err != nil {
				return err
			}
		case "symlink":
			target := n.LinkTarget
			if n.LinkTargetRaw != nil {
				target = string(n.LinkTargetRaw)
			}
			if err := os.Symlink(target, p); err != nil {
				return err
			}
			rs.metas = append(rs.metas, metaJob{p, n})
		case "fifo":
			if err := unix.Mkfifo(p, 0o600); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			rs.metas = append(rs.metas, metaJob{p, n})
		case "dev", "chardev":
			mode := uint32(unix.S_IFBLK)
			if n.Type == "chardev" {
				mode = unix.S_IFCHR
			}
			if err := unix.Mknod(p, mode|0o600, int(n.Device)); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			rs.metas = append(rs.metas, metaJob{p, n})
		case "socket":
			// A socket is made by its server; restic skips it too.
		default:
			return fmt.Errorf("tree %s: %s has unknown type %q", tree.Str(), n.Name, n.Type)
		}
	}
	return nil
}

func (rs *restorer) file(p string, n *Node) error {
	if n.Links > 1 {
		k := [2]uint64{n.DeviceID, n.Inode}
		if first, ok := rs.links[k]; ok {
			rs.stats.Links++
			return os.Link(first, p)
		}
		rs.links[k] = p
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	var size int64
	rf := &restoreFile{path: p, node: n}
	for _, id := range n.Content {
		b, ok := rs.x.Lookup(DataBlob, id)
		if !ok {
			f.Close()
			return fmt.Errorf("%s: data blob %s: %w: in no index (an index file or pack deleted?)", p, id.Str(), ErrMissing)
		}
		m := rs.packs[b.Pack]
		if m == nil {
			m = map[ID][]dest{}
			rs.packs[b.Pack] = m
		}
		m[id] = append(m[id], dest{file: rf, off: size})
		size += int64(b.PlainLength())
		rf.left.Add(1)
	}
	if size > 0 {
		err = f.Truncate(size)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	rs.files = append(rs.files, rf)
	rs.stats.Files++
	rs.stats.Bytes += size
	return err
}

// restoreWorkers packs are read at once: I/O waits on a remote overlap,
// and each holds one pack (ours 4 MiB, the restic CLI's up to 16 MiB) and
// one blob in memory.
var restoreWorkers = max(2, runtime.GOMAXPROCS(0))

// fetch reads every needed pack once and writes its blobs where they go.
func (rs *restorer) fetch(ctx context.Context) error {
	ids := sortedIDs(rs.packs)
	// The process's memory stays flat: packs and blobs are garbage at once.
	defer snapshot.LimitMemory(int64(restoreWorkers) * 2 * packBufferSize)()
	return each(ctx, restoreWorkers, len(ids), func(ctx context.Context, i int) error { return rs.pack(ctx, ids[i]) })
}

// each calls fn for 0..n-1 on workers goroutines; the first error stops the
// others (their ctx ends) and is returned.
func each(ctx context.Context, workers, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

func (rs *restorer) pack(ctx context.Context, id ID) error {
	data, err := rs.r.get(ctx, key(PackFile, id))
	if err != nil {
		return fmt.Errorf("%s: %s: %w", rs.r.name, key(PackFile, id), err)
	}
	need := rs.packs[id]
	blobs := make([]Blob, 0, len(need))
	for bid := range need {
		b, _ := rs.x.Lookup(DataBlob, bid) // plan grouped blobs by this very entry's pack
		blobs = append(blobs, b)
	}
	sort.Slice(blobs, func(i, j int) bool { return blobs[i].Offset < blobs[j].Offset })
	for _, b := range blobs {
		plain, err := rs.r.blobAt(b, data)
		if err != nil {
			return err
		}
		for _, d := range need[b.ID] {
			if err := writeAt(d.file.path, plain, d.off); err != nil {
				return err
			}
			if rs.opts.Progress != nil {
				rs.opts.Progress.Add(int64(len(plain)))
			}
		}
	}
	return nil
}

func writeAt(p string, b []byte, off int64) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(b, off)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// meta applies a node's ownership, mode and times to p.
func (rs *restorer) meta(p string, n *Node) error {
	if rs.opts.Chown {
		if err := os.Lchown(p, int(n.UID), int(n.GID)); err != nil {
			return err
		}
	}
	if n.Type != "symlink" {
		if err := os.Chmod(p, n.Mode&os.ModePerm|n.Mode&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky)); err != nil {
			return err
		}
	}
	at, mt := n.AccessTime, n.ModTime
	if at.IsZero() {
		at = mt
	}
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.ENOTSUP) {
		return fmt.Errorf("%s: set times: %w", p, err)
	}
	return nil
}
