package jobs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"snapvisor/internal/fsx"
	"snapvisor/remote"
)

// Leases: a remote takes snapshots named SNAPVISOR_NAME from one writer only
// (remote.AcquireLease). The runner takes or renews its lease on a remote
// before every push, streamed upload and rotation there; KeepLeases renews
// them every third of SNAPVISOR_LEASE_TTL while the entrypoint runs, so that
// a live writer never loses its lease and a dead one's expires within the
// TTL; ReleaseLeases gives them up at a clean exit, so that a restarted
// container takes over at once. A remote whose lease another live writer
// holds gets no push and no rotation from this one (the local snapshots go
// on): the run's PushResult says who holds it, health is bad and
// snapvisor_remote_lease_conflict{remote} is 1, until the lease is ours again.

// leaseOpTimeout bounds one remote's lease renewal, release or takeover.
const leaseOpTimeout = 30 * time.Second

// leases is a runner's hold on its remotes' leases.
type leases struct {
	writer remote.Writer
	now    func() time.Time // the clock the leases are written with

	mu        sync.Mutex
	conflicts map[string]*remote.LeaseError // by remote: another writer holds it
	held      map[string]bool               // by remote: ours (as far as we know)
}

func newLeases() *leases {
	return &leases{writer: remote.ThisWriter(), now: time.Now,
		conflicts: make(map[string]*remote.LeaseError), held: make(map[string]bool)}
}

// record notes the outcome of taking or renewing the lease on the remote named name,
// logging changes only (a conflict is logged once, not at every run).
func (l *leases) record(name string, err error, log *zap.Logger) {
	var le *remote.LeaseError
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case errors.As(err, &le):
		if prev := l.conflicts[name]; prev == nil || prev.Lease.Writer != le.Lease.Writer {
			log.Error("remote lease held by another writer: no pushes or rotation there until it is ours (local snapshots go on)",
				zap.String("remote", name), zap.String("holder_host", le.Lease.Host), zap.String("holder_instance", le.Lease.Instance),
				zap.Time("expires", le.Lease.Expires), zap.Error(err))
		}
		l.conflicts[name] = le
		l.held[name] = false
	case err == nil:
		if !l.held[name] {
			log.Info("remote lease taken: this writer pushes and rotates there", zap.String("remote", name),
				zap.String("host", l.writer.Host), zap.String("instance", l.writer.Instance))
		}
		delete(l.conflicts, name)
		l.held[name] = true
	}
}

