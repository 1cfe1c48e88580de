package gitsnap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
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
// without one (made by another tool), or an entry it changed, gets Git's
// modes (0644, 0755 for an executable or a directory) and the commit's time.
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
			w, err := newWriter(r, ctx, &st, meta, prefix, hasMeta)
			if err != nil {
				return err
			}
			w.when = c.Committer.When
			err = w.restore(into, sub)
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
		return fmt.Errorf("%s %s in %s is %w: %w", o.Type(), o.Hash(), r.path, ErrDamaged, err)
	}
	defer rd.Close()
	hs := newHasher(o.Type(), o.Size())
	n, err := io.Copy(io.MultiWriter(hs, w), readSide{rd})
	var re readError
	if errors.As(err, &re) {
		// The object's bytes (a zlib stream, a pack entry) are corrupt.
		return fmt.Errorf("%s %s in %s is %w: %w", o.Type(), o.Hash(), r.path, ErrDamaged, re.err)
	}
	if err != nil { // the writer's: where the content goes (a full disk, say)
		return fmt.Errorf("%s %s in %s: %w", o.Type(), o.Hash(), r.path, err)
	}
	if got := sum(hs); n != o.Size() || got != o.Hash() {
		return fmt.Errorf("%s %s in %s is %w: its content hashes to %s (%d of %d bytes)", o.Type(), o.Hash(), r.path, ErrDamaged, got, n, o.Size())
	}
	return nil
}

// readSide marks the errors of reading an object apart from those of
// writing its content out.
type readSide struct{ r io.Reader }

type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }

func (s readSide) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = readError{err}
	}
	return n, err
}

// readBlob streams blob h to w, verified.
func (r *Repo) readBlob(h plumbing.Hash, w io.Writer) error {
	o, err := r.st.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return missing(r, plumbing.BlobObject, h, err)
	}
	return r.checkHash(o, w)
}

// missing reports an object that cannot be read from the repository:
// ErrDamaged, whether it is not there or not decodable.
func missing(r *Repo, t plumbing.ObjectType, h plumbing.Hash, err error) error {
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return fmt.Errorf("%s %s in %s: %w: missing", t, h, r.path, ErrDamaged)
	}
	// Found but not decodable: a corrupt pack entry or zlib stream.
	return fmt.Errorf("%s %s in %s is %w: %w", t, h, r.path, ErrDamaged, err)
}

// writer writes one source's tree into its staging directory. Every
// entry is made relative to its parent directory's descriptor with one
// name component (openat, mkdirat, symlinkat with O_EXCL/O_NOFOLLOW), in
// directories it made itself: no entry of a hostile tree ("..", a name
// with a slash, a symlink planted before a path through it) can reach
// outside the staging directory, and no path is walked twice. Metadata
// (owner, then mode, since chown clears setuid; then times) is applied as
// each entry is done, a directory's after everything in it.
type writer struct {
	r       *Repo
	ctx     context.Context
	st      *RestoreStats
	chown   bool
	hasMeta bool
	meta    map[string]metaEntry // by path in the source ("." itself)
	subdirs map[string][]string  // directories of the metadata by parent: empty ones are in no tree
	files   map[string]bool      // regular files written (what a hard link may name)
	rootFd  int
	// treeRoot: this source is the tree's root (one source), whose
	// MetaFile entry is ours, not the source's.
	treeRoot bool
	// when is the commit's time: the times of entries without metadata.
	when time.Time
}

func newWriter(r *Repo, ctx context.Context, st *RestoreStats, meta []metaEntry, prefix string, hasMeta bool) (*writer, error) {
	w := &writer{r: r, ctx: ctx, st: st, chown: os.Geteuid() == 0, hasMeta: hasMeta, meta: map[string]metaEntry{}, subdirs: map[string][]string{}, files: map[string]bool{},
		treeRoot: prefix == "."}
	for _, e := range meta {
		if !under(e.Path, prefix) {
			continue
		}
		e.Path = rel(e.Path, prefix)
		if e.Path != "." && !validPath(e.Path) {
			return nil, fmt.Errorf("%w: metadata path %q", snapshot.ErrRefused, e.Path)
		}
		if e.Hardlink != "" {
			e.Hardlink = rel(e.Hardlink, prefix)
			if !validPath(e.Hardlink) {
				return nil, fmt.Errorf("%w: metadata hard link %q", snapshot.ErrRefused, e.Hardlink)
			}
		}
		w.meta[e.Path] = e
		if e.Type == typeDir && e.Empty && e.Path != "." {
			parent, name := path.Split(e.Path)
			parent = strings.TrimSuffix(parent, "/")
			if parent == "" {
				parent = "."
			}
			w.subdirs[parent] = append(w.subdirs[parent], name)
		}
	}
	return w, nil
}

