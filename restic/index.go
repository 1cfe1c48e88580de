package restic

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"sync"
)

// BlobType is a blob's kind: file content or a directory's tree.
type BlobType uint8

const (
	DataBlob BlobType = iota + 1
	TreeBlob
)

func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case TreeBlob:
		return "tree"
	}
	return fmt.Sprintf("blobtype(%d)", uint8(t))
}

func (t BlobType) MarshalJSON() ([]byte, error) {
	switch t {
	case DataBlob, TreeBlob:
		return []byte(`"` + t.String() + `"`), nil
	}
	return nil, fmt.Errorf("invalid blob type %d", t)
}

func (t *BlobType) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"data"`:
		*t = DataBlob
	case `"tree"`:
		*t = TreeBlob
	default:
		return fmt.Errorf("unknown blob type %s", b)
	}
	return nil
}

// Blob is where one blob lies: its pack and its place there. Length is the
// stored (compressed, encrypted) length; RawLength the plaintext length when
// compressed, else 0.
type Blob struct {
	Type      BlobType
	ID        ID
	Pack      ID
	Offset    uint32
	Length    uint32
	RawLength uint32
}

// PlainLength is the blob's plaintext length.
func (b Blob) PlainLength() uint32 {
	if b.RawLength != 0 {
		return b.RawLength
	}
	return b.Length - extension
}

type blobKey struct {
	t  BlobType
	id ID
}

// Index maps blobs to packs: the union of a repository's index files.
type Index struct {
	mu    sync.RWMutex
	blobs map[blobKey]Blob
	packs map[ID][]Blob // pack -> its blobs (a duplicate blob's own copy in each pack)
	files map[ID]bool   // index files that were loaded
}

func newIndex() *Index {
	return &Index{blobs: map[blobKey]Blob{}, packs: map[ID][]Blob{}, files: map[ID]bool{}}
}

// Lookup finds a blob.
func (x *Index) Lookup(t BlobType, id ID) (Blob, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	b, ok := x.blobs[blobKey{t, id}]
	return b, ok
}

// Has reports whether the index knows the blob.
func (x *Index) Has(t BlobType, id ID) bool {
	_, ok := x.Lookup(t, id)
	return ok
}

// Packs returns every pack the index names and its blobs.
func (x *Index) Packs() map[ID][]Blob {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make(map[ID][]Blob, len(x.packs))
	for p, bs := range x.packs {
		out[p] = append([]Blob(nil), bs...)
	}
	return out
}

// Len is the number of blobs.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.blobs)
}

func (x *Index) add(bs []Blob) {
	x.mu.Lock()
	defer x.mu.Unlock()
	fresh := map[ID]bool{} // packs this call brings; one already known came in another index file
	for _, b := range bs {
		if _, known := x.packs[b.Pack]; known && !fresh[b.Pack] {
			continue // a pack named by two index files (a prune killed before it deleted the old ones)
		}
		fresh[b.Pack] = true
		k := blobKey{b.Type, b.ID}
		if _, dup := x.blobs[k]; !dup {
			x.blobs[k] = b
		}
		x.packs[b.Pack] = append(x.packs[b.Pack], b)
	}
}

// The JSON of an index file.
type indexJSON struct {
	Supersedes []ID       `json:"supersedes,omitempty"`
	Packs      []packJSON `json:"packs"`
}

type packJSON struct {
	ID    ID         `json:"id"`
	Blobs []blobJSON `json:"blobs"`
}

type blobJSON struct {
	ID                 ID       `json:"id"`
	Type               BlobType `json:"type"`
	Offset             uint32   `json:"offset"`
	Length             uint32   `json:"length"`
	UncompressedLength uint32   `json:"uncompressed_length,omitempty"`
}

// LoadIndex reads every index file (in parallel) and keeps the union.
func (r *Repo) LoadIndex(ctx context.Context) (*Index, error) {
	ids, err := r.List(ctx, IndexFile)
	if err != nil {
		return nil, err
	}
	x := newIndex()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 8)
	)
	for id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var ij indexJSON
			err := r.LoadJSON(ctx, IndexFile, id, &ij)
			if err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("index: %w", err)
				}
				mu.Unlock()
				return
			}
			x.add(blobsOf(ij))
			x.mu.Lock()
			x.files[id] = true
			x.mu.Unlock()
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	r.indexMu.Lock()
	r.index = x
	r.indexMu.Unlock()
	return x, nil
}

func blobsOf(ij indexJSON) []Blob {
	var out []Blob
	for _, p := range ij.Packs {
		for _, b := range p.Blobs {
			out = append(out, Blob{Type: b.Type, ID: b.ID, Pack: p.ID, Offset: b.Offset, Length: b.Length, RawLength: b.UncompressedLength})
		}
	}
	return out
}

// indexOf is the JSON of an index file listing packs.
func indexOf(packs map[ID][]Blob, supersedes []ID) indexJSON {
	ij := indexJSON{Supersedes: supersedes, Packs: []packJSON{}}
	for _, p := range sortedIDs(packs) {
		pj := packJSON{ID: p}
		for _, b := range packs[p] {
			pj.Blobs = append(pj.Blobs, blobJSON{ID: b.ID, Type: b.Type, Offset: b.Offset, Length: b.Length, UncompressedLength: b.RawLength})
		}
		ij.Packs = append(ij.Packs, pj)
	}
	return ij
}

// Pack headers: the encrypted header follows the blobs, and its length
// (uint32, little endian) ends the file. Each entry is type (0 data, 1
// tree; 2 and 3 the same compressed), length, [uncompressed length], ID.
const (
	entrySize           = 1 + 4 + 32
	compressedEntrySize = 1 + 4 + 4 + 32
	maxHeaderSize       = 16*1024*1024 + 4
)

func appendHeader(dst []byte, blobs []Blob) []byte {
	for _, b := range blobs {
		t := byte(0)
		if b.Type == TreeBlob {
			t = 1
		}
		if b.RawLength != 0 {
			t += 2
		}
		dst = append(dst, t)
		dst = binary.LittleEndian.AppendUint32(dst, b.Length)
		if b.RawLength != 0 {
			dst = binary.LittleEndian.AppendUint32(dst, b.RawLength)
		}
		dst = append(dst, b.ID[:]...)
	}
	return dst
}

// ErrMissing marks a blob that no index names (an index file or a pack
// deleted behind our back).
var ErrMissing = errors.New("missing")

// Unusable reports whether err says a snapshot cannot be restored whole
// because its data is damaged or missing: another snapshot may do.
func Unusable(err error) bool {
	return errors.Is(err, ErrDamaged) || errors.Is(err, ErrMissing) || errors.Is(err, fs.ErrNotExist)
}

// ErrDamaged marks data that fails its check: a pack whose header or blob
// does not authenticate or decode, content that does not match its ID.
var ErrDamaged = errors.New("damaged")

// parseHeader reads a pack's blob list from the whole pack file.
func (r *Repo) parseHeader(pack ID, data []byte) ([]Blob, error) {
	bad := func(why string, args ...any) error {
		return fmt.Errorf("%s: %s: %w: %s", r.name, key(PackFile, pack), ErrDamaged, fmt.Sprintf(why, args...))
	}
	if len(data) < 4+extension {
		return nil, bad("%d bytes is too short for a pack", len(data))
	}
	hl := binary.LittleEndian.Uint32(data[len(data)-4:])
	if int64(hl) > int64(len(data)-4) || hl > maxHeaderSize || hl < extension {
		return nil, bad("header length %d does not fit", hl)
	}
	plain, err := r.key.Open(nil, data[len(data)-4-int(hl):len(data)-4])
	if err != nil {
		return nil, bad("header: %v", err)
	}
	var out []Blob
	var off uint32
	for len(plain) > 0 {
		t := plain[0]
		b := Blob{Pack: pack, Offset: off}
		n := entrySize
		switch t {
		case 0, 2:
			b.Type = DataBlob
		case 1, 3:
			b.Type = TreeBlob
		default:
			return nil, bad("header entry of unknown type %d", t)
		}
		if t >= 2 {
			n = compressedEntrySize
		}
		if len(plain) < n {
			return nil, bad("header entry truncated")
		}
		b.Length = binary.LittleEndian.Uint32(plain[1:5])
		idAt := 5
		if t >= 2 {
			b.RawLength = binary.LittleEndian.Uint32(plain[5:9])
			idAt = 9
		}
		copy(b.ID[:], plain[idAt:idAt+32])
		off += b.Length
		out = append(out, b)
		plain = plain[n:]
	}
	if int64(off) != int64(len(data)-4-int(hl)) {
		return nil, bad("blobs end at %d, the header starts at %d", off, len(data)-4-int(hl))
	}
	return out, nil
}

// openBlob authenticates, decrypts and decompresses one blob out of its
// stored bytes and checks its ID.
func (r *Repo) openBlob(b Blob, sealed []byte, dst []byte) ([]byte, error) {
	plain, err := r.key.Open(dst[:0], sealed)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: blob %s: %w: %v", r.name, key(PackFile, b.Pack), b.ID.Str(), ErrDamaged, err)
	}
	if b.RawLength != 0 {
		out, err := decoder().DecodeAll(plain, make([]byte, 0, b.RawLength))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: blob %s: %w: decompress: %v", r.name, key(PackFile, b.Pack), b.ID.Str(), ErrDamaged, err)
		}
		plain = out
	}
	if Hash(plain) != b.ID {
		return nil, fmt.Errorf("%s: %s: blob %s: %w: content does not match its ID", r.name, key(PackFile, b.Pack), b.ID.Str(), ErrDamaged)
	}
	return plain, nil
}

// LoadBlob reads one blob through the index (the whole pack is read: stores
// have no ranged reads).
func (r *Repo) LoadBlob(ctx context.Context, x *Index, t BlobType, id ID) ([]byte, error) {
	b, ok := x.Lookup(t, id)
	if !ok {
		return nil, fmt.Errorf("%s: %s blob %s: %w: in no index", r.name, t, id.Str(), ErrMissing)
	}
	data, err := r.get(ctx, key(PackFile, b.Pack))
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", r.name, key(PackFile, b.Pack), err)
	}
	return r.blobAt(b, data)
}

// blobAt cuts blob b out of its pack's bytes and opens it.
func (r *Repo) blobAt(b Blob, pack []byte) ([]byte, error) {
	end := int64(b.Offset) + int64(b.Length)
	if end > int64(len(pack)) {
		return nil, fmt.Errorf("%s: %s: blob %s: %w: pack is %d bytes, the blob ends at %d (truncated)", r.name, key(PackFile, b.Pack), b.ID.Str(), ErrDamaged, len(pack), end)
	}
	return r.openBlob(b, pack[b.Offset:end], nil)
}
