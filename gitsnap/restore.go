package gitsnap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"snapvisor/snapshot"
)

// ErrDamaged is wrapped by errors reporting an object that is missing or
// whose content does not hash to its name.
var ErrDamaged = errors.New("damaged")

// RestoreStats counts what a restore wrote.
type RestoreStats struct {
	Files, Dirs, Links int64
	Bytes              int64
}

// Restore restores commit h into the sources of cfg exactly as an archive
// restore does (snapshot.RestoreWith: staged beside each source, synced,
// swapped; nothing changed unless every object read hashed right). Files
// get the modes, owners (as root) and times of the metadata file; a commit
// without one (made by another tool) gets Git's modes and the commit's time.
func (r *Repo) Restore(ctx context.Context, h plumbing.Hash, cfg snapshot.Config, opts snapshot.RestoreOptions, log *zap.Logger) (RestoreStats, error) {
	var st RestoreStats
	c, err := r.commit(h)
	if err != nil {
		return st, err
	}
	root, err := r.tree(c.TreeHash)
	if err != nil {
		return st, err
	}
	var hdr metaHeader
	var meta []metaEntry
	hasMeta := false
	if e, err := root.FindEntry(MetaFile); err == nil {
		var b strings.Builder
		if err := r.readBlob(e.Hash, &b); err != nil {
			return st, err
		}
		if hdr, meta, err = decodeMeta(strings.NewReader(b.String())); err != nil {
			return st, fmt.Errorf("commit %s: %w", h, err)
		}
		hasMeta = true
	}
	what := fmt.Sprintf("git commit %s of %s", h.String()[:7], r.path)
	fill := func(ctx context.Context, staging map[string]string) error {
		for _, src := range cfg.Sources {
			base := filepath.Base(filepath.Clean(src))
			into, ok := staging[base]
			if !ok {
				continue
			}
			sub, prefix, err := r.sourceTree(root, hdr, hasMeta, base, len(cfg.Sources))
			if err != nil {
				return err
			}
			w := &writer{r: r, ctx: ctx, st: &st, chown: os.Geteuid() == 0, when: c.Committer.When, links: map[string]string{}}
			for _, e := range meta {
				if e.Hardlink != "" && under(e.Path, prefix) {
					w.links[rel(e.Path, prefix)] = rel(e.Hardlink, prefix)
				}
			}
			if w.root, err = os.OpenRoot(into); err != nil {
				return err
			}
			err = w.tree(sub, ".")
			if err == nil {
				err = w.hardlinks()
			}
			if err == nil {
				err = w.apply(meta, prefix, hasMeta)
			}
			w.root.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
	start := time.Now()
	if err := snapshot.RestoreWith(ctx, cfg, what, fill, opts, log); err != nil {
		return st, err
	}
	log.Info("restore complete", zap.String("commit", h.String()), zap.Strings("targets", cfg.Sources), zap.Int64("files", st.Files),
		zap.Int64("bytes", st.Bytes), zap.Duration("elapsed", time.Since(start)))
	return st, nil
}

// sourceTree picks the tree of the source named base: the root when the
// snapshot was of one source, else its top-level directory. prefix is the
// source's path in the metadata ("." or base).
func (r *Repo) sourceTree(root *object.Tree, hdr metaHeader, hasMeta bool, base string, nsources int) (*object.Tree, string, error) {
	tops := hdr.Tops
	if !hasMeta {
		tops = nsources > 1
	}
	if !tops {
		if nsources > 1 {
			return nil, "", fmt.Errorf("the commit holds one source (%s) and SNAPVISOR_SOURCE names %d", strings.Join(hdr.Sources, ","), nsources)
		}
		return root, ".", nil
	}
	e, err := root.FindEntry(base)
	if err != nil || e.Mode != filemode.Dir {
		if hasMeta && containsStr(hdr.Sources, base) {
			return &object.Tree{}, base, nil // an empty source
		}
		return nil, "", fmt.Errorf("the commit has no directory %q for a source (it holds %s)", base, strings.Join(hdr.Sources, ", "))
	}
	t, err := r.tree(e.Hash)
	return t, base, err
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// under reports whether metadata path p lies in the source at prefix.
func under(p, prefix string) bool {
	return prefix == "." || p == prefix || strings.HasPrefix(p, prefix+"/")
}

// rel is metadata path p relative to the source at prefix ("." itself).
func rel(p, prefix string) string {
	if prefix == "." {
		return p
	}
	if p == prefix {
		return "."
	}
	return strings.TrimPrefix(p, prefix+"/")
}

// commit reads and checks one commit object.
func (r *Repo) commit(h plumbing.Hash) (*object.Commit, error) {
	o, err := r.verified(h, plumbing.CommitObject)
	if err != nil {
		return nil, err
	}
	return object.DecodeCommit(r.st, o)
}

func (r *Repo) tree(h plumbing.Hash) (*object.Tree, error) {
	o, err := r.verified(h, plumbing.TreeObject)
	if err != nil {
		return nil, err
	}
	return object.DecodeTree(r.st, o)
}

// verified reads object h of type t, checking that its content hashes to h.
func (r *Repo) verified(h plumbing.Hash, t plumbing.ObjectType) (plumbing.EncodedObject, error) {
	o, err := r.st.EncodedObject(t, h)
	if err != nil {
		return nil, missing(r, t, h, err)
	}
	if err := r.checkHash(o, io.Discard); err != nil {
		return nil, err
	}
	return o, nil
}

// checkHash streams o's content to w while hashing it.
func (r *Repo) checkHash(o plumbing.EncodedObject, w io.Writer) error {
	rd, err := o.Reader()
	if err != nil {
		return fmt.Errorf("%s %s in %s: %w", o.Type(), o.Hash(), r.path, err)
	}
	defer rd.Close()
	hs := plumbing.NewHasher(o.Type(), o.Size())
	n, err := io.Copy(io.MultiWriter(hs, w), rd)
	if err != nil {
		return fmt.Errorf("%s %s in %s: %w", o.Type(), o.Hash(), r.path, err)
	}
	if n != o.Size() || hs.Sum() != o.Hash() {
		return fmt.Errorf("%s %s in %s is %w: its content hashes to %s (%d of %d bytes)", o.Type(), o.Hash(), r.path, ErrDamaged, hs.Sum(), n, o.Size())
	}
	return nil
}

// readBlob streams blob h to w, verified.
func (r *Repo) readBlob(h plumbing.Hash, w io.Writer) error {
	o, err := r.st.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return missing(r, plumbing.BlobObject, h, err)
	}
	return r.checkHash(o, w)
}

// missing reports an object that cannot be read: ErrDamaged when it is
// not there (or undecodable), the error as it is otherwise.
func missing(r *Repo, t plumbing.ObjectType, h plumbing.Hash, err error) error {
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return fmt.Errorf("%s %s in %s: %w: missing", t, h, r.path, ErrDamaged)
	}
	return fmt.Errorf("%s %s in %s: %w", t, h, r.path, err)
}

// writer writes one source's tree into its staging directory; every path
// goes through root, so no entry (a hostile tree's "..", a symlink
// planted before a path through it) writes outside the staging directory.
type writer struct {
	r     *Repo
	ctx   context.Context
	root  *os.Root
	st    *RestoreStats
	chown bool
	when  time.Time
	links map[string]string // path → the path it is a hard link of
}

func validName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\x00")
}

