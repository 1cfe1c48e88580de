package restic

import (
	"context"
	"fmt"
	"slices"
	"time"

	"snapvisor/rotation"
)

// ForgetLockWait is how long Forget waits for its exclusive lock while
// another client (a backup, say) holds one.
const ForgetLockWait = 2 * time.Minute

// SnapshotFormat is the rotation.Snapshot Format of restic snapshots: their
// sizes (bytes of the source) are compared only with each other.
const SnapshotFormat = "restic"

// Forget applies the retention policy p at now to the repository's
// snapshots of host with exactly paths (compared sorted), under an exclusive
// lock, and deletes the snapshot files rotation.Decide drops; snapshots of
// other hosts or paths are never touched. It returns the deleted snapshots.
// Their data stays until Prune.
func Forget(ctx context.Context, r *Repo, host string, paths []string, p rotation.Policy, now time.Time) ([]*Snapshot, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("forget: %w", err)
	}
	lock, err := r.Lock(ctx, true, ForgetLockWait)
	if err != nil {
		return nil, fmt.Errorf("forget: %w", err)
	}
	defer lock.Unlock() // an error leaves a lock that turns stale by itself; nothing to do here
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("forget: %w", err)
	}
	mine := map[string]*Snapshot{}
	var list []rotation.Snapshot
	for _, s := range snaps {
		if s.Hostname != host || !samePaths(s.Paths, paths) {
			continue
		}
		rs := rotation.Snapshot{Name: s.ID.String(), Time: s.Time, Format: SnapshotFormat}
		if s.Summary != nil {
			rs.Size = int64(s.Summary.TotalBytesProcessed)
		}
		mine[rs.Name] = s
		list = append(list, rs)
	}
	var deleted []*Snapshot
	for _, d := range rotation.Decide(list, p, now).Delete {
		if err := lock.Check(); err != nil {
			return deleted, fmt.Errorf("forget: %w", err)
		}
		s := mine[d.Name]
		if err := r.Remove(ctx, SnapshotFile, s.ID); err != nil {
			return deleted, fmt.Errorf("forget: %w", err)
		}
		deleted = append(deleted, s)
	}
	return deleted, nil
}

// samePaths reports whether a and b hold the same paths, in any order.
func samePaths(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
