package restic

import (
	"context"
	"time"

	"snapvisor/rotation"
)

// Lock is a stand-in until lock.go lands.
type Lock struct{}

func (r *Repo) Lock(ctx context.Context, exclusive bool, wait time.Duration) (*Lock, error) {
	return &Lock{}, nil
}

func (l *Lock) Unlock() {}

// LockedError stand-in.
type LockedError struct{}

func (e *LockedError) Error() string { return "locked" }

// PruneOptions stand-in.
type PruneOptions struct {
	Budget    time.Duration
	MaxUnused float64
	LockWait  time.Duration
}

// PruneStats stand-in.
type PruneStats struct{}

func Prune(ctx context.Context, r *Repo, opts PruneOptions) (PruneStats, error) {
	return PruneStats{}, nil
}

func Forget(ctx context.Context, r *Repo, host string, paths []string, p rotation.Policy, now time.Time) ([]*Snapshot, error) {
	return nil, nil
}
