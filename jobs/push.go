package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime/debug"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"snapvisor/snapshot"
	"snapvisor/store"
)

// MetricsSet is the metric set the remote-store wrappers register on.
func (m *Metrics) MetricsSet() *metrics.Set { return m.set }

// SetStores gives the runner the remote stores each snapshot is pushed to.
// With an empty snapshot directory (streaming mode) they are where snapshots
// go: each one is streamed to all of them while it is taken.
func (r *Runner) SetStores(stores []store.Store) {
	r.stores = make([]store.Store, len(stores))
	for i, s := range stores {
		r.stores[i] = &remote{Store: s}
	}
	r.leases = newLeases()
}

// PushResult is one remote's outcome for one snapshot.
type PushResult struct {
	Remote  string   `json:"remote"`
	Error   string   `json:"error,omitempty"`
	Deleted []string `json:"deleted,omitempty"`
	// LeaseHolder is set when this writer did not push or rotate there
	// because another writer holds the remote's lease (see jobs/lease.go).
	LeaseHolder *store.Lease `json:"lease_holder,omitempty"`
}

// remote is a store of the runner with the outcome of the last snapshot
// streamed to it: in streaming mode the upload happens while the snapshot is
// taken (create), and is reported with the run's pushes (push).
type remote struct {
	store.Store
	mu       sync.Mutex
	key      string // the snapshot last streamed, until push takes its result
	streamed PushResult
	last     time.Time // when the last streamed snapshot was named
}

// Unwrap returns the store (store's helpers find their wrappers through it).
func (m *remote) Unwrap() store.Store { return m.Store }

func (m *remote) setStreamed(key string, at time.Time, res PushResult) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.key, m.streamed, m.last = key, res, at
}

func (m *remote) lastStreamed() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

// takeStreamed returns the result of streaming key, if that was the last one.
func (m *remote) takeStreamed(key string) (PushResult, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.key != key {
		return PushResult{}, false
	}
	m.key = ""
	return m.streamed, true
}

// streaming reports whether snapshots go straight to the remotes (SNAPVISOR_DIR empty).
func (r *Runner) streaming() bool { return r.snap.Dir == "" }

// create takes the snapshot: into the snapshot directory, or, in streaming
// mode, straight to every remote at once (StreamToRemotes), the remotes'
// outcomes kept for push.
func (r *Runner) create(ctx context.Context, log *zap.Logger) (snapshot.Info, error) {
	if !r.streaming() {
		return snapshot.Create(ctx, r.snap, log)
	}
	// Names have one-second resolution: never the second of the last one.
	var last time.Time
	for _, s := range r.stores {
		if t := s.(*remote).lastStreamed(); t.After(last) {
			last = t
		}
	}
	// Only to the remotes whose lease this writer holds; asked before the
	// name is chosen, which must stay within its second (nameTime).
	results := make([]PushResult, len(r.stores))
	var held []store.Store
	var heldAt []int
	eachStore(ctx, r.stores, func(ctx context.Context, i int, s store.Store) {
		ctx, cancel := store.WithTimeout(ctx, s)
		defer cancel()
		if err := r.holdLease(ctx, s, log); err != nil {
			results[i] = refused(PushResult{Remote: s.Name()}, store.TimeoutError(ctx, err), log)
		}
	})
	for i, s := range r.stores {
		if results[i].Error == "" {
			held, heldAt = append(held, s), append(heldAt, i)
		}
	}
	if len(held) == 0 {
		return snapshot.Info{}, fmt.Errorf("streaming mode: no remote to stream to: %s", joinResults(results))
	}
	// Wall clock times (Round(0)): names are made of them, not of the monotonic clock.
	if now := time.Now().Round(0); last.IsZero() || last.Round(0).After(now) {
		// The first snapshot of this process, or the clock went back since
		// the last one: the remotes tell whether this second's name is taken.
		if !last.IsZero() {
			warnFuture(log, []string{snapshot.FileName(r.snap, last)}, now)
		}
		last = time.Time{}
		if taken(ctx, r.stores, snapshot.FileName(r.snap, now)) {
			last = now
		}
	}
	at, err := nameTime(ctx, last)
	if err != nil {
		return snapshot.Info{}, err
	}
	info, streamed, err := streamToRemotes(ctx, r.snap, held, snapshot.FileName(r.snap, at), log)
	for j, i := range heldAt {
		results[i] = streamed[j]
	}
	for i, s := range r.stores {
		if err == nil {
			s.(*remote).setStreamed(info.Name, at, results[i])
		}
	}
	return info, err
}