func validName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\x00")
}

func validPath(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if !validName(part) {
			return false
		}
	}
	return true
}

// restore writes tree t into the staging directory into.
func (w *writer) restore(into string, t *object.Tree) error {
	fd, err := unix.Open(into, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", into, err)
	}
	defer unix.Close(fd)
	w.rootFd = fd
	if err := w.dir(fd, t, "."); err != nil {
		return err
	}
	// The staging directory's own metadata: owner and mode through its
	// descriptor, times by its path (no symlink: made by MkdirTemp).
	e, ok := w.meta["."]
	if !ok {
		if err := unix.Fchmod(fd, 0o755); err != nil {
			return fmt.Errorf("mode of %s: %w", into, err)
		}
		return os.Chtimes(into, w.when, w.when)
	}
	mode, mt, err := e.parsed()
	if err != nil {
		return err
	}
	if w.chown {
		if err := unix.Fchown(fd, e.UID, e.GID); err != nil {
			return fmt.Errorf("owner of %s: %w", into, err)
		}
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("mode of %s: %w", into, err)
	}
	return os.Chtimes(into, mt, mt)
}

// dir writes the entries of t (and the metadata's empty directories) into
// the directory open as fd, whose path in the source is dir.
func (w *writer) dir(fd int, t *object.Tree, dir string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	inTree := map[string]bool{}
	for _, e := range t.Entries {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if !validName(e.Name) {
			return fmt.Errorf("%w: tree entry %q in %s", snapshot.ErrRefused, e.Name, dir)
		}
		inTree[e.Name] = true
		if w.treeRoot && dir == "." && e.Name == MetaFile {
			continue
		}
		p := path.Join(dir, e.Name)
		switch e.Mode {
		case filemode.Dir:
			sub, err := w.r.tree(e.Hash)
			if err != nil {
				return err
			}
			if err := w.subdir(fd, e.Name, p, sub); err != nil {
				return err
			}
		case filemode.Symlink:
			var b strings.Builder
			if err := w.r.readBlob(e.Hash, &b); err != nil {
				return err
			}
			if err := unix.Symlinkat(b.String(), fd, e.Name); err != nil {
				return fmt.Errorf("symlink %s: %w", p, err)
			}
			w.st.Links++
			if err := w.set(fd, e.Name, p, typeSymlink, e); err != nil {
				return err
			}
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			if err := w.file(fd, e, p); err != nil {
				return err
			}
		case filemode.Submodule:
			// A commit of another repository: nothing to write.
		default:
			return fmt.Errorf("%w: tree entry %s has mode %o", snapshot.ErrRefused, p, e.Mode)
		}
	}
	for _, name := range w.subdirs[dir] {
		if !inTree[name] { // an empty directory
			if err := w.subdir(fd, name, path.Join(dir, name), &object.Tree{}); err != nil {
				return err
			}
		}
	}
	return nil
}

// subdir makes directory name in fd, fills it, then sets its metadata.
func (w *writer) subdir(fd int, name, p string, t *object.Tree) error {
	if err := unix.Mkdirat(fd, name, 0o700); err != nil {
		return fmt.Errorf("mkdir %s: %w", p, err)
	}
	sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	err = w.dir(sub, t, p)
	unix.Close(sub)
	if err != nil {
		return err
	}
	w.st.Dirs++
	return w.set(fd, name, p, typeDir, object.TreeEntry{})
}