// problem is the health verdict on the leases: "" when no other writer
// holds one of them.
func (l *leases) problem() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, le := range l.conflicts {
		out = append(out, le.Error())
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// holdLease takes or renews the runner's lease on s (see remote.AcquireLease).
func (r *Runner) holdLease(ctx context.Context, s remote.Remote, log *zap.Logger) error {
	l := r.leases
	_, err := remote.AcquireLease(ctx, s, r.snap.Name, l.writer, s.TTL(), l.now())
	l.record(s.Name(), err, log)
	if err != nil {
		var le *remote.LeaseError
		if !errors.As(err, &le) {
			err = fmt.Errorf("lease %s: %w", remote.LeaseKey(r.snap.Name), err)
		}
	}
	return err
}

// refused is the result of a push that did not happen because the lease
// could not be taken: another writer holds it (LeaseHolder; record has
// logged it), or the remote failed (logged here). pushOne counts it.
func refused(res PushResult, err error, log *zap.Logger) PushResult {
	res.Error = err.Error()
	var le *remote.LeaseError
	if errors.As(err, &le) {
		h := le.Lease
		res.LeaseHolder = &h
	} else {
		log.Error("push to remote failed; the local snapshot is intact", zap.String("remote", res.Remote), zap.Error(err))
	}
	return res
}

// KeepLeases takes and renews the runner's lease on every remote at once and
// then every third of the lease TTL, until ctx ends. Serve runs it; a
// standalone run runs it around its Trigger (and calls ReleaseLeases after).
// Each round is bounded (leaseOpTimeout per remote, in parallel).
func (r *Runner) KeepLeases(ctx context.Context) {
	if len(r.remotes) == 0 {
		return
	}
	period := r.remotes[0].TTL() / 3
	for _, s := range r.remotes[1:] {
		period = min(period, s.TTL()/3)
	}
	for {
		eachStore(ctx, r.remotes, func(ctx context.Context, _ int, s remote.Remote) {
			if err := r.holdLease(ctx, s, r.log); err != nil && !errors.As(err, new(*remote.LeaseError)) {
				r.log.Warn("remote lease renewal failed; the next push tries again", zap.String("remote", s.Name()), zap.Error(err))
			}
		})
		if fsx.Sleep(ctx, period) != nil {
			return
		}
	}
}

// ReleaseLeases deletes the runner's lease on every remote where it holds
// it, so that the next writer (the restarted container, the new node) takes
// over at once; another writer's lease is never touched. Serve calls it when
// it ends; whoever pushes after Serve (the final snapshot) or without it (a
// standalone run) calls it at the end. Each remote is bounded by
// leaseOpTimeout, in parallel.
func (r *Runner) ReleaseLeases(ctx context.Context) {
	if r.leases == nil {
		return
	}
	eachStore(ctx, r.remotes, func(ctx context.Context, _ int, s remote.Remote) {
		released, err := remote.ReleaseLease(ctx, s, r.snap.Name, r.leases.writer)
		switch {
		case err != nil:
			r.log.Warn("remote lease not released: it expires by itself (SNAPVISOR_LEASE_TTL)", zap.String("remote", s.Name()), zap.Error(err))
		case released:
			r.log.Info("remote lease released", zap.String("remote", s.Name()))
		}
		r.leases.mu.Lock()
		r.leases.held[s.Name()] = false
		r.leases.mu.Unlock()
	})
}

// LeaseResult is what `entrypoint takeover` did on one remote.
type LeaseResult struct {
	Remote   string        `json:"remote"`
	Action   string        `json:"action,omitempty"`   // "taken" (this entrypoint holds it now) or "broken" (deleted; the next writer takes it)
	Previous *remote.Lease `json:"previous,omitempty"` // the lease replaced or deleted; nil: there was none
	Error    string        `json:"error,omitempty"`
}

// TakeLeases takes the lease on every remote now, whoever holds it
// (`entrypoint takeover` with this entrypoint running): the previous holder
// is refused from its next renewal or push on.
func (r *Runner) TakeLeases(ctx context.Context) []LeaseResult {
	out := make([]LeaseResult, len(r.remotes))
	eachStore(ctx, r.remotes, func(ctx context.Context, i int, s remote.Remote) {
		l := r.leases
		res := LeaseResult{Remote: s.Name(), Action: "taken"}
		prev, had, err := remote.TakeLease(ctx, s, r.snap.Name, l.writer, s.TTL(), l.now())
		if had {
			res.Previous = &prev
		}
		l.record(s.Name(), err, r.log)
		if err != nil {
			res.Action, res.Error = "", err.Error()
		} else {
			r.log.Warn("remote lease taken over by request", zap.String("remote", s.Name()), zap.Bool("had_holder", had),
				zap.String("previous_host", prev.Host), zap.String("previous_instance", prev.Instance))
		}
		out[i] = res
	})
	return out
}

// BreakLeases deletes the lease of the snapshots named name on every store,
// whoever holds it (`entrypoint takeover` with no entrypoint running here):
// the next writer to push takes it. A live holder takes it back at its next
// renewal, so stop that one first.
func BreakLeases(ctx context.Context, stores []remote.Remote, name string, log *zap.Logger) []LeaseResult {
	out := make([]LeaseResult, len(stores))
	eachStore(ctx, stores, func(ctx context.Context, i int, s remote.Remote) {
		res := LeaseResult{Remote: s.Name(), Action: "broken"}
		prev, had, err := remote.BreakLease(ctx, s, name)
		if had {
			res.Previous = &prev
		}
		if err != nil {
			res.Action, res.Error = "", err.Error()
		} else if had {
			log.Warn("remote lease broken by request", zap.String("remote", s.Name()),
				zap.String("previous_host", prev.Host), zap.String("previous_instance", prev.Instance))
		}
		out[i] = res
	})
	return out
}

// eachStore runs fn on every store in parallel, each bounded by
// leaseOpTimeout, and returns when all have returned.
func eachStore(ctx context.Context, stores []remote.Remote, fn func(ctx context.Context, i int, s remote.Remote)) {
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, leaseOpTimeout)
			defer cancel()
			fn(ctx, i, s)
		}()
	}
	wg.Wait()
}
