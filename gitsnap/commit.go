package gitsnap

import (
	"bufio"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"github.com/go-git/go-git/v5/plumbing/object"
	"go.uber.org/zap"

	"snapvisor/config"
	"snapvisor/internal/fsx"
)

// IgnoreFile is the gitignore-syntax file of patterns a source (or any
// directory in it) may hold to leave entries out of git-format snapshots.
const IgnoreFile = ".snapvisorignore"

// ErrTooLarge is wrapped by the error of a strict snapshot
// (SNAPVISOR_GIT_STRICT) that met a file above SNAPVISOR_GIT_MAX_FILE_SIZE.
var ErrTooLarge = errors.New("file too large for the git format")

// Options are one snapshot's inputs.
type Options struct {
	// Sources are the directories committed: one is the tree's root, more
	// are top-level directories named after their base names.
	Sources []string
	// Excluded reports whether SNAPVISOR_EXCLUDE leaves an entry out
	// (snapshot.Config.Excluded: base name, path in the source, <base>/<path>).
	Excluded func(base, rel, arch string) bool
	// MaxFileSize and Strict: SNAPVISOR_GIT_MAX_FILE_SIZE, SNAPVISOR_GIT_STRICT.
	MaxFileSize int64
	Strict      bool
	Author      string // SNAPVISOR_GIT_AUTHOR
	Trigger     string // what started the run: schedule, on-demand, start, exit
	Host        string
	Now         time.Time
}

// Result is one snapshot's outcome.
type Result struct {
	Hash      plumbing.Hash // the branch's head after the run
	Unchanged bool          // nothing changed: no commit was made
	Changed   int           // files added, removed or modified
	Files     int64
	Bytes     int64
	Skipped   []string // files left out for their size (or as .git)
}

// Commit commits the sources' current state to the branch, unless it
// equals the head's: objects are written and synced before the branch
// moves (compare-and-set), so a crash leaves the previous head.
func (r *Repo) Commit(ctx context.Context, o Options, log *zap.Logger) (Result, error) {
	var res Result
	author, err := mail.ParseAddress(o.Author)
	if err != nil {
		return res, fmt.Errorf("SNAPVISOR_GIT_AUTHOR %q: %w", o.Author, err)
	}
	if author.Name == "" {
		author.Name = author.Address
	}
	parent, err := r.Head()
	if err != nil && !errors.Is(err, ErrNoBranch) {
		return res, err
	}
	// The head's files: what changed is counted against them, and their
	// blobs are known present without a lookup each.
	var before map[string]fileRef
	var parentTree plumbing.Hash
	if !parent.IsZero() {
		pc, err := object.GetCommit(r.st, parent)
		if err != nil {
			return res, fmt.Errorf("head %s of %s: %w", parent, r.Branch(), err)
		}
		parentTree = pc.TreeHash
		if before, err = r.files(parentTree); err != nil {
			return res, err
		}
		r.known = make(map[plumbing.Hash]bool, len(before))
		for _, f := range before {
			r.known[f.hash] = true
		}
		defer func() { r.known = nil }()
	}
	if err := r.beginPack(); err != nil {
		return res, err
	}
	packed := false
	defer func() { _ = r.endPack(packed) }()
	b := &builder{repo: r, o: o, log: log, ctx: ctx, cache: r.loadStatCache(), next: statCache{}, files: map[string]fileRef{}, start: time.Now()}
	b.trusted = !parent.IsZero() && b.cache.Head == parent
	root, err := b.build()
	if err != nil {
		return res, err
	}
	res.Files, res.Bytes, res.Skipped = b.nfiles, b.nbytes, b.skipped

	if root == parentTree {
		b.next.Head = parent
		r.saveStatCache(b.next, log)
		res.Hash, res.Unchanged = parent, true
		return res, nil // the pack (of nothing new, or of what a freeze changed back) is discarded
	}
	res.Changed = changedFiles(before, b.files)
	when := o.Now.Round(0)
	sig := object.Signature{Name: author.Name, Email: author.Address, When: when}
	c := &object.Commit{Author: sig, Committer: sig, TreeHash: root, Message: message(o, res, when)}
	if !parent.IsZero() {
		c.ParentHashes = []plumbing.Hash{parent}
	}
	h, err := r.writeObject(c)
	if err != nil {
		return res, err
	}
	packed = true
	if err := r.endPack(true); err != nil {
		return res, err
	}
	if err := r.setHead(h, parent); err != nil {
		return res, err
	}
	if err := r.syncHead(); err != nil {
		return res, err
	}
	b.next.Head = h
	r.saveStatCache(b.next, log)
	res.Hash = h
	if n, err := r.Repack(maxPacks); err != nil {
		log.Warn("git repack failed; the packs stay as they are and the next run tries again", zap.Error(err))
	} else if n > 0 {
		log.Info("git packs repacked into one", zap.Int("packs", n))
	}
	return res, nil
}

