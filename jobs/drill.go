package jobs

import "context"

// DrillResult is the outcome of one restore drill.
type DrillResult struct{}

// Drill runs one restore drill (SNAPVISOR_DRILL_SCHEDULE, entrypoint drill):
// from the remote whose URL is from, or, when from is "", the next remote in
// turn (round robin).
func (r *Runner) Drill(ctx context.Context, from string) (DrillResult, error) {
	return DrillResult{}, nil
}
