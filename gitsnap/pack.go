package gitsnap

// Objects are written as one pack per snapshot rather than as loose
// objects: go-git writes a loose object through a pipe and a goroutine, in
// many small writes, and compresses it at zlib's default level. On 2,000
// files of 10 KiB that cost ~98,000 write calls and ~20 s of CPU; a pack
// is one file written through a buffer, and level 1 (git's own
// core.looseCompression default) compresses text at over 100 MB/s here.
// The pack and its version 2 index are the formats git documents
// (Documentation/gitformat-pack.txt); both are small enough to write by
// hand here (go-git's encoder wants every object in a storer first).

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/klauspost/compress/zlib"

	"snapvisor/internal/fsx"
)

// packLevel is the zlib level of objects in the packs we write.
const packLevel = zlib.BestSpeed

// packObject is one object's place in a pack being written.
type packObject struct {
	hash   plumbing.Hash
	offset int64
	crc    uint32
}

// packWriter writes objects into a new pack in a repository's
// objects/pack directory; nothing is visible until Finish.
type packWriter struct {
	dir     string // objects/pack
	f       *os.File
	w       *bufio.Writer
	off     int64
	objects []packObject
	has     map[plumbing.Hash]bool
	zw      *zlib.Writer
	zbuf    bytes.Buffer
	name    string // pack-<checksum>, once finished
}

func newPackWriter(repo string) (*packWriter, error) {
	dir := filepath.Join(repo, "objects", "pack")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "tmp_pack_")
	if err != nil {
		return nil, err
	}
	p := &packWriter{dir: dir, f: f, w: bufio.NewWriterSize(f, 256<<10), has: map[plumbing.Hash]bool{}}
	// The object count is filled in by Finish.
	hdr := []byte{'P', 'A', 'C', 'K', 0, 0, 0, 2, 0, 0, 0, 0}
	if _, err := p.w.Write(hdr); err != nil {
		p.Abort()
		return nil, err
	}
	p.off = int64(len(hdr))
	return p, nil
}

// Has reports whether the pack holds h already.
func (p *packWriter) Has(h plumbing.Hash) bool { return p.has[h] }

// Len is the number of objects written.
func (p *packWriter) Len() int { return len(p.objects) }

// Add appends one object (its content, uncompressed) unless it is there.
func (p *packWriter) Add(t plumbing.ObjectType, h plumbing.Hash, data []byte) error {
	if p.has[h] {
		return nil
	}
	var hdr [16]byte
	n := 0
	size := uint64(len(data))
	c := byte(t)<<4 | byte(size&0x0f)
	size >>= 4
	for size != 0 {
		hdr[n] = c | 0x80
		n++
		c = byte(size & 0x7f)
		size >>= 7
	}
	hdr[n] = c
	n++
	p.zbuf.Reset()
	if p.zw == nil {
		var err error
		if p.zw, err = zlib.NewWriterLevel(&p.zbuf, packLevel); err != nil {
			return err
		}
	} else {
		p.zw.Reset(&p.zbuf)
	}
	if _, err := p.zw.Write(data); err != nil {
		return err
	}
	if err := p.zw.Close(); err != nil {
		return err
	}
	crc := crc32.Update(crc32.ChecksumIEEE(hdr[:n]), crc32.IEEETable, p.zbuf.Bytes())
	if _, err := p.w.Write(hdr[:n]); err != nil {
		return err
	}
	if _, err := p.w.Write(p.zbuf.Bytes()); err != nil {
		return err
	}
	p.objects = append(p.objects, packObject{hash: h, offset: p.off, crc: crc})
	p.off += int64(n + p.zbuf.Len())
	p.has[h] = true
	return nil
}

// Abort removes the unfinished pack.
func (p *packWriter) Abort() {
	p.f.Close()
	os.Remove(p.f.Name())
}

// Finish completes the pack (count, trailing checksum) and its index,
// syncs both, renames them into place and syncs the directory, the index first (go-git lists
// packs by their .pack file, git by their .idx, and each ignores one
// without the other). An empty pack is discarded.
func (p *packWriter) Finish() error {
	if len(p.objects) == 0 {
		p.Abort()
		return nil
	}
	err := p.finish()
	if err != nil {
		p.Abort()
	}
	return err
}

