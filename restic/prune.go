package restic

import (
	"context"
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"

	"snapvisor/store"
)

// DefaultMaxUnused is PruneOptions.MaxUnused when it is 0: restic's
// --max-unused default (5%).
const DefaultMaxUnused = 0.05

// indexSwitchTimeout bounds writing the new index and deleting the old
// index files, which Prune does not interrupt once begun.
const indexSwitchTimeout = 10 * time.Minute

// indexMaxBlobs is the most blobs Prune writes into one index file
// (restic 0.14's indexMaxBlobs), so that no index file grows without bound.
const indexMaxBlobs = 50000

// PruneOptions bound a Prune.
type PruneOptions struct {
	// Budget bounds the time of the whole prune from the call, the lock
	// wait included (0: none): the repack, the only long step, stops (or
	// is skipped) when too little of it is left.
	// Deleting unused packs and rewriting the index are always finished once
	// started, so the budget may be overrun by them and by one pack's repack.
	Budget time.Duration
	// MaxUnused is the share of unused bytes the repository may keep after
	// the prune (restic's --max-unused): partly used packs are repacked,
	// those with the largest unused share first, until at most this share
	// is left. 0: DefaultMaxUnused; it must be below 1.
	MaxUnused float64
	// LockWait is how long to wait for the exclusive lock while another
	// client holds a lock (0: try once); then Prune returns a *LockedError.
	LockWait time.Duration
	Log      *zap.Logger // nil: no logs
}

// PruneStats say what a Prune did.
type PruneStats struct {
	PacksDeleted   int   // packs deleted: unused, orphaned and repacked ones
	OrphansDeleted int   // of PacksDeleted: packs that no index named (left by killed writers)
	UploadsAborted int   // upload temporaries (half-written files of killed writers) removed
	PacksRepacked  int   // of PacksDeleted: packs whose used blobs were written anew
	PacksWritten   int   // new packs holding the repacked blobs
	BlobsDeleted   int   // unused blobs dropped with the deleted packs
	BlobsRepacked  int   // used blobs written anew
	BytesFreed     int64 // bytes of the deleted packs less those of the new ones
	Duration       time.Duration
	// Skipped says why the repack was skipped or cut short by the budget
	// ("" when it was not); the packs left are repacked by a later prune.
	Skipped string
}

// Prune deletes the data no snapshot uses, under an exclusive lock. It
// walks every snapshot's trees (a tree that cannot be read is an error and
// nothing is deleted), deletes packs no index names, repacks partly used
// packs (see MaxUnused), writes a complete new index, and only then deletes
// the old index files and the packs no longer named. At every point a
// crash leaves a repository that restic check accepts (with unreferenced
// packs, which the next prune deletes) and every snapshot restorable.
func Prune(ctx context.Context, r *Repo, opts PruneOptions) (PruneStats, error) {
	start := time.Now()
	st, err := prune(ctx, r, opts, start)
	st.Duration = time.Since(start)
	if err != nil {
		return st, fmt.Errorf("prune: %w", err)
	}
	return st, nil
}