// file writes one regular file (or makes the hard link the metadata names).
func (w *writer) file(fd int, e object.TreeEntry, p string) error {
	if m, ok := w.meta[p]; ok && m.Hardlink != "" {
		if !w.files[m.Hardlink] {
			return fmt.Errorf("%w: %s is a hard link of %s, which is not a file restored before it", snapshot.ErrRefused, p, m.Hardlink)
		}
		if err := unix.Linkat(w.rootFd, m.Hardlink, fd, e.Name, 0); err != nil {
			return fmt.Errorf("hard link %s of %s: %w", p, m.Hardlink, err)
		}
		w.st.Files++
		return nil // the inode's metadata is the first name's
	}
	perm := uint32(0o644)
	if e.Mode == filemode.Executable {
		perm = 0o755
	}
	nfd, err := unix.Openat(fd, e.Name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	f := os.NewFile(uintptr(nfd), p)
	cw := &countWriter{w: f}
	err = w.r.readBlob(e.Hash, cw)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	w.files[p] = true
	w.st.Files++
	w.st.Bytes += cw.n
	return w.set(fd, e.Name, p, typeFile, e)
}

// set applies the metadata of entry name (path p, tree entry te) in the
// directory fd. An entry the metadata does not list, or lists with another
// blob (a commit made elsewhere changed it), gets Git's modes (0644, 0755
// for an executable or a directory) and the commit's time.
func (w *writer) set(fd int, name, p, typ string, te object.TreeEntry) error {
	e, ok := w.meta[p]
	if ok && typ != typeDir && e.Blob != "" && e.Blob != blobTag(te.Hash.String()) {
		ok = false // stale: the content changed
	}
	if ok && typ == typeFile {
		if m, err := e.mode(); err == nil && (m&0o100 != 0) != (te.Mode == filemode.Executable) {
			ok = false // stale: chmod +x or -x in a commit made elsewhere
		}
	}
	if ok && e.Type != typ {
		return fmt.Errorf("metadata of %s says %s, the tree holds a %s", p, e.Type, typ)
	}
	mode, mt := uint32(0o644), w.when
	switch {
	case ok:
		var err error
		if mode, mt, err = e.parsed(); err != nil {
			return err
		}
		if w.chown {
			if err := unix.Fchownat(fd, name, e.UID, e.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("owner of %s: %w", p, err)
			}
		}
	case typ == typeDir, te.Mode == filemode.Executable:
		mode = 0o755
	}
	if typ != typeSymlink {
		if err := unix.Fchmodat(fd, name, mode, 0); err != nil {
			return fmt.Errorf("mode of %s: %w", p, err)
		}
	}
	if mt.IsZero() {
		return nil
	}
	ts := []unix.Timespec{unix.NsecToTimespec(mt.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
	if err := unix.UtimesNanoAt(fd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("times of %s: %w", p, err)
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

// RestoreNewest restores commit h, or, while a commit's objects are
// damaged or missing (ErrDamaged), its first parent — or, when a lost
// commit object takes its parent's name with it, the newest other commit
// the repository can read — up to 10 commits; it returns the commit
// restored. Any other fault stops it: it is not the commit's.
func (r *Repo) RestoreNewest(ctx context.Context, h plumbing.Hash, cfg snapshot.Config, opts snapshot.RestoreOptions, log *zap.Logger) (plumbing.Hash, error) {
	var tried []error
	done := map[plumbing.Hash]bool{}
	var others []plumbing.Hash // once the first-parent line is lost
	for !h.IsZero() && len(tried) < 10 {
		done[h] = true
		_, err := r.Restore(ctx, h, cfg, opts, log)
		if err == nil {
			return h, nil
		}
		if !errors.Is(err, ErrDamaged) {
			return h, err
		}
		tried = append(tried, err)
		log.Warn("restore: commit damaged or incomplete, trying its parent", zap.String("commit", h.String()), zap.Error(err))
		p, err := r.Parent(h)
		if err != nil {
			tried = append(tried, err)
			if others == nil {
				others = r.commitsNewestFirst()
			}
			p = plumbing.ZeroHash
			for len(others) > 0 && p.IsZero() {
				if !done[others[0]] {
					p = others[0]
				}
				others = others[1:]
			}
			if !p.IsZero() {
				log.Warn("restore: the commit's parent is unknown; trying the newest other commit of the repository", zap.String("commit", h.String()), zap.String("next", p.String()))
			}
		}
		h = p
	}
	return h, fmt.Errorf("none of %d commits restored: %w", len(tried), errors.Join(tried...))
}

// commitsNewestFirst lists the readable commits of the repository by
// committer time, newest first (never nil). It decodes every commit
// object: used only once a history is broken.
func (r *Repo) commitsNewestFirst() []plumbing.Hash {
	type dated struct {
		h    plumbing.Hash
		when time.Time
	}
	var all []dated
	if it, err := r.st.IterEncodedObjects(plumbing.CommitObject); err == nil {
		_ = it.ForEach(func(o plumbing.EncodedObject) error {
			if c, err := object.DecodeCommit(r.st, o); err == nil {
				all = append(all, dated{c.Hash, c.Committer.When})
			}
			return nil
		})
	}
	slices.SortStableFunc(all, func(a, b dated) int { return b.when.Compare(a.when) })
	out := make([]plumbing.Hash, 0, len(all))
	for _, d := range all {
		out = append(out, d.h)
	}
	return out
}