// message is a snapshot commit's message: a subject, a sentence, and
// trailers that list reads back.
func message(o Options, res Result, when time.Time) string {
	changed := fmt.Sprintf("%d files changed", res.Changed)
	if res.Changed == 1 {
		changed = "1 file changed"
	}
	if res.Changed == 0 {
		changed = "metadata changed (modes, owners or times)"
	}
	return fmt.Sprintf("snapvisor: %s snapshot of %s, %s\n\n%s at %s on host %s (trigger: %s).\n\n%s: %s\n%s: %s\n%s: %d\n%s: %d\n",
		o.Trigger, o.Host, changed, changed, when.UTC().Format(time.RFC3339), o.Host, o.Trigger,
		trailerTrigger, o.Trigger, trailerHost, o.Host, trailerChanged, res.Changed, trailerFiles, res.Files)
}

// writeObject encodes and stores a commit or tree, returning its hash.
func (r *Repo) writeObject(e interface {
	Encode(plumbing.EncodedObject) error
}) (plumbing.Hash, error) {
	obj := &plumbing.MemoryObject{}
	if err := e.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	h := obj.Hash()
	if r.has(h) {
		return h, nil
	}
	rd, _ := obj.Reader()
	data, err := io.ReadAll(rd)
	if err != nil {
		return h, err
	}
	return h, r.pack.Add(obj.Type(), h, data)
}

// writeBlob stores data as a blob unless the repository has it.
func (r *Repo) writeBlob(data []byte) (plumbing.Hash, error) {
	h := computeHash(plumbing.BlobObject, data)
	if r.has(h) {
		return h, nil
	}
	return h, r.pack.Add(plumbing.BlobObject, h, data)
}

// has reports whether the repository (or the pack being written) holds h.
func (r *Repo) has(h plumbing.Hash) bool {
	return r.pack != nil && r.pack.Has(h) || r.known[h] || r.st.HasEncodedObject(h) == nil
}

// beginPack starts the pack this operation's new objects go into.
func (r *Repo) beginPack() error {
	p, err := newPackWriter(r.path)
	if err != nil {
		return fmt.Errorf("git repository %s: %w", r.path, err)
	}
	r.pack = p
	return nil
}

// endPack finishes the pack (ok) or discards it, and makes its objects
// readable.
func (r *Repo) endPack(ok bool) error {
	p := r.pack
	r.pack = nil
	if p == nil {
		return nil
	}
	if !ok {
		p.Abort()
		return nil
	}
	if err := p.Finish(); err != nil {
		return fmt.Errorf("write pack to %s: %w", r.path, err)
	}
	r.st.Reindex()
	return nil
}

// syncHead makes the branch's reference durable: its file and every
// directory from it up to the repository (a new branch's directories are
// new names too). Objects are durable already (packWriter.Finish).
func (r *Repo) syncHead() error {
	file := filepath.Join(r.path, filepath.FromSlash(r.branch.String()))
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("sync %s: %w", file, err)
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return fmt.Errorf("sync %s: %w", file, err)
	}
	for d := filepath.Dir(file); ; d = filepath.Dir(d) {
		if err := fsx.SyncDir(d); err != nil {
			return err
		}
		if d == r.path || len(d) <= len(r.path) {
			return nil
		}
	}
}

