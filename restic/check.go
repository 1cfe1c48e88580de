package restic

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// CheckOptions tune Check.
type CheckOptions struct {
	ReadData bool          // read every pack and authenticate every blob
	Progress *atomic.Int64 // bytes of packs read so far (ReadData)
}

// CheckReport is what Check found. Errors are damage; Orphans (packs no
// index names, left by an interrupted snapshot) are not.
type CheckReport struct {
	Snapshots int
	Packs     int
	Blobs     int
	Orphans   []ID
	Errors    []error
	// Damaged lists the snapshots that cannot be restored whole, oldest
	// first, each with the reason.
	Damaged []DamagedSnapshot
	Read    int64 // bytes of packs read (ReadData)
}

// DamagedSnapshot is a snapshot Check found unrestorable.
type DamagedSnapshot struct {
	Snapshot *Snapshot
	Reason   error
}

// OK reports whether nothing is damaged.
func (c CheckReport) OK() bool { return len(c.Errors) == 0 && len(c.Damaged) == 0 }

// Check verifies the repository's structure: every index file loads, every
// pack an index names exists with the size the index implies, every
// snapshot's trees load and name only indexed blobs. With ReadData every pack
// is read: its name is its hash, its header matches the index, every blob
// authenticates, decompresses and hashes to its ID. A snapshot that reaches
// damaged or missing data is listed in Damaged. An error is returned only
// when the check itself could not run (the repository unreadable).
func (r *Repo) Check(ctx context.Context, opts CheckOptions) (CheckReport, error) {
	var rep CheckReport
	x, err := r.LoadIndex(ctx)
	if err != nil {
		return rep, err
	}
	packs, err := r.List(ctx, PackFile)
	if err != nil {
		return rep, err
	}
	inIndex := x.Packs()
	rep.Packs, rep.Blobs = len(inIndex), x.Len()
	badPacks := map[ID]error{}
	for _, id := range sortedIDs(inIndex) {
		want := int64(0)
		for _, b := range inIndex[id] {
			want += int64(b.Length)
		}
		size, ok := packs[id]
		if !ok {
			badPacks[id] = fmt.Errorf("%s: %s: missing (named by the index)", r.name, key(PackFile, id))
			continue
		}
		if size < want+4+extension {
			badPacks[id] = fmt.Errorf("%s: %s: %d bytes, the index implies at least %d (truncated)", r.name, key(PackFile, id), size, want+4+extension)
		}
	}
	for _, id := range sortedIDs(packs) {
		if _, ok := inIndex[id]; !ok {
			rep.Orphans = append(rep.Orphans, id)
		}
	}
	if opts.ReadData {
		r.readPacks(ctx, inIndex, badPacks, &rep, opts.Progress)
	}
	for _, id := range sortedIDs(badPacks) {
		rep.Errors = append(rep.Errors, badPacks[id])
	}
	badBlob := func(t BlobType, id ID) error {
		b, ok := x.Lookup(t, id)
		if !ok {
			return fmt.Errorf("%s blob %s: %w: in no index", t, id.Str(), ErrMissing)
		}
		if err := badPacks[b.Pack]; err != nil {
			return err
		}
		return nil
	}
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return rep, err
	}
	rep.Snapshots = len(snaps)
	seen := map[ID]error{} // trees already walked, and their verdict
	var walk func(id ID) error
	walk = func(id ID) error {
		if err, ok := seen[id]; ok {
			return err
		}
		err := func() error {
			if err := badBlob(TreeBlob, id); err != nil {
				return err
			}
			t, err := r.LoadTree(ctx, x, id)
			if err != nil {
				return err
			}
			for _, n := range t.Nodes {
				switch n.Type {
				case "file":
					if n.Content == nil {
						return fmt.Errorf("tree %s: file %q has no content list", id.Str(), n.Name)
					}
					for _, c := range n.Content {
						if err := badBlob(DataBlob, c); err != nil {
							return fmt.Errorf("file %q: %w", n.Name, err)
						}
					}
				case "dir":
					if n.Subtree == nil {
						return fmt.Errorf("tree %s: directory %q has no subtree", id.Str(), n.Name)
					}
					if err := walk(*n.Subtree); err != nil {
						return fmt.Errorf("%s/%w", n.Name, err)
					}
				}
			}
			return nil
		}()
		seen[id] = err
		return err
	}
	for _, sn := range snaps {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if sn.Tree == nil {
			rep.Damaged = append(rep.Damaged, DamagedSnapshot{sn, errors.New("no tree")})
			continue
		}
		if err := walk(*sn.Tree); err != nil {
			rep.Damaged = append(rep.Damaged, DamagedSnapshot{sn, err})
		}
	}
	return rep, nil
}

// readPacks reads every indexed pack and records the damaged ones.
func (r *Repo) readPacks(ctx context.Context, inIndex map[ID][]Blob, bad map[ID]error, rep *CheckReport, progress *atomic.Int64) {
	ids := sortedIDs(inIndex)
	var mu sync.Mutex
	_ = each(ctx, restoreWorkers, len(ids), func(ctx context.Context, i int) error {
		id := ids[i]
		mu.Lock()
		_, known := bad[id]
		mu.Unlock()
		if known {
			return nil
		}
		n, err := r.checkPack(ctx, id, inIndex[id])
		if progress != nil {
			progress.Add(n)
		}
		mu.Lock()
		defer mu.Unlock()
		rep.Read += n
		if err != nil {
			bad[id] = err // recorded; the other packs are still read
		}
		return nil
	})
}

func (r *Repo) checkPack(ctx context.Context, id ID, indexed []Blob) (int64, error) {
	data, err := r.get(ctx, key(PackFile, id))
	if err != nil {
		return 0, fmt.Errorf("%s: %s: %w", r.name, key(PackFile, id), err)
	}
	n := int64(len(data))
	if Hash(data) != id {
		return n, fmt.Errorf("%s: %s: %w: content does not hash to its name", r.name, key(PackFile, id), ErrDamaged)
	}
	hdr, err := r.parseHeader(id, data)
	if err != nil {
		return n, err
	}
	inHdr := map[blobKey]Blob{}
	for _, b := range hdr {
		inHdr[blobKey{b.Type, b.ID}] = b
	}
	sort.Slice(indexed, func(i, j int) bool { return indexed[i].Offset < indexed[j].Offset })
	for _, b := range indexed {
		h, ok := inHdr[blobKey{b.Type, b.ID}]
		if !ok || h.Offset != b.Offset || h.Length != b.Length {
			return n, fmt.Errorf("%s: %s: %w: blob %s: index and pack header disagree", r.name, key(PackFile, id), ErrDamaged, b.ID.Str())
		}
		if _, err := r.blobAt(b, data); err != nil {
			return n, err
		}
	}
	return n, nil
}
