package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"snapvisor/remote"
	"snapvisor/restic"
	"snapvisor/snapshot"
)

// MetricsSet is the metric set the remote-store wrappers register on.
func (m *Metrics) MetricsSet() *metrics.Set { return m.set }

// SetRemotes gives the runner the remotes each snapshot is pushed to.
// With an empty snapshot directory (streaming mode) they are where snapshots
// go: each one is streamed to all of them while it is taken.
func (r *Runner) SetRemotes(remotes []remote.Remote) {
	r.remotes = remotes
	r.leases = newLeases()
}

// PushResult is one remote's outcome for one snapshot.
type PushResult = remote.Result

// made is what a run's pipeline made: the snapshot and, in streaming mode,
// its upload's outcome on every remote (nil otherwise: push uploads it).
type made struct {
	snapshot.Info
	streamed []PushResult
	// The restic format (restic.go): the repositories the snapshot was
	// written to, and every place (streamed holds each one's outcome).
	repos  []*restic.Repo
	places []remote.Remote
	// note: what the result's Note says (the git format: unchanged).
	note string
}

// format is a snapshot format other than the archive (restic.go, git.go):
// a run's create (inside the freeze), what follows a good one once the
// service is thawed (pushes, retention: each remote's outcome and what was
// deleted), and the last good snapshot found at start.
type format interface {
	create(ctx context.Context, log *zap.Logger) (made, error)
	after(ctx context.Context, m made, log *zap.Logger) (remotes []PushResult, deleted []string)
	seed(ctx context.Context)
}

// streaming reports whether snapshots go straight to the remotes (SNAPVISOR_DIR empty).
func (r *Runner) streaming() bool { return r.snap.Dir == "" }

// create takes the snapshot, named for now (nextSecond has made sure that no
// snapshot of this second exists): into the snapshot directory, or, in
// streaming mode, straight to every remote whose lease this writer holds
// (remote.Stream), their outcomes returned for push.
func (r *Runner) create(ctx context.Context, log *zap.Logger) (made, error) {
	if r.alt != nil {
		return r.alt.create(ctx, log)
	}
	if !r.streaming() {
		info, err := snapshot.Create(ctx, r.snap, log)
		return made{Info: info}, err
	}
	results := make([]PushResult, len(r.remotes))
	var held []remote.Remote
	var heldAt []int
	eachStore(ctx, r.remotes, func(ctx context.Context, i int, s remote.Remote) {
		ctx, cancel := s.WithTimeout(ctx)
		defer cancel()
		if err := r.holdLease(ctx, s, log); err != nil {
			results[i] = refused(PushResult{Remote: s.Name()}, remote.TimeoutError(ctx, err), log)
		}
	})
	for i, s := range r.remotes {
		if results[i].Error == "" {
			held, heldAt = append(held, s), append(heldAt, i)
		}
	}
	if len(held) == 0 {
		return made{}, fmt.Errorf("streaming mode: no remote to stream to: %s", remote.JoinResults(results))
	}
	// Wall clock time (Round(0)): names are made of it, not of the monotonic clock.
	at := time.Now().Round(0)
	info, streamed, err := remote.Stream(ctx, r.snap, held, at, log)
	for j, i := range heldAt {
		results[i] = streamed[j]
	}
	if err != nil {
		return made{}, err
	}
	r.streamedAt = at
	return made{Info: info, streamed: results}, nil
}

// lastStreamed is the name time a new streamed snapshot must not share a
// second with: the last one this process streamed, or, for the first one of
// the process or when the clock went back since then (reported), now when a
// remote already holds a snapshot named for now's second (another process's).
func (r *Runner) lastStreamed(ctx context.Context, now time.Time, log *zap.Logger) time.Time {
	last := r.streamedAt
	if !last.IsZero() && !last.After(now) {
		return last
	}
	if !last.IsZero() {
		warnFuture(log, []string{r.snap.NameAt(last).String()}, now)
	}
	if remote.Taken(ctx, r.remotes, r.snap.NameAt(now).String()) {
		return now
	}
	return time.Time{}
}