// nameTime returns the time to name a streamed snapshot after: now, unless
// that is in the second of last (then the next second), and never in the last
// tenth of a second, so that snapshot.Stream, which names the snapshot after
// its own start a moment later, lands in the same second. It waits a second
// at most: a last in the future (a clock stepped back) is not waited for.
func nameTime(ctx context.Context, last time.Time) (time.Time, error) {
	now := time.Now()
	sec := now.Truncate(time.Second)
	wait := time.Duration(0)
	if sec.Equal(last.Truncate(time.Second)) || now.Sub(sec) > 900*time.Millisecond {
		wait = sec.Add(time.Second + 5*time.Millisecond).Sub(now)
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
	return time.Now(), nil
}

// seedFromRemotes makes the newest complete snapshot on the remotes the
// last good one when no local snapshot was found at start (streaming mode,
// or a fresh volume on a new node): health and the last-success metric then
// count the snapshots taken before a restart instead of failing until the
// next one. The remotes are listed at once, each bounded by its own
// SNAPVISOR_REMOTE_TIMEOUT (listRemotes); one that cannot be listed is
// logged and skipped.
func (r *Runner) seedFromRemotes(ctx context.Context) {
	r.mu.Lock()
	found := !r.lastGood.Started.IsZero()
	r.mu.Unlock()
	if found || len(r.stores) == 0 {
		return
	}
	var newest store.RemoteSnapshot
	lists, _ := listRemotes(ctx, r.stores, r.snap.Name, "cannot list a remote for the last good snapshot", r.log)
	now := time.Now()
	for _, list := range lists {
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

// push uploads the local snapshot info to every store in parallel, then
// rotates each store; in streaming mode the upload already happened (create)
// and only its outcome is collected before the rotation. One remote failing
// never blocks the others or touches the local copy, which stays the retry
// source. Each remote's upload and rotation together are bounded by
// SNAPVISOR_REMOTE_TIMEOUT (store.Timeout), so a remote that hangs never
// delays the next snapshot by more.
func (r *Runner) push(ctx context.Context, info snapshot.Info, log *zap.Logger) []PushResult {
	if len(r.stores) == 0 {
		return nil
	}
	out := make([]PushResult, len(r.stores))
	var wg sync.WaitGroup
	for i, s := range r.stores {
		wg.Add(1)
		go func(i int, s store.Store) {
			defer wg.Done()
			out[i] = r.pushOne(ctx, s, info, log)
		}(i, s)
	}
	wg.Wait()
	return out
}

func (r *Runner) pushOne(ctx context.Context, s store.Store, info snapshot.Info, log *zap.Logger) PushResult {
	ctx, cancel := store.WithTimeout(ctx, s)
	defer cancel()
	res := PushResult{Remote: s.Name()}
	if info.Path == "" { // streamed while it was taken
		st, ok := s.(*remote).takeStreamed(info.Name)
		if !ok {
			st.Error = "no streamed upload of " + info.Name
		}
		if st.Error != "" {
			r.metrics.pushFailures.Inc()
			return st
		}
	} else {
		if err := r.holdLease(ctx, s, log); err != nil {
			r.metrics.pushFailures.Inc()
			return refused(res, store.TimeoutError(ctx, err), log)
		}
		start := time.Now()
		rs, err := store.Push(ctx, s, info.Path)
		if err != nil {
			res.Error = err.Error()
			r.metrics.pushFailures.Inc()
			log.Error("push to remote failed; the local snapshot is intact", zap.String("remote", s.Name()), zap.Error(err))
			return res
		}
		log.Info("pushed to remote", zap.String("remote", s.Name()), zap.String("key", rs.Key),
			zap.Int64("size", rs.Size), zap.Duration("duration", time.Since(start)))
	}
	if err := r.holdLease(ctx, s, log); err != nil { // the lease may have moved during a long upload
		var le *store.LeaseError
		if errors.As(err, &le) {
			res.LeaseHolder = &le.Lease
		}
		log.Warn("remote rotation skipped: the lease is not this writer's", zap.String("remote", s.Name()), zap.Error(store.TimeoutError(ctx, err)))
		return res
	}
	d, deleted, err := store.Rotate(ctx, s, r.snap.Name, r.policy, time.Now(), r.mark)
	r.noteRotation(d)
	if err != nil {
		log.Warn("remote rotation", zap.String("remote", s.Name()), zap.Error(store.TimeoutError(ctx, err)))
	} else if len(deleted) > 0 {
		log.Info("remote rotation deleted old snapshots and leftovers", zap.String("remote", s.Name()), zap.Strings("deleted", deleted))
	}
	res.Deleted = deleted
	return res
}

// errNoRemote is returned by StreamToRemotes without stores.
var errNoRemote = errors.New("streaming mode (SNAPVISOR_DIR empty) needs at least one remote in SNAPVISOR_REMOTES")

// StreamToRemotes takes one snapshot of cfg.Sources without a local copy
// (cfg.Dir is ignored) and uploads it to every store at once: one
// snapshot.Stream (one walk, one compression) feeds one pipe per store, each
// read by store.PushStream, which confirms the size and uploads the .sha256
// last. A store that fails or hits SNAPVISOR_REMOTE_TIMEOUT is dropped from
// the fan-out and the others go on: results has one entry per store, in
// order. The slowest remaining store paces the snapshot (there is no
// unbounded buffering), and a failed store is not retried: the source cannot
// be read twice; the next snapshot tries again. The error is non-nil when the
// snapshot itself failed or no store took it. Names have one-second
// resolution: when a store already has a snapshot named for this second (one
// taken a moment ago by another process), it waits for the next one.
func StreamToRemotes(ctx context.Context, cfg snapshot.Config, stores []store.Store, log *zap.Logger) (snapshot.Info, []PushResult, error) {
	if len(stores) == 0 {
		return snapshot.Info{}, nil, errNoRemote
	}
	var last time.Time
	if now := time.Now(); taken(ctx, stores, snapshot.FileName(cfg, now)) {
		last = now // skip that second
	}
	at, err := nameTime(ctx, last)
	if err != nil {
		return snapshot.Info{}, nil, err
	}
	return streamToRemotes(ctx, cfg, stores, snapshot.FileName(cfg, at), log)
}

// taken reports whether a store that answers within 2 seconds already holds
// key (archive or .sha256).
func taken(ctx context.Context, stores []store.Store, key string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	found := make(chan bool, len(stores))
	for _, s := range stores {
		go func(s store.Store) {
			objs, _ := s.List(ctx, key)
			found <- len(objs) > 0
		}(s)
	}
	hit := false
	for range stores {
		hit = <-found || hit
	}
	return hit
}

// streamToRemotes is StreamToRemotes under a given key, named for the
// current second.
func streamToRemotes(ctx context.Context, cfg snapshot.Config, stores []store.Store, key string, log *zap.Logger) (snapshot.Info, []PushResult, error) {
	if len(stores) == 0 {
		return snapshot.Info{}, nil, errNoRemote
	}
	// The key must be known before the upload starts; Stream names the
	// snapshot after its own start, a moment later in the same second
	// (checked below: a mismatch fails the run and commits nothing).
	start := time.Now()

	results := make([]PushResult, len(stores))
	fan := &fanout{}
	var wg sync.WaitGroup
	for i, s := range stores {
		pr, pw := io.Pipe()
		rctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		fan.add(pw, func(err error) { pr.CloseWithError(err); cancel(err) }, stallLimit(s), s.Name(), store.StreamBuffer(s))
		results[i].Remote = s.Name()
		wg.Add(1)
		go func(i int, s store.Store) {
			defer wg.Done()
			// It succeeds only after reading EOF, which comes after a complete
			// snapshot; a failed snapshot closes the pipe with its error.
			rs, err := store.PushStream(rctx, s, key, pr)
			if err != nil {
				if c := context.Cause(rctx); c != nil && errors.Is(c, errStalled) {
					err = fmt.Errorf("%w (%v)", c, err)
				}
				// Unblocks the fan-out, which drops this store and goes on.
				pr.CloseWithError(fmt.Errorf("upload to %s failed: %w", s.Name(), err))
				results[i].Error = err.Error()
				log.Error("streaming to remote failed", zap.String("remote", s.Name()), zap.String("key", key), zap.Error(err))
				return
			}
			pr.Close()
			log.Info("streamed to remote", zap.String("remote", s.Name()), zap.String("key", rs.Key),
				zap.Int64("size", rs.Size), zap.Duration("duration", time.Since(start)))
		}(i, s)
	}
	info, err := snapshot.Stream(ctx, cfg, fan, log)
	if err == nil && info.Name != key {
		err = fmt.Errorf("snapshot named %s, uploads started as %s (the clock jumped?)", info.Name, key)
	}
	fan.close(err)
	wg.Wait()
	if err != nil {
		for i := range results {
			if results[i].Error == "" {
				results[i].Error = "snapshot failed: " + err.Error()
			}
		}
		if errors.Is(err, errAllFailed) {
			err = fmt.Errorf("every remote failed during the streamed snapshot: %s", joinResults(results))
		}
		return snapshot.Info{}, results, err
	}
	// A store that failed after the archive was complete (the .sha256, the
	// confirmation) may hold an archive without .sha256: never listed, and
	// removed by a later rotation there (store.Rotate).
	ok := 0
	for _, res := range results {
		if res.Error == "" {
			ok++
		}
	}
	if ok == 0 {
		return snapshot.Info{}, results, fmt.Errorf("snapshot %s streamed but no remote stored it: %s", info.Name, joinResults(results))
	}
	return info, results, nil
}

func joinResults(results []PushResult) string {
	var errs []error
	for _, r := range results {
		if r.Error != "" {
			errs = append(errs, errors.New(r.Error))
		}
	}
	return errors.Join(errs...).Error()
}

// errAllFailed is returned by fanout.Write when no destination is left.
var errAllFailed = errors.New("every remote upload failed")

// errStalled is the cause of dropping a remote that stopped taking data.
var errStalled = errors.New("stopped taking data while the other remotes waited")

// stallLimit is how long the fan-out waits for one remote to take the next
// buffer before it drops that remote: a quarter of its SNAPVISOR_REMOTE_TIMEOUT,
// at most 2 minutes (a slow but working remote takes a part of 16 MiB in
// far less). Without it a hung remote would hold the others until their own
// time limits ran out too, since they all wait for it.
func stallLimit(s store.Store) time.Duration {
	d := store.Timeout(s) / 4
	if d <= 0 || d > 2*time.Minute {
		d = 2 * time.Minute
	}
	return d
}

// fanout writes each buffer to every live pipe in turn. A pipe whose reader
// has gone (its upload failed), or that does not take a buffer within its
// stall limit, is dropped (the drop function ends its upload); writing fails
// only when none is left. Only the snapshot's goroutine writes.
type fanout struct {
	extra int64 // the stores' streaming buffers (store.StreamBuffer), added to the memory limit
	ws    []*io.PipeWriter
	drop  []func(error)
	stall []time.Duration
	names []string
	dead  []bool
	live  int
}

func (f *fanout) add(w *io.PipeWriter, drop func(error), stall time.Duration, name string, buffer int64) {
	f.extra += buffer
	f.ws = append(f.ws, w)
	f.drop = append(f.drop, drop)
	f.stall = append(f.stall, stall)
	f.names = append(f.names, name)
	f.dead = append(f.dead, false)
	f.live++
}

func (f *fanout) Write(p []byte) (int, error) {
	if f.extra > 0 {
		// snapshot.Stream lowers the Go memory limit for its own pipeline
		// (and restores it when it returns); the uploads' part buffers come
		// on top. Without room for them the heap never gets under the limit
		// and the GC runs back to back (measured: 700 collections and +25%
		// CPU for a 200 MiB snapshot to S3).
		if cur := debug.SetMemoryLimit(-1); cur < math.MaxInt64-f.extra {
			debug.SetMemoryLimit(cur + f.extra)
		}
		f.extra = 0
	}
	for i, w := range f.ws {
		if f.dead[i] {
			continue
		}
		limit := f.stall[i]
		timer := time.AfterFunc(limit, func() {
			f.drop[i](fmt.Errorf("%s: %w for %s (a quarter of SNAPVISOR_REMOTE_TIMEOUT, at most 2m): dropped from this snapshot", f.names[i], errStalled, limit))
		})
		_, err := w.Write(p)
		timer.Stop()
		if err != nil {
			f.dead[i] = true
			f.live--
		}
	}
	if f.live == 0 {
		return 0, errAllFailed
	}
	return len(p), nil
}

// close ends every pipe: with EOF after a complete snapshot, with err after a
// failed one (the uploads then fail and commit nothing).
func (f *fanout) close(err error) {
	for _, w := range f.ws {
		if err != nil {
			w.CloseWithError(fmt.Errorf("snapshot failed: %w", err))
		} else {
			w.Close()
		}
	}
}