// fileRef is a blob entry of a tree: a file or a symlink.
type fileRef struct {
	hash plumbing.Hash
	mode filemode.FileMode
}

// files flattens a tree into its blob entries by path, the metadata file left out.
func (r *Repo) files(tree plumbing.Hash) (map[string]fileRef, error) {
	out := map[string]fileRef{}
	var walk func(h plumbing.Hash, prefix string) error
	walk = func(h plumbing.Hash, prefix string) error {
		t, err := object.GetTree(r.st, h)
		if err != nil {
			return fmt.Errorf("tree %s: %w", h, err)
		}
		for _, e := range t.Entries {
			p := path.Join(prefix, e.Name)
			switch {
			case e.Mode == filemode.Dir:
				if err := walk(e.Hash, p); err != nil {
					return err
				}
			case e.Mode == filemode.Submodule:
			case prefix == "" && e.Name == MetaFile:
			default:
				out[p] = fileRef{e.Hash, e.Mode}
			}
		}
		return nil
	}
	return out, walk(tree, "")
}

// changedFiles counts the paths added, removed or changed from a to b.
func changedFiles(a, b map[string]fileRef) int {
	n := 0
	for p, x := range b {
		if y, ok := a[p]; !ok || x != y {
			n++
		}
	}
	for p := range a {
		if _, ok := b[p]; !ok {
			n++
		}
	}
	return n
}

// builder walks the sources and writes their blobs and trees.
type builder struct {
	repo    *Repo
	o       Options
	log     *zap.Logger
	ctx     context.Context
	cache   statCache // the previous run's
	trusted bool      // the cache's hashes are in the head's tree
	next    statCache
	start   time.Time
	files   map[string]fileRef
	meta    []metaEntry
	nfiles  int64
	nbytes  int64
	skipped []string
	buf     []byte
}

// build walks every source and returns the root tree's hash.
func (b *builder) build() (plumbing.Hash, error) {
	tops := len(b.o.Sources) > 1
	h := metaHeader{Format: metaFormat, Tops: tops}
	var rootEntries []object.TreeEntry
	for _, src := range b.o.Sources {
		base := filepath.Base(filepath.Clean(src))
		h.Sources = append(h.Sources, base)
		real, err := filepath.EvalSymlinks(src)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("source: %w", err)
		}
		prefix := "."
		if tops {
			prefix = base
		}
		if err := b.addMeta(real, prefix, nil, plumbing.ZeroHash); err != nil {
			return plumbing.ZeroHash, err
		}
		entries, err := b.dir(real, base, "", prefix, nil)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if !tops {
			rootEntries = entries
			continue
		}
		if len(entries) > 0 {
			th, err := b.repo.writeObject(&object.Tree{Entries: entries})
			if err != nil {
				return plumbing.ZeroHash, err
			}
			rootEntries = append(rootEntries, object.TreeEntry{Name: base, Mode: filemode.Dir, Hash: th})
		}
	}
	slices.SortFunc(b.meta, func(x, y metaEntry) int { return strings.Compare(x.Path, y.Path) })
	b.linkHardlinks()
	mh, err := b.repo.writeBlob(encodeMeta(h, b.meta))
	if err != nil {
		return plumbing.ZeroHash, err
	}
	rootEntries = append(rootEntries, object.TreeEntry{Name: MetaFile, Mode: filemode.Regular, Hash: mh})
	sortEntries(rootEntries)
	return b.repo.writeObject(&object.Tree{Entries: rootEntries})
}

