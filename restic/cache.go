package restic

import (
	"context"
	"fmt"
	"sync"
)

// packCache keeps the packs that trees were last read from: a tree walk
// reads many small tree blobs from the same few packs, and stores have no
// ranged reads. Bounded to packCacheSize bytes.
type packCache struct {
	mu    sync.Mutex
	order []ID
	packs map[ID][]byte
	size  int
}

const packCacheSize = 24 << 20

func (c *packCache) get(id ID) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.packs[id]
	return b, ok
}

func (c *packCache) put(id ID, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.packs == nil {
		c.packs = map[ID][]byte{}
	}
	if _, ok := c.packs[id]; ok || len(b) > packCacheSize {
		return
	}
	for c.size+len(b) > packCacheSize && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		c.size -= len(c.packs[old])
		delete(c.packs, old)
	}
	c.packs[id] = b
	c.order = append(c.order, id)
	c.size += len(b)
}

func (r *Repo) loadTreeBlob(ctx context.Context, x *Index, id ID) ([]byte, error) {
	b, ok := x.Lookup(TreeBlob, id)
	if !ok {
		return nil, fmt.Errorf("%s: tree %s: %w: in no index", r.name, id.Str(), ErrMissing)
	}
	data, ok := r.trees.get(b.Pack)
	if !ok {
		var err error
		if data, err = r.get(ctx, key(PackFile, b.Pack)); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", r.name, key(PackFile, b.Pack), err)
		}
		r.trees.put(b.Pack, data)
	}
	return r.blobAt(b, data)
}