func (w *writer) tree(t *object.Tree, dir string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	for _, e := range t.Entries {
		if !validName(e.Name) {
			return fmt.Errorf("%w: tree entry %q in %s", snapshot.ErrRefused, e.Name, dir)
		}
		p := path.Join(dir, e.Name)
		if dir == "." && e.Name == MetaFile {
			continue
		}
		switch e.Mode {
		case filemode.Dir:
			if err := w.root.Mkdir(p, 0o700); err != nil {
				return err
			}
			w.st.Dirs++
			sub, err := w.r.tree(e.Hash)
			if err != nil {
				return err
			}
			if err := w.tree(sub, p); err != nil {
				return err
			}
		case filemode.Symlink:
			var b strings.Builder
			if err := w.r.readBlob(e.Hash, &b); err != nil {
				return err
			}
			if err := w.root.Symlink(b.String(), p); err != nil {
				return err
			}
			w.st.Links++
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			if _, ok := w.links[p]; ok {
				continue // made by hardlinks
			}
			perm := os.FileMode(0o644)
			if e.Mode == filemode.Executable {
				perm = 0o755
			}
			f, err := w.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
			if err != nil {
				return err
			}
			cw := &countWriter{w: f}
			err = w.r.readBlob(e.Hash, cw)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			w.st.Files++
			w.st.Bytes += cw.n
		case filemode.Submodule:
			// A commit of another repository: nothing to write.
		default:
			return fmt.Errorf("%w: tree entry %s has mode %o", snapshot.ErrRefused, p, e.Mode)
		}
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// hardlinks makes the files the metadata names as hard links of others.
func (w *writer) hardlinks() error {
	for p, target := range w.links {
		if err := w.root.Link(target, p); err != nil {
			return fmt.Errorf("hard link %s of %s: %w", p, target, err)
		}
		w.st.Files++
	}
	return nil
}

// apply creates the directories the metadata lists (empty ones included)
// and sets every entry's owner, mode and times, children before their
// directories (a directory's mtime changes as entries are made in it).
func (w *writer) apply(meta []metaEntry, prefix string, hasMeta bool) error {
	if !hasMeta {
		return nil
	}
	var mine []metaEntry
	for _, e := range meta {
		if under(e.Path, prefix) {
			e.Path = rel(e.Path, prefix)
			if e.Path != "." {
				for _, part := range strings.Split(e.Path, "/") {
					if !validName(part) {
						return fmt.Errorf("%w: metadata path %q", snapshot.ErrRefused, e.Path)
					}
				}
			}
			mine = append(mine, e)
		}
	}
	for _, e := range mine {
		if e.Type == typeDir && e.Path != "." {
			if err := w.root.MkdirAll(e.Path, 0o700); err != nil {
				return err
			}
		}
	}
	// Deepest first: sorted paths reversed put every child before its parent.
	for i := len(mine) - 1; i >= 0; i-- {
		if err := w.set(mine[i]); err != nil {
			return err
		}
	}
	return nil
}

// set applies one entry's metadata: owner, then mode (chown clears setuid),
// then times; a symlink's without following it.
func (w *writer) set(e metaEntry) error {
	fi, err := w.root.Lstat(e.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // left out of the tree (e.g. by the size guard)
	}
	if err != nil {
		return err
	}
	link := fi.Mode()&os.ModeSymlink != 0
	if link != (e.Type == typeSymlink) || fi.IsDir() != (e.Type == typeDir) {
		return fmt.Errorf("metadata of %s says %s, the tree holds a %s", e.Path, e.Type, fi.Mode().Type())
	}
	mode, err := e.mode()
	if err != nil {
		return err
	}
	mt, err := e.mtime()
	if err != nil {
		return err
	}
	if w.chown {
		if err := w.root.Lchown(e.Path, e.UID, e.GID); err != nil {
			return err
		}
	}
	if !link {
		if err := w.root.Chmod(e.Path, os.FileMode(mode&0o777)|specialBits(mode)); err != nil {
			return err
		}
	}
	// os.Root's Chtimes follows symlinks: the symlink's own time is set
	// through its directory's descriptor.
	dir, base := path.Split(e.Path)
	if dir == "" {
		dir = "."
	}
	if e.Path == "." {
		dir, base = ".", "."
	}
	d, err := w.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	ts := []unix.Timespec{unix.NsecToTimespec(mt.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
	if err := unix.UtimesNanoAt(int(d.Fd()), base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("times of %s: %w", e.Path, err)
	}
	return nil
}

// specialBits converts the setuid, setgid and sticky bits to os.FileMode's.
func specialBits(m uint32) os.FileMode {
	var out os.FileMode
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// RestoreNewest restores commit h, or, while a commit's objects are
// damaged or missing (ErrDamaged), its first parent, up to 10 commits; it
// returns the commit restored. Any other fault stops it: it is not the
// commit's.
func (r *Repo) RestoreNewest(ctx context.Context, h plumbing.Hash, cfg snapshot.Config, opts snapshot.RestoreOptions, log *zap.Logger) (plumbing.Hash, error) {
	var tried []error
	for !h.IsZero() && len(tried) < 10 {
		_, err := r.Restore(ctx, h, cfg, opts, log)
		if err == nil {
			return h, nil
		}
		if !errors.Is(err, ErrDamaged) {
			return h, err
		}
		tried = append(tried, err)
		log.Warn("restore: commit damaged or incomplete, trying its parent", zap.String("commit", h.String()), zap.Error(err))
		if h, err = r.Parent(h); err != nil {
			tried = append(tried, err)
			break
		}
	}
	return h, fmt.Errorf("none of %d commits restored: %w", len(tried), errors.Join(tried...))
}