// linkHardlinks marks every multiply linked file after the first (in
// path order) as a hard link of it.
func (b *builder) linkHardlinks() {
	// Hardlink holds "\x00dev:ino" while walking; resolve in path order.
	first := map[[2]uint64]string{}
	for i := range b.meta {
		e := &b.meta[i]
		if !strings.HasPrefix(e.Hardlink, "\x00") {
			continue
		}
		var key [2]uint64
		_, _ = fmt.Sscanf(e.Hardlink[1:], "%d:%d", &key[0], &key[1])
		if p, ok := first[key]; ok {
			e.Hardlink = p
		} else {
			first[key] = e.Path
			e.Hardlink = ""
		}
	}
}

// sortEntries orders tree entries as Git does: by name, a directory's name
// compared as if it ended in a slash.
func sortEntries(es []object.TreeEntry) {
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	slices.SortFunc(es, func(x, y object.TreeEntry) int { return strings.Compare(key(x), key(y)) })
}

// addMeta records one entry's metadata; fi is nil for a source's root;
// blob is a file's or symlink's blob (zero for a directory).
func (b *builder) addMeta(abs, p string, fi os.FileInfo, blob plumbing.Hash) error {
	if fi == nil {
		var err error
		if fi, err = os.Lstat(abs); err != nil {
			return fmt.Errorf("source: %w", err)
		}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no ownership information", abs)
	}
	e := metaEntry{Path: p, Mode: fmt.Sprintf("%04o", st.Mode&0o7777), UID: int(st.Uid), GID: int(st.Gid),
		MTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC().Format(time.RFC3339Nano)}
	if !blob.IsZero() {
		e.Blob = blobTag(blob.String())
	}
	switch {
	case fi.IsDir():
		e.Type = typeDir
	case fi.Mode()&os.ModeSymlink != 0:
		e.Type = typeSymlink
	default:
		e.Type = typeFile
		if st.Nlink > 1 {
			e.Hardlink = fmt.Sprintf("\x00%d:%d", st.Dev, st.Ino)
		}
	}
	b.meta = append(b.meta, e)
	return nil
}