func (p *packWriter) finish() error {
	if err := p.w.Flush(); err != nil {
		return err
	}
	var count [4]byte
	binary.BigEndian.PutUint32(count[:], uint32(len(p.objects)))
	if _, err := p.f.WriteAt(count[:], 8); err != nil {
		return err
	}
	if _, err := p.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	sum := sha1.New()
	if _, err := io.Copy(sum, p.f); err != nil {
		return err
	}
	packSum := sum.Sum(nil)
	if _, err := p.f.Write(packSum); err != nil {
		return err
	}
	if err := p.f.Sync(); err != nil {
		return err
	}
	if err := p.f.Close(); err != nil {
		return err
	}
	name := fmt.Sprintf("pack-%x", packSum)
	p.name = name
	idx, err := os.CreateTemp(p.dir, "tmp_idx_")
	if err != nil {
		return err
	}
	defer os.Remove(idx.Name())
	if err := writeIndex(idx, p.objects, packSum); err != nil {
		idx.Close()
		return err
	}
	if err := idx.Sync(); err != nil {
		idx.Close()
		return err
	}
	if err := idx.Close(); err != nil {
		return err
	}
	for _, f := range []string{idx.Name(), p.f.Name()} {
		if err := os.Chmod(f, 0o444); err != nil {
			return err
		}
	}
	if err := os.Rename(idx.Name(), filepath.Join(p.dir, name+".idx")); err != nil {
		return err
	}
	if err := os.Rename(p.f.Name(), filepath.Join(p.dir, name+".pack")); err != nil {
		return err
	}
	return fsx.SyncDir(p.dir)
}

// writeIndex writes a version 2 pack index.
func writeIndex(f *os.File, objs []packObject, packSum []byte) error {
	objs = slices.Clone(objs)
	slices.SortFunc(objs, func(a, b packObject) int { return bytes.Compare(a.hash[:], b.hash[:]) })
	sum := sha1.New()
	w := bufio.NewWriter(io.MultiWriter(f, sum))
	put := func(v uint32) {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], v)
		w.Write(b[:])
	}
	w.Write([]byte{0xff, 't', 'O', 'c', 0, 0, 0, 2})
	var fanout [256]uint32
	for _, o := range objs {
		fanout[o.hash[0]]++
	}
	total := uint32(0)
	for i := range fanout {
		total += fanout[i]
		put(total)
	}
	for _, o := range objs {
		w.Write(o.hash[:])
	}
	for _, o := range objs {
		put(o.crc)
	}
	var large []int64
	for _, o := range objs {
		if o.offset < 1<<31 {
			put(uint32(o.offset))
			continue
		}
		put(1<<31 | uint32(len(large)))
		large = append(large, o.offset)
	}
	for _, off := range large {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(off))
		w.Write(b[:])
	}
	w.Write(packSum)
	if err := w.Flush(); err != nil {
		return err
	}
	_, err := f.Write(sum.Sum(nil))
	return err
}

// maxPacks is how many packs the local repository may hold before a run
// repacks them into one: one pack per run would otherwise make every
// object lookup search thousands of indexes after a year of hourly runs.
const maxPacks = 32

// packs lists the repository's pack names (pack-<hash>) that have an index.
func (r *Repo) packs() ([]string, error) {
	dir := filepath.Join(r.path, "objects", "pack")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if filepath.Ext(n) == ".pack" && len(n) > 5 && n[:5] == "pack-" {
			out = append(out, n[:len(n)-5])
		}
	}
	return out, nil
}

// Repack writes every object reachable from the repository's references
// into one new pack (synced) and only then removes the packs it replaced:
// objects no reference reaches (a squashed history) go with them. It does
// nothing below min packs.
func (r *Repo) Repack(min int) (int, error) {
	old, err := r.packs()
	if err != nil || len(old) < min {
		return 0, err
	}
	refs, err := r.st.IterReferences()
	if err != nil {
		return 0, err
	}
	var heads []plumbing.Hash
	_ = refs.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() == plumbing.HashReference {
			heads = append(heads, ref.Hash())
		}
		return nil
	})
	if err := r.beginPack(); err != nil {
		return 0, err
	}
	ok := false
	defer func() { _ = r.endPack(ok) }()
	pw := r.pack
	for _, h := range heads {
		// Into the new pack whatever the old ones hold: pack.Has, not r.has.
		if err := copyReachable(r, r.pack, h); err != nil {
			return 0, fmt.Errorf("repack %s: %w", r.path, err)
		}
	}
	ok = true
	if err := r.endPack(true); err != nil {
		return 0, err
	}
	dir := filepath.Join(r.path, "objects", "pack")
	for _, n := range old {
		if n == pw.name {
			continue // the same objects in the same order: the new pack is this one
		}
		// The index first: git lists packs by their index, go-git by the pack.
		_ = os.Remove(filepath.Join(dir, n+".idx"))
		_ = os.Remove(filepath.Join(dir, n+".pack"))
	}
	r.st.Reindex()
	return len(old), fsx.SyncDir(dir)
}
