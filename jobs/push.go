package jobs

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"snapvisor/store"
)

// MetricsSet is the metric set the remote-store wrappers register on.
func (m *Metrics) MetricsSet() *metrics.Set { return m.set }

// SetStores gives the runner the remote stores each snapshot is pushed to.
func (r *Runner) SetStores(stores []store.Store) { r.stores = stores }

// PushResult is one remote's outcome for one snapshot.
type PushResult struct {
	Remote  string   `json:"remote"`
	Error   string   `json:"error,omitempty"`
	Deleted []string `json:"deleted,omitempty"`
}

// push uploads the local snapshot at path to every store in parallel, then
// rotates each store. One remote failing never blocks the others or touches
// the local copy, which stays the retry source.
func (r *Runner) push(ctx context.Context, path string, log *zap.Logger) []PushResult {
	if len(r.stores) == 0 {
		return nil
	}
	out := make([]PushResult, len(r.stores))
	var wg sync.WaitGroup
	for i, s := range r.stores {
		wg.Add(1)
		go func(i int, s store.Store) {
			defer wg.Done()
			res := PushResult{Remote: s.Name()}
			start := time.Now()
			rs, err := store.Push(ctx, s, path)
			if err != nil {
				res.Error = err.Error()
				r.metrics.pushFailures.Inc()
				log.Error("push to remote failed; the local snapshot is intact", zap.String("remote", s.Name()), zap.Error(err))
				out[i] = res
				return
			}
			log.Info("pushed to remote", zap.String("remote", s.Name()), zap.String("key", rs.Key),
				zap.Int64("size", rs.Size), zap.Duration("duration", time.Since(start)))
			deleted, err := store.Rotate(ctx, s, r.snap.Name, r.policy, time.Now())
			if err != nil {
				log.Warn("remote rotation", zap.String("remote", s.Name()), zap.Error(err))
			} else if len(deleted) > 0 {
				log.Info("remote rotation deleted old snapshots", zap.String("remote", s.Name()), zap.Strings("deleted", deleted))
			}
			res.Deleted = deleted
			out[i] = res
		}(i, s)
	}
	wg.Wait()
	return out
}

// fetchFromRemotes downloads, into the local snapshot directory, the newest
// snapshot of the first store (in order) that has one and whose checksum
// verifies; it returns the local path. Older snapshots are tried when newer
// ones fail to download.
func fetchFromRemotes(ctx context.Context, stores []store.Store, name, dir string, log *zap.Logger) (string, error) {
	var errs []error
	for _, s := range stores {
		list, err := store.ListSnapshots(ctx, s, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name(), err))
			log.Warn("auto-restore: cannot list remote", zap.String("remote", s.Name()), zap.Error(err))
			continue
		}
		for _, rs := range list {
			log.Info("auto-restore: downloading from remote", zap.String("remote", s.Name()), zap.String("key", rs.Key), zap.Int64("size", rs.Size))
			p, err := store.Fetch(ctx, s, rs.Key, dir)
			if err == nil {
				return p, nil
			}
			errs = append(errs, fmt.Errorf("%s %s: %w", s.Name(), rs.Key, err))
			log.Warn("auto-restore: download failed, trying an older snapshot", zap.String("remote", s.Name()), zap.String("key", rs.Key), zap.Error(err))
		}
	}
	if len(errs) == 0 {
		return "", nil
	}
	return "", fmt.Errorf("no remote snapshot could be fetched: %v", errs)
}