// dir walks one directory: abs on disk, rel its path in the source ("" the
// source itself), tp its path in the tree ("." the root). It returns the
// tree entries of what it holds, writing their blobs and subtrees.
func (b *builder) dir(abs, base, rel, tp string, ignore []gitignore.Pattern) ([]object.TreeEntry, error) {
	if err := b.ctx.Err(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	var domain []string // this directory's path in the source, as gitignore matches it
	if rel != "" {
		domain = strings.Split(rel, "/")
	}
	relParts := func(name string) []string { return append(slices.Clip(domain), name) }
	for _, e := range ents {
		if e.Name() == IgnoreFile && e.Type().IsRegular() {
			more, err := readIgnore(filepath.Join(abs, e.Name()), domain)
			if err != nil {
				return nil, err
			}
			ignore = append(slices.Clip(ignore), more...)
		}
	}
	var m gitignore.Matcher
	if len(ignore) > 0 {
		m = gitignore.NewMatcher(ignore)
	}
	var out []object.TreeEntry
	for _, e := range ents {
		if err := b.ctx.Err(); err != nil {
			return nil, err
		}
		name := e.Name()
		childAbs := filepath.Join(abs, name)
		childRel := path.Join(rel, name)
		childTP := path.Join(tp, name)
		fi, err := os.Lstat(childAbs)
		if errors.Is(err, os.ErrNotExist) {
			continue // removed while walking
		}
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		if b.o.Excluded != nil && b.o.Excluded(name, childRel, base+"/"+childRel) {
			continue
		}
		if m != nil && m.Match(relParts(name), fi.IsDir()) {
			continue
		}
		if gitRefuses(name) || (tp == "." && name == MetaFile) {
			b.skipped = append(b.skipped, childAbs)
			b.log.Warn("left out of the git snapshot: Git cannot hold an entry of this name", zap.String("path", childAbs))
			continue
		}
		switch {
		case fi.IsDir():
			sub, err := b.dir(childAbs, base, childRel, childTP, ignore)
			if err != nil {
				return nil, err
			}
			if err := b.addMeta(childAbs, childTP, fi, plumbing.ZeroHash); err != nil {
				return nil, err
			}
			if len(sub) == 0 {
				b.meta[len(b.meta)-1].Empty = true
				continue // an empty directory: the metadata brings it back
			}
			h, err := b.repo.writeObject(&object.Tree{Entries: sub})
			if err != nil {
				return nil, err
			}
			out = append(out, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(childAbs)
			if err != nil {
				return nil, fmt.Errorf("source: %w", err)
			}
			h, err := b.repo.writeBlob([]byte(target))
			if err != nil {
				return nil, err
			}
			if err := b.addMeta(childAbs, childTP, fi, h); err != nil {
				return nil, err
			}
			out = append(out, object.TreeEntry{Name: name, Mode: filemode.Symlink, Hash: h})
			b.files[b.treePath(childTP)] = fileRef{h, filemode.Symlink}
		case fi.Mode().IsRegular():
			if fi.Size() > b.o.MaxFileSize {
				if err := b.tooLarge(childAbs, fi.Size()); err != nil {
					return nil, err
				}
				continue
			}
			h, n, err := b.blob(childAbs, childTP, fi)
			if errors.Is(err, errGrew) {
				if err := b.tooLarge(childAbs, n); err != nil {
					return nil, err
				}
				continue
			}
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if err := b.addMeta(childAbs, childTP, fi, h); err != nil {
				return nil, err
			}
			mode := filemode.Regular
			if fi.Mode()&0o100 != 0 {
				mode = filemode.Executable
			}
			out = append(out, object.TreeEntry{Name: name, Mode: mode, Hash: h})
			b.files[b.treePath(childTP)] = fileRef{h, mode}
			b.nfiles++
			b.nbytes += n
		default:
			b.log.Warn("left out of the git snapshot: not a file, directory or symlink", zap.String("path", childAbs), zap.String("type", fi.Mode().Type().String()))
		}
	}
	sortEntries(out)
	return out, nil
}

// gitRefuses reports the names Git will not hold (git fsck's hasDotgit,
// which git add and checkout enforce too): .git in any letter case, with
// trailing dots or spaces, its NTFS short name git~1, or with code points
// HFS+ ignores inside it.
func gitRefuses(name string) bool {
	n := strings.Map(func(r rune) rune {
		if r >= 0x200c && r <= 0x200f || r >= 0x202a && r <= 0x202e || r >= 0x206a && r <= 0x206f || r == 0xfeff {
			return -1
		}
		return r
	}, name)
	n = strings.ToLower(strings.TrimRight(n, ". "))
	return n == ".git" || n == "git~1"
}

// treePath turns a metadata path into the tree path files() reports.
func (b *builder) treePath(tp string) string { return strings.TrimPrefix(tp, "./") }

func (b *builder) tooLarge(abs string, size int64) error {
	if b.o.Strict {
		return fmt.Errorf("%w: %s is %s, above SNAPVISOR_GIT_MAX_FILE_SIZE (%s) and SNAPVISOR_GIT_STRICT=true: exclude it (SNAPVISOR_EXCLUDE or %s), raise the limit, or use SNAPVISOR_FORMAT=archive or restic for large data",
			ErrTooLarge, abs, config.FormatSize(size), config.FormatSize(b.o.MaxFileSize), IgnoreFile)
	}
	b.skipped = append(b.skipped, abs)
	b.log.Warn("left out of the git snapshot: file above SNAPVISOR_GIT_MAX_FILE_SIZE (exclude it, raise the limit, or use SNAPVISOR_FORMAT=archive or restic for large data)",
		zap.String("path", abs), zap.Int64("size", size), zap.Int64("limit", b.o.MaxFileSize))
	return nil
}

var errGrew = errors.New("file grew above the limit while read")

// blob returns the blob hash of a regular file: from the previous run's
// stat cache when its size, times and inode are unchanged (and not racily
// close to that run), else read, hashed and stored.
func (b *builder) blob(abs, tp string, fi os.FileInfo) (plumbing.Hash, int64, error) {
	st := fi.Sys().(*syscall.Stat_t)
	key := statKey{Size: st.Size, MTime: st.Mtim.Nano(), CTime: st.Ctim.Nano(), Ino: st.Ino}
	if c, ok := b.cache.Files[tp]; ok && c.statKey == key && (b.trusted || b.repo.has(c.Hash)) {
		b.keep(tp, key, c.Hash)
		return c.Hash, st.Size, nil
	}
	f, err := os.Open(abs)
	if err != nil {
		return plumbing.ZeroHash, 0, err
	}
	defer f.Close()
	if cap(b.buf) < int(st.Size)+1 {
		b.buf = make([]byte, 0, st.Size+1+st.Size/8)
	}
	data, err := readAtMost(f, b.buf[:0], b.o.MaxFileSize)
	if err != nil {
		return plumbing.ZeroHash, int64(len(data)), err
	}
	h, err := b.repo.writeBlob(data)
	if err != nil {
		return plumbing.ZeroHash, 0, err
	}
	if int64(len(data)) == st.Size {
		b.keep(tp, key, h)
	}
	return h, int64(len(data)), nil
}

// keep records a file's hash for the next run, unless its times are too
// close to this walk's start for a later change to show (racy).
func (b *builder) keep(tp string, key statKey, h plumbing.Hash) {
	// As git's index: an entry is racy when its mtime is not safely before
	// the walk (a write in the same timestamp tick would not show). Its
	// ctime is part of the key (a change shows) but not of this test: a
	// tree just copied with cp -a has old mtimes and new ctimes.
	if key.MTime >= b.start.Add(-2*time.Second).UnixNano() {
		return
	}
	if b.next.Files == nil {
		b.next.Files = map[string]cached{}
	}
	b.next.Files[tp] = cached{statKey: key, Hash: h}
}

// readAtMost reads f to its end into buf, errGrew beyond max bytes.
func readAtMost(f *os.File, buf []byte, max int64) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 64<<10)
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > max {
			return buf, errGrew
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// readIgnore parses a .snapvisorignore in the directory whose path in the
// source is domain.
func readIgnore(file string, domain []string) ([]gitignore.Pattern, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	defer f.Close()
	var out []gitignore.Pattern
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), " \t\r")
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, gitignore.ParsePattern(l, domain))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("source %s: %w", file, err)
	}
	return out, nil
}

