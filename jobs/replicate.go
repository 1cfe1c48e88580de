package jobs

import "context"

// ReplicateResult is the outcome of one replication run.
type ReplicateResult struct{}

// Replicate reconciles the remotes (SNAPVISOR_REPLICATE_SCHEDULE).
func (r *Runner) Replicate(ctx context.Context) (ReplicateResult, error) {
	return ReplicateResult{}, nil
}
