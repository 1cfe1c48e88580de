package gitsnap

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"go.uber.org/zap"
)

// VerifyReport counts what Verify read.
type VerifyReport struct {
	Commits, Trees, Blobs int64
	Bytes                 int64
}

// Verify reads every object of head's history (all parents, every
// tree and blob) and checks that each hashes to its name: git fsck's
// object check for one branch.
func (r *Repo) Verify(ctx context.Context, head plumbing.Hash) (VerifyReport, error) {
	var rep VerifyReport
	seen := map[plumbing.Hash]bool{}
	todo := []plumbing.Hash{head}
	for len(todo) > 0 {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		h := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[h] {
			continue
		}
		seen[h] = true
		c, err := r.commit(h)
		if err != nil {
			return rep, err
		}
		rep.Commits++
		if err := r.verifyTree(ctx, c.TreeHash, seen, &rep); err != nil {
			return rep, fmt.Errorf("commit %s: %w", short(h), err)
		}
		todo = append(todo, c.ParentHashes...)
	}
	return rep, nil
}

func (r *Repo) verifyTree(ctx context.Context, h plumbing.Hash, seen map[plumbing.Hash]bool, rep *VerifyReport) error {
	if seen[h] {
		return nil
	}
	seen[h] = true
	t, err := r.tree(h)
	if err != nil {
		return err
	}
	rep.Trees++
	for _, e := range t.Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch e.Mode {
		case filemode.Dir:
			if err := r.verifyTree(ctx, e.Hash, seen, rep); err != nil {
				return err
			}
		case filemode.Submodule:
		default:
			if seen[e.Hash] {
				continue
			}
			seen[e.Hash] = true
			cw := &countWriter{w: io.Discard}
			if err := r.readBlob(e.Hash, cw); err != nil {
				return fmt.Errorf("%s: %w", e.Name, err)
			}
			rep.Blobs++
			rep.Bytes += cw.n
		}
	}
	return nil
}

// Squash replaces the commits of the branch's first-parent line made
// before cutoff by one commit holding the newest of them's tree, and
// rewrites the newer commits on top of it (same trees, authors, times and
// messages) — in batches: only once the oldest commit after the root is
// older than cutoff-slack, so that the branch is not rewritten on every
// run. The previous head is kept as the pre-squash history (Push may
// overwrite remote branches that are part of it) until SquashDone. It
// reports whether it rewrote anything.
func (r *Repo) Squash(cutoff time.Time, slack time.Duration, log *zap.Logger) (bool, error) {
	head, err := r.Head()
	if err != nil {
		return false, err
	}
	var line []*object.Commit // newest first
	for h := head; !h.IsZero(); {
		c, err := object.GetCommit(r.st, h)
		if err != nil {
			return false, err
		}
		line = append(line, c)
		h = plumbing.ZeroHash
		if len(c.ParentHashes) > 0 {
			h = c.ParentHashes[0]
		}
	}
	if len(line) < 3 || !line[len(line)-2].Committer.When.Before(cutoff.Add(-slack)) {
		return false, nil // nothing (or not enough yet) to squash
	}
	k := -1 // the newest commit before cutoff
	for i, c := range line {
		if c.Committer.When.Before(cutoff) {
			k = i
			break
		}
	}
	if k < 0 || k == len(line)-1 {
		return false, nil
	}
	last := line[k]
	n := len(line) - k
	base := &object.Commit{Author: last.Author, Committer: last.Committer, TreeHash: last.TreeHash,
		Message: fmt.Sprintf("snapvisor: %d snapshots up to %s squashed (SNAPVISOR_GIT_SQUASH_AFTER)\n\nThe tree of %s, the newest of them:\n\n%s",
			n, last.Committer.When.UTC().Format(time.RFC3339), last.Hash, last.Message)}
	if err := r.beginPack(); err != nil {
		return false, err
	}
	packed := false
	defer func() { _ = r.endPack(packed) }()
	parent, err := r.writeObject(base)
	if err != nil {
		return false, err
	}
	for i := k - 1; i >= 0; i-- {
		c := line[i]
		nc := &object.Commit{Author: c.Author, Committer: c.Committer, TreeHash: c.TreeHash, Message: c.Message, ParentHashes: []plumbing.Hash{parent}}
		if parent, err = r.writeObject(nc); err != nil {
			return false, err
		}
	}
	// The old history stays reachable (and remote branches in it may be
	// overwritten) until every remote has the new one. When an earlier
	// squash is still being pushed, a merge commit keeps both histories.
	keep := head
	if prev, err := r.st.Reference(r.preSquashRef()); err == nil {
		hc, err := object.GetCommit(r.st, head)
		if err != nil {
			return false, err
		}
		m := &object.Commit{Author: hc.Author, Committer: hc.Committer, TreeHash: hc.TreeHash,
			Message: "snapvisor: histories rewritten by squashes not yet on every remote\n", ParentHashes: []plumbing.Hash{prev.Hash(), head}}
		if keep, err = r.writeObject(m); err != nil {
			return false, err
		}
	}
	packed = true
	if err := r.endPack(true); err != nil {
		return false, err
	}
	if err := r.st.SetReference(plumbing.NewHashReference(r.preSquashRef(), keep)); err != nil {
		return false, err
	}
	if err := r.setHead(parent, head); err != nil {
		return false, err
	}
	log.Info("git history squashed", zap.Int("commits", n), zap.Time("before", cutoff), zap.String("old_head", head.String()), zap.String("new_head", parent.String()))
	return true, r.syncHead()
}