func prune(ctx context.Context, r *Repo, opts PruneOptions, start time.Time) (PruneStats, error) {
	var st PruneStats
	maxUnused := opts.MaxUnused
	if maxUnused == 0 {
		maxUnused = DefaultMaxUnused
	}
	if maxUnused < 0 || maxUnused >= 1 {
		return st, fmt.Errorf("max unused share %v is not in [0, 1)", opts.MaxUnused)
	}
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String("repository", r.name))
	lock, err := r.LockWith(ctx, LockOptions{Exclusive: true, Wait: opts.LockWait, Log: log})
	if err != nil {
		return st, err
	}
	defer func() {
		if err := lock.Unlock(); err != nil {
			log.Warn("prune: unlock failed", zap.Error(err))
		}
	}()

	// Plan: nothing is changed until every snapshot's trees are read.
	x, err := r.LoadIndex(ctx)
	if err != nil {
		return st, err
	}
	t0 := time.Now()
	listed, err := r.List(ctx, PackFile)
	if err != nil {
		return st, err
	}
	roundTrip := time.Since(t0)
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return st, err
	}
	used, err := r.usedBlobs(ctx, x, snaps)
	if err != nil {
		return st, err
	}
	indexed := x.Packs()
	plan, err := planPrune(indexed, listed, used, maxUnused)
	if err != nil {
		return st, err
	}
	log.Info("prune: planned", zap.Int("snapshots", len(snaps)), zap.Int("packs", len(listed)),
		zap.Int("orphans", len(plan.orphans)), zap.Int("unused", len(plan.remove)), zap.Int("partly_used", len(plan.repack)),
		zap.Int64("used_bytes", plan.usedBytes), zap.Int64("unused_bytes", plan.unusedBytes))

	// 0. Upload temporaries left by writers killed mid-file (a pack, an
	// index or a lock file half written): no store lists them, and no
	// writer is at work while we hold the exclusive lock.
	if ul, ok := store.As[store.UploadLister](r.st); ok {
		ups, err := ul.Uploads(ctx, "")
		if err != nil {
			return st, fmt.Errorf("list interrupted uploads: %w", err)
		}
		for _, u := range ups {
			if err := lock.Check(); err != nil {
				return st, err
			}
			if err := ul.AbortUpload(ctx, u); err != nil {
				return st, fmt.Errorf("remove interrupted upload of %s: %w", u.Key, err)
			}
			log.Debug("prune: interrupted upload removed", zap.String("key", u.Key))
			st.UploadsAborted++
		}
	}

	// 1. Packs no index names: nothing refers to them, and no writer is
	// at work while we hold the exclusive lock.
	for _, id := range plan.orphans {
		if err := lock.Check(); err != nil {
			return st, err
		}
		if err := r.Remove(ctx, PackFile, id); err != nil {
			return st, err
		}
		log.Debug("prune: orphaned pack deleted", zap.String("pack", id.Str()))
		st.PacksDeleted++
		st.OrphansDeleted++
		st.BytesFreed += listed[id]
	}
	if len(plan.orphans) > 0 {
		log.Info("prune: orphaned packs deleted", zap.Int("packs", len(plan.orphans)))
	}

	// 2. Repack: the used blobs of partly used packs into new packs (and
	// an index file of their own, written by the writer's Flush).
	var deadline time.Time
	if opts.Budget > 0 {
		deadline = start.Add(opts.Budget)
	}
	// reserve is the time kept back for the index switch and the deletions.
	reserve := max(opts.Budget/10, time.Duration(4+len(x.files)+len(plan.remove)/16)*roundTrip)
	rp, err := r.repack(ctx, plan, x, used, deadline, reserve, log)
	if err != nil {
		return st, err
	}
	st.Skipped = rp.skipped
	if rp.skipped != "" {
		log.Info("prune: repack cut short by the time budget", zap.String("why", rp.skipped))
	}
	if len(rp.done) > 0 {
		log.Info("prune: repacked", zap.Int("packs", len(rp.done)), zap.Int("blobs", rp.blobs), zap.Int("new_packs", len(rp.written)))
	}

	// 3. The complete new index: every pack that stays and the new ones.
	drop := map[ID]bool{}
	for _, id := range plan.remove {
		drop[id] = true
	}
	for _, id := range plan.missing {
		drop[id] = true
	}
	for _, id := range rp.done {
		drop[id] = true
	}
	if len(drop) == 0 {
		return st, nil // nothing named by the index goes away
	}
	final := map[ID][]Blob{}
	for id, bs := range indexed {
		if !drop[id] {
			final[id] = bs
		}
	}
	for id, bs := range rp.written {
		final[id] = bs
	}
	if err := covered(used, final); err != nil {
		return st, err // a bug, caught before anything named by an index is deleted
	}
	oldIndex := append(sortedIDs(x.files), rp.indexFiles...)
	if err := lock.Check(); err != nil {
		return st, err
	}
	// The index switch runs to its end once begun, whatever ctx says
	// (bounded by indexSwitchTimeout): a stop in between would be safe
	// (packs named twice), but leaves the next client more to read.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), indexSwitchTimeout)
	defer cancel()
	indexIDs, err := r.writeIndex(sctx, final, oldIndex)
	if err != nil {
		return st, err
	}
	log.Debug("prune: new index written", zap.Int("index_files", len(indexIDs)))
	// From here on, the new index names every pack that stays: the old
	// index files go first, then the packs only they named. A crash
	// between leaves packs named twice (restic check: a hint) or unnamed
	// packs (orphans), never a name without its pack.
	for _, id := range oldIndex {
		if err := r.Remove(sctx, IndexFile, id); err != nil {
			return st, err
		}
		log.Debug("prune: old index file deleted", zap.String("index", id.Str()))
	}
	log.Info("prune: index rewritten", zap.Int("index_files", len(indexIDs)), zap.Int("old_index_files", len(oldIndex)))
	nx := newIndex()
	for _, bs := range final {
		nx.add(bs)
	}
	for _, id := range indexIDs {
		nx.files[id] = true
	}
	r.indexMu.Lock()
	r.index = nx
	r.indexMu.Unlock()

	// 4. The packs no index names any more.
	for _, id := range append(append([]ID(nil), plan.remove...), rp.done...) {
		if err := lock.Check(); err != nil {
			return st, err
		}
		if err := r.Remove(ctx, PackFile, id); err != nil {
			return st, err
		}
		log.Debug("prune: pack deleted", zap.String("pack", id.Str()))
		st.PacksDeleted++
		st.BytesFreed += listed[id]
	}
	for _, id := range plan.remove {
		st.BlobsDeleted += len(indexed[id])
	}
	for _, id := range rp.done {
		st.BlobsDeleted += plan.info[id].unusedBlobs
	}
	st.PacksRepacked = len(rp.done)
	st.PacksWritten = len(rp.written)
	st.BlobsRepacked = rp.blobs
	st.BytesFreed -= rp.bytes
	log.Info("prune: done", zap.Int("packs_deleted", st.PacksDeleted), zap.Int64("bytes_freed", st.BytesFreed))
	return st, nil
}

