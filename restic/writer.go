package restic

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
)

// packTarget is the size at which a pack is finished and uploaded: restic's
// minimum pack size. Packs are built in memory (no temporary files on a
// volume that may be small or a tmpfs): one being filled and one uploading
// per repository, each up to 4 MiB plus its last blob (at most 8 MiB), keeps
// a snapshot within the 64 MiB the entrypoint may use, where restic's 16 MiB
// default would not (restic spools packs to temporary files instead).
const packTarget = 4 << 20

// packer accumulates sealed blobs of one type.
type packer struct {
	buf   []byte
	blobs []Blob
}

// writer adds blobs to one repository: it packs them, uploads full packs
// (one upload in flight per blob type) and, at Flush, writes an index file
// naming every pack it uploaded. It is safe for concurrent use.
type writer struct {
	r     *Repo
	index *Index

	mu      sync.Mutex
	claimed map[blobKey]bool // blobs this writer will store (or stored): never stored twice
	cur     map[BlobType]*packer
	uploads map[BlobType]chan struct{} // one upload in flight per type
	done    map[ID][]Blob              // packs uploaded, not yet in an index file
	err     error
	wg      sync.WaitGroup

	added    int64 // bytes of blobs stored (sealed), headers included at Flush
	addedRaw int64 // plaintext bytes of new blobs
	blobsNew int
}

func newWriter(r *Repo, x *Index) *writer {
	return &writer{r: r, index: x, claimed: map[blobKey]bool{}, cur: map[BlobType]*packer{},
		uploads: map[BlobType]chan struct{}{DataBlob: make(chan struct{}, 1), TreeBlob: make(chan struct{}, 1)}, done: map[ID][]Blob{}}
}

// Claim reports whether the blob must be stored by this writer: it is in no
// index and nobody claimed it before. A claimed blob must then be Added (or
// the writer's whole work abandoned: an unreferenced claim is never indexed).
func (w *writer) Claim(t BlobType, id ID) bool {
	if w.index.Has(t, id) {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	k := blobKey{t, id}
	if w.claimed[k] {
		return false
	}
	w.claimed[k] = true
	return true
}

// Add seals a (compressed, when rawLen > 0) blob into the current pack of its
// type, and starts the pack's upload when it is full.
func (w *writer) Add(ctx context.Context, t BlobType, id ID, data []byte, rawLen int) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	p := w.cur[t]
	if p != nil && len(p.buf)+len(data)+extension+headerRoom(len(p.blobs)+1) > cap(p.buf) {
		// The blob would outgrow the buffer: the pack is finished first,
		// so that no pack buffer is ever reallocated.
		delete(w.cur, t)
		w.mu.Unlock()
		if err := w.ship(ctx, t, p); err != nil {
			return err
		}
		w.mu.Lock()
		p = w.cur[t]
	}
	if p == nil {
		p = &packer{buf: packBuffer(len(data) + extension)}
		w.cur[t] = p
	}
	// Sealed straight into the pack: no copy of the blob, and AES-CTR with
	// Poly1305 runs at GB/s, so the lock is held briefly.
	off := len(p.buf)
	p.buf = w.r.key.Seal(p.buf, data)
	n := len(p.buf) - off
	p.blobs = append(p.blobs, Blob{Type: t, ID: id, Offset: uint32(off), Length: uint32(n), RawLength: uint32(rawLen)})
	w.added += int64(n)
	w.addedRaw += int64(max(rawLen, len(data)))
	w.blobsNew++
	full := len(p.buf) >= packTarget || len(p.blobs) >= (maxHeaderSize-4)/compressedEntrySize-1
	if full {
		delete(w.cur, t)
	}
	w.mu.Unlock()
	if full {
		return w.ship(ctx, t, p)
	}
	return nil
}

// ship finishes p and uploads it in the background, waiting while another
// pack of its type is still uploading.
func (w *writer) ship(ctx context.Context, t BlobType, p *packer) error {
	select {
	case w.uploads[t] <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() { <-w.uploads[t] }()
		if err := w.upload(ctx, p); err != nil {
			w.mu.Lock()
			if w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
		}
	}()
	return nil
}

func (w *writer) upload(ctx context.Context, p *packer) error {
	hdr := appendHeader(make([]byte, 0, len(p.blobs)*compressedEntrySize), p.blobs)
	p.buf = w.r.key.Seal(p.buf, hdr)
	sealedHdr := len(hdr) + extension
	p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(sealedHdr))
	id := Hash(p.buf)
	for i := range p.blobs {
		p.blobs[i].Pack = id
	}
	if err := w.r.st.Put(ctx, key(PackFile, id), bytes.NewReader(p.buf), int64(len(p.buf))); err != nil {
		return fmt.Errorf("%s: upload %s: %w", w.r.name, key(PackFile, id), err)
	}
	w.mu.Lock()
	w.done[id] = p.blobs
	w.added += int64(sealedHdr + 4)
	w.mu.Unlock()
	if cap(p.buf) == packBufferSize {
		//lint:ignore SA6002 the slice header Put boxes is 24 bytes per pack buffer
		packBuffers.Put(p.buf[:0])
	}
	p.buf = nil
	return nil
}

// packBuffers recycles pack buffers: a snapshot fills hundreds of packs,
// and a fresh 8 MiB buffer each time is garbage the collector must catch
// up with before the process's memory stays flat.
var packBuffers sync.Pool

// headerRoom is the room a pack of n blobs keeps for its header.
func headerRoom(n int) int { return n*compressedEntrySize + extension + 4 }

// packBufferSize is a pack buffer's capacity: a full pack and room for a
// last blob of average size (1 MiB); a blob that does not fit starts the
// next pack.
const packBufferSize = packTarget + 1<<20

// packBuffer is an empty buffer for a pack that starts with a blob of n
// sealed bytes (a blob larger than a pack buffer gets its own).
func packBuffer(n int) []byte {
	if n+headerRoom(1) > packBufferSize {
		return make([]byte, 0, n+headerRoom(1))
	}
	if b, ok := packBuffers.Get().([]byte); ok {
		return b
	}
	return make([]byte, 0, packBufferSize)
}

// Flush uploads the packs being filled, waits for every upload, and writes
// one index file naming them; the blobs are then in w.index too. The index
// file is written only after its packs are stored, so a crash before leaves
// unreferenced packs (restic check accepts them; prune removes them), never
// an index naming a missing pack.
func (w *writer) Flush(ctx context.Context) error {
	for _, t := range []BlobType{DataBlob, TreeBlob} {
		w.mu.Lock()
		p := w.cur[t]
		delete(w.cur, t)
		w.mu.Unlock()
		if p != nil && len(p.blobs) > 0 {
			if err := w.ship(ctx, t, p); err != nil {
				return err
			}
		}
	}
	w.wg.Wait()
	w.mu.Lock()
	err, done := w.err, w.done
	w.done = map[ID][]Blob{}
	w.mu.Unlock()
	if err != nil {
		return err
	}
	if len(done) == 0 {
		return nil
	}
	if _, err := w.r.SaveJSON(ctx, IndexFile, indexOf(done, nil)); err != nil {
		return err
	}
	for _, bs := range done {
		w.index.add(bs)
	}
	return nil
}

// Abandon waits for the uploads in flight (their packs stay unreferenced).
func (w *writer) Abandon() { w.wg.Wait() }