// seedFromRemotes makes the newest complete snapshot on the remotes the
// last good one when no local snapshot was found at start (streaming mode,
// or a fresh volume on a new node): health and the last-success metric then
// count the snapshots taken before a restart instead of failing until the
// next one. The remotes are listed at once, each bounded by its own
// SNAPVISOR_REMOTE_TIMEOUT (remote.ListAll); one that cannot be listed is
// logged and skipped.
func (r *Runner) seedFromRemotes(ctx context.Context) {
	if r.alt != nil {
		r.alt.seed(ctx)
		return
	}
	r.mu.Lock()
	found := !r.lastGood.Started.IsZero()
	r.mu.Unlock()
	if found || len(r.remotes) == 0 {
		return
	}
	var newest remote.Snapshot
	lists, _ := remote.ListAll(ctx, r.remotes, r.snap.Name, "cannot list a remote for the last good snapshot", r.log)
	now := time.Now()
	for i, list := range lists {
		if len(list) > 0 {
			r.noteRemoteNewest(r.remotes[i].Name(), list[0])
		}
		for _, s := range list { // newest first; one dated in the future has no known age
			if !s.Time.After(now) {
				if s.Time.After(newest.Time) {
					newest = s
				}
				break
			}
		}
	}
	if newest.Key == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if newest.Time.After(r.lastGood.Started) { // a snapshot taken meanwhile is newer
		r.lastGood = Result{Reason: "found on " + newest.Remote, Started: newest.Time, Snapshot: newest.Key, Size: newest.Size}
		r.metrics.lastSuccess.Set(float64(newest.Time.Unix()))
		r.log.Info("last good snapshot found on a remote", zap.String("remote", newest.Remote), zap.String("snapshot", newest.Key))
	}
}

// push uploads the local snapshot m to every remote in parallel, then
// rotates each remote; in streaming mode the upload already happened
// (create) and its outcome m.streamed is reported before the rotation. One
// remote failing never blocks the others or touches the local copy, which
// stays the retry source. Each remote's upload and rotation together are
// bounded once by its SNAPVISOR_REMOTE_TIMEOUT (Remote.WithTimeout), so a
// remote that hangs never delays the next snapshot by more.
func (r *Runner) push(ctx context.Context, m made, log *zap.Logger) []PushResult {
	if len(r.remotes) == 0 {
		return nil
	}
	out := make([]PushResult, len(r.remotes))
	var wg sync.WaitGroup
	for i, s := range r.remotes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var streamed *PushResult
			if m.Path == "" && i < len(m.streamed) {
				streamed = &m.streamed[i]
			}
			out[i] = r.pushOne(ctx, s, m.Info, streamed, log)
		}()
	}
	wg.Wait()
	return out
}

// pushOne pushes info to s and rotates s, or, for a snapshot streamed while
// it was taken (streamed: its outcome on s), only rotates s.
func (r *Runner) pushOne(ctx context.Context, s remote.Remote, info snapshot.Info, streamed *PushResult, log *zap.Logger) PushResult {
	ctx, cancel := s.WithTimeout(ctx)
	defer cancel()
	res := PushResult{Remote: s.Name()}
	if info.Path == "" { // streamed while it was taken
		st := PushResult{Remote: s.Name(), Error: "no streamed upload of " + info.Name}
		if streamed != nil {
			st = *streamed
		}
		if st.Error != "" {
			r.metrics.pushFailures.Inc()
			return st
		}
	} else {
		if err := r.holdLease(ctx, s, log); err != nil {
			r.metrics.pushFailures.Inc()
			return refused(res, remote.TimeoutError(ctx, err), log)
		}
		start := time.Now()
		rs, err := remote.Push(ctx, s, info.Path)
		if err != nil {
			err = remote.TimeoutError(ctx, err)
			res.Error = err.Error()
			r.metrics.pushFailures.Inc()
			log.Error("push to remote failed; the local snapshot is intact", zap.String("remote", s.Name()), zap.Error(err))
			return res
		}
		log.Info("pushed to remote", zap.String("remote", s.Name()), zap.String("key", rs.Key),
			zap.Int64("size", rs.Size), zap.Duration("duration", time.Since(start)))
		r.noteRemoteNewest(s.Name(), rs)
	}
	if err := r.holdLease(ctx, s, log); err != nil { // the lease may have moved during a long upload
		var le *remote.LeaseError
		if errors.As(err, &le) {
			res.LeaseHolder = &le.Lease
		}
		log.Warn("remote rotation skipped: the lease is not this writer's", zap.String("remote", s.Name()), zap.Error(remote.TimeoutError(ctx, err)))
		return res
	}
	d, deleted, err := remote.Rotate(ctx, s, r.snap.Name, r.policy, time.Now(), r.mark)
	r.noteRotation(d)
	if err != nil {
		log.Warn("remote rotation", zap.String("remote", s.Name()), zap.Error(remote.TimeoutError(ctx, err)))
	} else if len(deleted) > 0 {
		log.Info("remote rotation deleted old snapshots and leftovers", zap.String("remote", s.Name()), zap.Strings("deleted", deleted))
	}
	res.Deleted = deleted
	return res
}