// statKey is what tells a file unchanged since its hash was taken.
type statKey struct {
	Size, MTime, CTime int64
	Ino                uint64
}

type cached struct {
	statKey
	Hash plumbing.Hash
}

// statCache is the previous run's hashes by tree path (Git's index does
// the same for git add: without it every run reads every file).
type statCache struct {
	// Head is the commit whose tree holds every hash of Files: while it is
	// the branch's head, they are known present without a lookup each.
	Head  plumbing.Hash
	Files map[string]cached
}

func (r *Repo) statCachePath() string { return filepath.Join(r.path, "snapvisor-statcache") }

func (r *Repo) loadStatCache() statCache {
	var c statCache
	f, err := os.Open(r.statCachePath())
	if err != nil {
		return c
	}
	defer f.Close()
	if gob.NewDecoder(bufio.NewReader(f)).Decode(&c) != nil {
		return statCache{}
	}
	return c
}

// saveStatCache replaces the cache (temporary file and rename); a failure
// only costs the next run a full read.
func (r *Repo) saveStatCache(c statCache, log *zap.Logger) {
	tmp, err := os.CreateTemp(r.path, "snapvisor-statcache.tmp-*")
	if err == nil {
		w := bufio.NewWriter(tmp)
		err = gob.NewEncoder(w).Encode(c)
		if err == nil {
			err = w.Flush()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), r.statCachePath())
		}
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}
	if err != nil {
		log.Debug("git stat cache not saved; the next snapshot reads every file", zap.Error(err))
	}
}