// usedBlobs walks every snapshot's trees and returns the blobs they use:
// the trees and the content of their files. A snapshot without a tree or a
// tree that cannot be read is an error naming the snapshot.
func (r *Repo) usedBlobs(ctx context.Context, x *Index, snaps []*Snapshot) (map[blobKey]struct{}, error) {
	used := map[blobKey]struct{}{}
	for _, s := range snaps {
		if s.Tree == nil {
			return nil, fmt.Errorf("snapshot %s has no tree: the repository is damaged (nothing deleted)", s.ID.Str())
		}
		pending := []ID{*s.Tree}
		for len(pending) > 0 {
			id := pending[len(pending)-1]
			pending = pending[:len(pending)-1]
			k := blobKey{TreeBlob, id}
			if _, seen := used[k]; seen {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			t, err := r.LoadTree(ctx, x, id)
			if err != nil {
				return nil, fmt.Errorf("snapshot %s: %w (nothing deleted)", s.ID.Str(), err)
			}
			used[k] = struct{}{}
			for _, n := range t.Nodes {
				for _, c := range n.Content {
					used[blobKey{DataBlob, c}] = struct{}{}
				}
				if n.Subtree != nil {
					pending = append(pending, *n.Subtree)
				}
			}
		}
	}
	return used, nil
}

// packInfo is what the plan knows of one indexed pack.
type packInfo struct {
	usedBlobs, unusedBlobs int
	usedBytes, unusedBytes int64 // stored blob lengths; usedBytes includes the header
	size                   int64 // from the index: blobs and header
	typ                    BlobType
	mixed                  bool // data and tree blobs
}

// prunePlan is what a prune does; planPrune makes it.
type prunePlan struct {
	orphans []ID // listed packs that no index names: deleted first
	remove  []ID // indexed packs with no used blob: deleted after the index switch
	missing []ID // indexed packs that are not stored, with no used blob: dropped from the index
	repack  []ID // partly used packs to write anew, in order of preference
	info    map[ID]packInfo

	usedBytes, unusedBytes int64 // of used and unused blobs (duplicates of a used blob are unused)
}

// headerSize is the stored size of the header of a pack holding bs.
func headerSize(bs []Blob) int64 {
	n := int64(extension + 4)
	for _, b := range bs {
		if b.RawLength != 0 {
			n += compressedEntrySize
		} else {
			n += entrySize
		}
	}
	return n
}

// smallPack is the size below which a partly used pack is always repacked
// (restic's: a 25th of its target pack size): cheap, and it ends the
// fragmentation.
const smallPack = packTarget / 25

// planPrune decides, from the index (pack -> blobs), the stored packs
// (pack -> size) and the used blobs, which packs are deleted and which
// repacked; see PruneOptions.MaxUnused. It refuses when a used blob is in
// no index, when a pack holding used blobs is missing, or when its stored
// size is not what the index says.
func planPrune(indexed map[ID][]Blob, listed map[ID]int64, used map[blobKey]struct{}, maxUnused float64) (*prunePlan, error) {
	plan := &prunePlan{info: make(map[ID]packInfo, len(indexed))}
	order := sortedIDs(indexed)
	copies := map[blobKey]int{} // of used blobs
	for _, id := range order {
		for _, b := range indexed[id] {
			if _, ok := used[blobKey{b.Type, b.ID}]; ok {
				copies[blobKey{b.Type, b.ID}]++
			}
		}
	}
	var lost []string
	for k := range used {
		if copies[k] == 0 {
			lost = append(lost, k.t.String()+" "+k.id.Str())
		}
	}
	if len(lost) > 0 {
		sort.Strings(lost)
		return nil, fmt.Errorf("%d used blobs are in no index (%s): the repository is damaged; nothing deleted (run restic check)",
			len(lost), joinFirst(lost, 5))
	}
	// Each used blob is used in one pack; its other copies are unused. The
	// copy kept is one in a pack with other used blobs, or the last one
	// (restic's rule), so that packs of duplicates only can go.
	left := map[blobKey]int{}
	for k, n := range copies {
		if n > 1 {
			left[k] = n
		}
	}
	for pass := 0; pass < 2; pass++ {
		for _, id := range order {
			p := plan.info[id]
			for _, b := range indexed[id] {
				k := blobKey{b.Type, b.ID}
				_, isUsed := used[k]
				n, dup := left[k]
				var usedHere bool
				switch {
				case pass == 0 && dup, pass == 1 && !dup:
					continue // duplicates are decided once the packs' other blobs are
				case !isUsed:
				case !dup:
					usedHere = true
				case n == 0:
				case p.usedBlobs > 0 || n == 1:
					usedHere, left[k] = true, 0
				default:
					left[k] = n - 1
				}
				if usedHere {
					p.usedBlobs++
					p.usedBytes += int64(b.Length)
					plan.usedBytes += int64(b.Length)
				} else {
					p.unusedBlobs++
					p.unusedBytes += int64(b.Length)
					plan.unusedBytes += int64(b.Length)
				}
			}
			plan.info[id] = p
		}
	}
	var missing []string
	var candidates []ID
	unusedAfter := plan.unusedBytes
	for _, id := range order {
		p := plan.info[id]
		bs := indexed[id]
		hdr := headerSize(bs)
		p.size = hdr + p.usedBytes + p.unusedBytes
		p.usedBytes += hdr
		p.typ = bs[0].Type
		for _, b := range bs {
			p.mixed = p.mixed || b.Type != p.typ
		}
		plan.info[id] = p
		size, stored := listed[id]
		switch {
		case !stored && p.usedBlobs == 0:
			plan.missing = append(plan.missing, id)
			unusedAfter -= p.unusedBytes
		case !stored:
			missing = append(missing, id.Str())
		case size != p.size && p.usedBlobs > 0:
			return nil, fmt.Errorf("%s: %d bytes stored, the index says %d: the pack was changed or truncated; nothing deleted (run restic check)",
				key(PackFile, id), size, p.size)
		case p.usedBlobs == 0:
			plan.remove = append(plan.remove, id)
			unusedAfter -= p.unusedBytes
		case p.unusedBlobs > 0 || p.mixed:
			candidates = append(candidates, id)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%d packs holding used blobs are missing (%s): the repository is damaged; nothing deleted (run restic check)",
			len(missing), joinFirst(missing, 5))
	}
	for id := range listed {
		if _, ok := indexed[id]; !ok {
			plan.orphans = append(plan.orphans, id)
		}
	}
	sort.Slice(plan.orphans, func(i, j int) bool { return plan.orphans[i].String() < plan.orphans[j].String() })

	// restic's choice: tree and mixed packs first, then small ones, then
	// by unused share, largest first; data packs only until the unused
	// share is down to maxUnused.
	rank := func(p packInfo) int {
		switch {
		case p.typ != DataBlob || p.mixed:
			return 0
		case p.size < smallPack:
			return 1
		}
		return 2
	}
	sort.SliceStable(candidates, func(i, j int) bool {
		pi, pj := plan.info[candidates[i]], plan.info[candidates[j]]
		if ri, rj := rank(pi), rank(pj); ri != rj {
			return ri < rj
		}
		return pi.unusedBytes*pj.usedBytes > pj.unusedBytes*pi.usedBytes
	})
	maxUnusedAfter := int64(maxUnused / (1 - maxUnused) * float64(plan.usedBytes))
	for _, id := range candidates {
		p := plan.info[id]
		if rank(p) == 2 && unusedAfter < maxUnusedAfter {
			continue
		}
		plan.repack = append(plan.repack, id)
		unusedAfter -= p.unusedBytes
	}
	return plan, nil
}

func joinFirst(s []string, n int) string {
	if len(s) <= n {
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("%v and %d more", s[:n], len(s)-n)
}

// repacked is the outcome of a repack.
type repacked struct {
	done       []ID          // the packs whose used blobs are all in new packs now
	written    map[ID][]Blob // the new packs
	indexFiles []ID          // the index file the writer wrote for them
	blobs      int           // blobs written
	bytes      int64         // bytes of the new packs
	skipped    string        // why not every planned pack was repacked
}

// repack writes the used blobs of plan.repack's packs, that no staying
// pack holds, into new packs, as they are stored (compressed payloads are
// not recompressed), each checked against its ID first. It stops before a
// pack when the time left before deadline (zero: none) is less than
// reserve and the time a pack has taken.
func (r *Repo) repack(ctx context.Context, plan *prunePlan, x *Index, used map[blobKey]struct{}, deadline time.Time, reserve time.Duration, log *zap.Logger) (repacked, error) {
	var out repacked
	if len(plan.repack) == 0 {
		return out, nil
	}
	indexed := x.Packs()
	going := map[ID]bool{}
	for _, id := range plan.remove {
		going[id] = true
	}
	for _, id := range plan.repack {
		going[id] = true
	}
	staying := map[blobKey]bool{}
	for id, bs := range indexed {
		if !going[id] {
			for _, b := range bs {
				staying[blobKey{b.Type, b.ID}] = true
			}
		}
	}
	w := newWriter(r, newIndex())
	stored := map[blobKey]bool{}
	var perPack time.Duration
	for i, id := range plan.repack {
		if !deadline.IsZero() {
			if left := time.Until(deadline); left < reserve+perPack {
				out.skipped = fmt.Sprintf("%d of %d partly used packs not repacked: %v left of the time budget, about %v needed for the next and %v kept for the index and deletions",
					len(plan.repack)-i, len(plan.repack), max(left, 0).Round(time.Millisecond), perPack.Round(time.Millisecond), reserve.Round(time.Millisecond))
				break
			}
		}
		t0 := time.Now()
		data, err := r.get(ctx, key(PackFile, id))
		if err != nil {
			w.Abandon()
			return repacked{}, fmt.Errorf("%s: repack %s: %w", r.name, key(PackFile, id), err)
		}
		for _, b := range indexed[id] {
			k := blobKey{b.Type, b.ID}
			if _, isUsed := used[k]; !isUsed || staying[k] || stored[k] {
				continue
			}
			if _, err := r.blobAt(b, data); err != nil { // authenticates and checks the ID
				w.Abandon()
				return repacked{}, fmt.Errorf("repack: %w (nothing deleted)", err)
			}
			payload, err := r.key.Open(nil, data[b.Offset:b.Offset+b.Length])
			if err != nil {
				w.Abandon()
				return repacked{}, fmt.Errorf("repack: %w", err)
			}
			if err := w.Add(ctx, b.Type, b.ID, payload, int(b.RawLength)); err != nil {
				w.Abandon()
				return repacked{}, fmt.Errorf("repack: %w", err)
			}
			stored[k] = true
			out.blobs++
		}
		out.done = append(out.done, id)
		perPack = max(perPack, time.Since(t0))
		log.Debug("prune: pack read for repacking", zap.String("pack", id.Str()))
	}
	if err := w.Flush(ctx); err != nil {
		w.Abandon()
		return repacked{}, fmt.Errorf("repack: %w", err)
	}
	out.written = w.index.Packs()
	out.bytes = w.added
	if len(out.written) > 0 {
		ids, err := r.List(ctx, IndexFile)
		if err != nil {
			return repacked{}, err
		}
		// The writer's index file names exactly the new packs.
		for id := range ids {
			if !x.files[id] {
				out.indexFiles = append(out.indexFiles, id)
			}
		}
	}
	return out, nil
}

// covered checks that every used blob is in one of packs: the last guard
// before the index that names packs is replaced.
func covered(used map[blobKey]struct{}, packs map[ID][]Blob) error {
	have := make(map[blobKey]bool, len(used))
	for _, bs := range packs {
		for _, b := range bs {
			have[blobKey{b.Type, b.ID}] = true
		}
	}
	for k := range used {
		if !have[k] {
			return fmt.Errorf("internal error: used %s blob %s would be in no pack after the prune; nothing deleted", k.t, k.id.Str())
		}
	}
	return nil
}

// writeIndex writes index files naming packs, at most indexMaxBlobs blobs
// each; the last one lists supersedes (the index files it replaces, which
// the caller deletes once it returns). It returns the new files' IDs.
func (r *Repo) writeIndex(ctx context.Context, packs map[ID][]Blob, supersedes []ID) ([]ID, error) {
	var ids []ID
	group, n := map[ID][]Blob{}, 0
	order := sortedIDs(packs)
	for i, id := range order {
		group[id] = packs[id]
		n += len(packs[id])
		if n < indexMaxBlobs && i < len(order)-1 {
			continue
		}
		var sup []ID
		if i == len(order)-1 {
			sup = supersedes
		}
		id, err := r.SaveJSON(ctx, IndexFile, indexOf(group, sup))
		if err != nil {
			return ids, err
		}
		ids = append(ids, id)
		group, n = map[ID][]Blob{}, 0
	}
	return ids, nil // no pack stays: no index file is needed
}
