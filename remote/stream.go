package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"snapvisor/snapshot"
	"snapvisor/store"
)

// Result is one remote's outcome for one snapshot.
type Result struct {
	Remote  string   `json:"remote"`
	Error   string   `json:"error,omitempty"`
	Deleted []string `json:"deleted,omitempty"`
	// LeaseHolder is set when this writer did not push or rotate there
	// because another writer holds the remote's lease (see jobs/lease.go).
	LeaseHolder *Lease `json:"lease_holder,omitempty"`
}

// ErrNoRemote is returned by Stream without remotes.
var ErrNoRemote = errors.New("streaming mode (SNAPVISOR_DIR empty) needs at least one remote in SNAPVISOR_REMOTES")

// Taken reports whether a remote that answers within 2 seconds already holds
// key (archive or .sha256).
func Taken(ctx context.Context, remotes []Remote, key string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	found := make(chan bool, len(remotes))
	for _, r := range remotes {
		go func() {
			objs, _ := r.List(ctx, key)
			found <- len(objs) > 0
		}()
	}
	hit := false
	for range remotes {
		hit = <-found || hit
	}
	return hit
}

// Stream takes one snapshot of cfg.Sources named for at without a local
// copy (cfg.Dir is ignored) and uploads it to every remote at once: one
// snapshot.Stream (one walk, one compression, one sha256) feeds one pipe per
// remote, each read by PushStream, which confirms the size and uploads the
// .sha256 last. Each remote's upload is bounded by its Timeout. A remote
// that fails, hits its time limit or stops taking data (stallLimit) is
// dropped from the fan-out and the others go on: results has one entry per
// remote, in order. The slowest remaining remote paces the snapshot (there
// is no unbounded buffering), and a failed remote is not retried: the source
// cannot be read twice; the next snapshot tries again. The error is non-nil
// when the snapshot itself failed or no remote took it.
func Stream(ctx context.Context, cfg snapshot.Config, remotes []Remote, at time.Time, log *zap.Logger) (snapshot.Info, []Result, error) {
	if len(remotes) == 0 {
		return snapshot.Info{}, nil, ErrNoRemote
	}
	key := cfg.NameAt(at).String()
	start := time.Now()
	// The snapshot's sha256, computed once by snapshot.Stream and known
	// before the pipes end (fan.close): every upload's .sha256 comes from it.
	var digest string
	sum := func() string { return digest }

	results := make([]Result, len(remotes))
	fan := &fanout{}
	var wg sync.WaitGroup
	for i, r := range remotes {
		pr, pw := io.Pipe()
		rctx, cancelBound := r.WithTimeout(ctx)
		defer cancelBound()
		rctx, cancel := context.WithCancelCause(rctx)
		defer cancel(nil)
		fan.add(pw, func(err error) { pr.CloseWithError(err); cancel(err) }, stallLimit(r), r.Name(), store.StreamBuffer(r))
		results[i].Remote = r.Name()
		wg.Add(1)
		go func() {
			defer wg.Done()
			// It succeeds only after reading EOF, which comes after a complete
			// snapshot; a failed snapshot closes the pipe with its error.
			rs, err := PushStream(rctx, r, key, pr, sum)
			if err != nil {
				err = TimeoutError(rctx, err)
				if c := context.Cause(rctx); c != nil && errors.Is(c, errStalled) {
					err = fmt.Errorf("%w (%v)", c, err)
				}
				// Unblocks the fan-out, which drops this remote and goes on.
				pr.CloseWithError(fmt.Errorf("upload to %s failed: %w", r.Name(), err))
				results[i].Error = err.Error()
				log.Error("streaming to remote failed", zap.String("remote", r.Name()), zap.String("key", key), zap.Error(err))
				return
			}
			pr.Close()
			log.Info("streamed to remote", zap.String("remote", r.Name()), zap.String("key", rs.Key),
				zap.Int64("size", rs.Size), zap.Duration("duration", time.Since(start)))
		}()
	}
	info, err := snapshot.Stream(ctx, cfg, at, fan, log)
	digest = info.SHA256
	fan.close(err)
	wg.Wait()
	if err != nil {
		for i := range results {
			if results[i].Error == "" {
				results[i].Error = "snapshot failed: " + err.Error()
			}
		}
		if errors.Is(err, errAllFailed) {
			err = fmt.Errorf("every remote failed during the streamed snapshot: %s", JoinResults(results))
		}
		return snapshot.Info{}, results, err
	}
	// A remote that failed after the archive was complete (the .sha256, the
	// confirmation) may hold an archive without .sha256: never listed, and
	// removed by a later rotation there (Rotate).
	ok := 0
	for _, res := range results {
		if res.Error == "" {
			ok++
		}
	}
	if ok == 0 {
		return snapshot.Info{}, results, fmt.Errorf("snapshot %s streamed but no remote stored it: %s", info.Name, JoinResults(results))
	}
	return info, results, nil
}

// JoinResults joins the errors of the results that have one.
func JoinResults(results []Result) string {
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
func stallLimit(r Remote) time.Duration {
	d := r.Timeout / 4
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
	extra int64 // the remotes' streaming buffers (store.StreamBuffer): MemoryNeeded
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

// MemoryNeeded is the memory the uploads' part buffers take on top of the
// snapshot pipeline's own: snapshot.Stream adds it to the memory limit it
// sets. Without room for them the heap never gets under the limit and the
// GC runs back to back (measured: 700 collections and +25% CPU for a 200 MiB
// snapshot to S3).
func (f *fanout) MemoryNeeded() int64 { return f.extra }

func (f *fanout) Write(p []byte) (int, error) {
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

// ListAll lists the complete snapshots named name on every remote at once,
// each listing bounded by its own Timeout, so that a hung remote delays no
// other: lists[i] is remotes[i]'s, newest first (nil when it failed). Every
// failure is logged with msg and returned in errs, in the remotes' order.
func ListAll(ctx context.Context, remotes []Remote, name, msg string, log *zap.Logger) (lists [][]Snapshot, errs []error) {
	lists = make([][]Snapshot, len(remotes))
	failed := make([]error, len(remotes))
	var wg sync.WaitGroup
	for i, r := range remotes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lctx, cancel := r.WithTimeout(ctx)
			defer cancel()
			lists[i], failed[i] = ListSnapshots(lctx, r, name)
			failed[i] = TimeoutError(lctx, failed[i])
			if failed[i] == nil && lists[i] == nil {
				lists[i] = []Snapshot{} // listed, empty: nil means it failed
			}
		}()
	}
	wg.Wait()
	for i, err := range failed {
		if err != nil {
			lists[i] = nil
			errs = append(errs, err)
			log.Warn(msg, zap.String("remote", remotes[i].Name()), zap.Error(err))
		}
	}
	return lists, errs
}
