package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"snapvisor/rotation"
	"snapvisor/snapshot"
	"snapvisor/store"
	"snapvisor/supervisor"
)

// Service is the part of the supervisor a snapshot job needs.
type Service interface {
	Exec(ctx context.Context, argv, env []string, out io.Writer) (supervisor.Status, error)
	Pause() error
	Resume() error
	Stop(ctx context.Context) (supervisor.Status, error)
	Start() error
	State() supervisor.State
}

var _ Service = (*supervisor.Supervisor)(nil)

// Result is the outcome of one snapshot run.
type Result struct {
	Reason    string        `json:"reason"`
	Started   time.Time     `json:"started"`
	Duration  time.Duration `json:"duration_ns"`
	Snapshot  string        `json:"snapshot,omitempty"`
	Size      int64         `json:"size,omitempty"`
	Deleted   []string      `json:"deleted,omitempty"`
	Remotes   []PushResult  `json:"remotes,omitempty"`
	Error     string        `json:"error,omitempty"`
	Coalesced bool          `json:"coalesced,omitempty"` // this trigger joined a run already in progress
	Shrunk    string        `json:"shrunk,omitempty"`    // the shrink guard flagged this snapshot: why (rotation.Suspect)
}

// OK reports whether the run produced a snapshot.
func (r Result) OK() bool { return r.Error == "" && r.Snapshot != "" }

// Runner owns the snapshot pipeline: never two runs at once; a trigger during
// a run joins it (coalesced) and gets its result.
type Runner struct {
	cfg     Config
	snap    snapshot.Config
	policy  rotation.Policy
	svc     Service
	env     []string
	log     *zap.Logger
	metrics *Metrics
	stores  []store.Store // remotes each snapshot is pushed to
	leases  *leases       // this writer's hold on the remotes' leases (lease.go); set with stores

	started time.Time // when the runner was made: the health grace period starts here

	mu       sync.Mutex
	inflight *flight
	last     Result
	lastGood Result
	runs     int

	// Retention (retention.go): what the runner knows of its snapshots, and
	// what this run's rotations found.
	known      map[string]knownSnapshot
	suspects   map[string]rotation.Suspect
	oldestKept time.Time
	// makeRoomFirst: a run failed for lack of space, so runs rotate by
	// rotation.Policy.MakeRoom first. Used by runs only (never two at once).
	makeRoomFirst bool
}

type flight struct {
	done chan struct{}
	res  Result
}

// NewRunner builds a runner. svc may be nil for a standalone run (no hooks' service, no freeze).
func NewRunner(cfg Config, snap snapshot.Config, policy rotation.Policy, svc Service, env []string, log *zap.Logger, m *Metrics) *Runner {
	if m == nil {
		m = NewMetrics()
	}
	r := &Runner{cfg: cfg, snap: snap, policy: policy, svc: svc, env: env, log: log, metrics: m, started: time.Now()}
	if list, err := snapshot.List(snap.Dir, snap.Name); err == nil && len(list) > 0 {
		r.lastGood = Result{Reason: "found on disk", Started: list[0].Time, Snapshot: list[0].Name, Size: list[0].Size}
		m.lastSuccess.Set(float64(list[0].Time.Unix()))
	}
	return r
}

// Trigger takes a snapshot now, or joins the run in progress (coalescing).
// It returns when that run has finished; ctx only bounds the wait.
func (r *Runner) Trigger(ctx context.Context, reason string) (Result, error) {
	r.mu.Lock()
	if f := r.inflight; f != nil {
		r.mu.Unlock()
		r.log.Info("snapshot already running: trigger coalesced", zap.String("reason", reason))
		r.metrics.coalesced.Inc()
		select {
		case <-f.done:
			res := f.res
			res.Coalesced = true
			return res, nil
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	r.inflight = f
	r.mu.Unlock()

	// The run is not tied to the caller: a client going away never leaves
	// the service paused or a snapshot half-written.
	return r.fly(f, r.run(context.WithoutCancel(ctx), reason, r.pipeline)), nil
}

// fly ends the run f with res: records it and wakes whoever waits.
func (r *Runner) fly(f *flight, res Result) Result {
	r.mu.Lock()
	f.res = res
	r.inflight = nil
	r.last = res
	r.runs++
	if res.OK() {
		r.lastGood = res
	}
	r.mu.Unlock()
	close(f.done)
	return res
}

// Wait returns when no snapshot is running, or when ctx ends (false).
func (r *Runner) Wait(ctx context.Context) bool {
	for {
		r.mu.Lock()
		f := r.inflight
		r.mu.Unlock()
		if f == nil {
			return true
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return false
		}
	}
}

// claim waits until no run is in flight and takes the slot (used by Final,
// which must not join a hot run: it is the cold one).
func (r *Runner) claim(ctx context.Context) (*flight, error) {
	for {
		r.mu.Lock()
		if r.inflight == nil {
			f := &flight{done: make(chan struct{})}
			r.inflight = f
			r.mu.Unlock()
			return f, nil
		}
		f := r.inflight
		r.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// run is one snapshot run: the pipeline, then bookkeeping, rotation and pushes.
func (r *Runner) run(ctx context.Context, reason string, pipeline func(context.Context, *zap.Logger) (snapshot.Info, error)) Result {
	res := Result{Reason: reason, Started: time.Now()}
	log := r.log.With(zap.String("reason", reason))
	log.Info("snapshot starting")
	r.metrics.running.Set(1)
	defer r.metrics.running.Set(0)

	r.makeRoom(log)
	info, err := pipeline(ctx, log)
	err = r.noSpace(err)
	res.Duration = time.Since(res.Started)
	r.metrics.lastDuration.Set(res.Duration.Seconds())
	if err != nil {
		res.Error = err.Error()
		r.metrics.failures.Inc()
		if r.svc != nil && r.svc.State() == supervisor.StateExited {
			// Its hooks and freeze were cut short by the service's exit;
			// the final snapshot (SNAPVISOR_ON_EXIT) is the one that counts.
			log.Warn("snapshot interrupted: the service exited while it ran", zap.Error(err), zap.Duration("duration", res.Duration))
		} else {
			log.Error("snapshot failed; the service is untouched and the next run will try again", zap.Error(err), zap.Duration("duration", res.Duration))
		}
		return res
	}
	res.Snapshot, res.Size = info.Name, info.Size
	r.metrics.successes.Inc()
	r.metrics.lastSuccess.Set(float64(time.Now().Unix()))
	r.metrics.lastSize.Set(float64(info.Size))
	log.Info("snapshot done", zap.String("snapshot", info.Name), zap.Int64("size", info.Size),
		zap.Int64("files", info.Files), zap.Duration("duration", res.Duration))
	r.remember(info, reason)
	res.Deleted = r.rotate(log, r.policy)
	res.Remotes = r.push(ctx, info, log)
	r.judgeShrink(&res, log)
	r.roomAgain(info, log)
	return res
}

// pipeline: pre-hook, freeze, archive, unfreeze, post-hook (always).
func (r *Runner) pipeline(ctx context.Context, log *zap.Logger) (info snapshot.Info, err error) {
	defer func() {
		if r.cfg.PostCommand != "" {
			if herr := r.hook(ctx, "post", r.cfg.PostCommand, log); herr != nil {
				log.Warn("post-hook failed", zap.Error(herr))
			}
		}
	}()
	if r.cfg.PreCommand != "" {
		if err := r.hook(ctx, "pre", r.cfg.PreCommand, log); err != nil {
			return info, fmt.Errorf("pre-hook: %w", err)
		}
	}
	return r.archive(ctx, log)
}

// archive runs the snapshot with the service frozen as configured, and
// always thaws it: a frozen service is a worse outage than a missed backup.
func (r *Runner) archive(ctx context.Context, log *zap.Logger) (snapshot.Info, error) {
	r.nextSecond(ctx)
	if r.svc == nil || r.cfg.Freeze == FreezeNone {
		return r.create(ctx, log)
	}
	fctx, cancel := context.WithTimeout(ctx, r.cfg.FreezeTimeout)
	defer cancel()
	switch r.cfg.Freeze {
	case FreezePause:
		if err := r.svc.Pause(); err != nil {
			return snapshot.Info{}, fmt.Errorf("pause service: %w", err)
		}
		log.Info("service paused for the archive phase")
		var once sync.Once
		resume := func() {
			once.Do(func() {
				if err := r.svc.Resume(); err != nil {
					log.Warn("resume service", zap.Error(err))
					return
				}
				log.Info("service resumed")
			})
		}
		// The freeze timeout resumes the service even while the archive
		// phase is stuck (a read blocked in the kernel, say).
		stopWatch := context.AfterFunc(fctx, resume)
		defer func() { stopWatch(); resume() }()
	case FreezeStop:
		st, err := r.svc.Stop(fctx)
		if r.svc.State() == supervisor.StateStopped {
			// Whatever Stop returned, a stopped service is started again.
			defer func() {
				if err := r.svc.Start(); err != nil {
					log.Error("start service again", zap.Error(err))
					return
				}
				r.metrics.restarts.Inc()
				log.Info("service started again")
			}()
		}
		if err != nil {
			return snapshot.Info{}, fmt.Errorf("stop service: %w", err)
		}
		log.Info("service stopped for a cold snapshot", zap.Stringer("status", st))
	}
	return r.create(fctx, log)
}

// nextSecond waits until the wall clock has left the second of the newest
// snapshot: names have one-second resolution and are never reused.
func (r *Runner) nextSecond(ctx context.Context) {
	list, err := snapshot.List(r.snap.Dir, r.snap.Name)
	if err != nil || len(list) == 0 {
		return
	}
	newest := list[0].Time.Truncate(time.Second)
	wait := time.Until(newest.Add(time.Second))
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait + 10*time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// hook runs a hook command through the supervisor so its status is its own.
func (r *Runner) hook(ctx context.Context, which, command string, log *zap.Logger) error {
	hctx, cancel := context.WithTimeout(ctx, r.cfg.HookTimeout)
	defer cancel()
	argv := HookArgv(command)
	lw := &lineLogger{log: log.With(zap.String("hook", which))}
	var st supervisor.Status
	var err error
	if r.svc != nil {
		st, err = r.svc.Exec(hctx, argv, r.env, lw)
	} else {
		st, err = supervisor.ExecStandalone(hctx, argv, r.env, lw)
	}
	lw.flush()
	if errors.Is(err, context.DeadlineExceeded) {
		r.metrics.hookFailed(which)
		return fmt.Errorf("%s-hook timed out after %v", which, r.cfg.HookTimeout)
	}
	if err != nil {
		r.metrics.hookFailed(which)
		return fmt.Errorf("%s-hook: %w", which, err)
	}
	if st.Code() != 0 {
		r.metrics.hookFailed(which)
		return fmt.Errorf("%s-hook %s", which, st)
	}
	log.Debug("hook ok", zap.String("hook", which))
	return nil
}

// HookArgv runs command through /bin/sh -c when a shell exists, else splits it on spaces.
func HookArgv(command string) []string {
	if _, err := os.Stat("/bin/sh"); err == nil {
		return []string{"/bin/sh", "-c", command}
	}
	return strings.Fields(command)
}

// rotate applies the retention policy p to this instance's local snapshots,
// with their sizes and formats and what the runner knows of them (mark) for
// the shrink guard and the on-demand rule, and returns the names deleted.
func (r *Runner) rotate(log *zap.Logger, p rotation.Policy) []string {
	list, err := snapshot.List(r.snap.Dir, r.snap.Name)
	if err != nil {
		log.Warn("rotation: list snapshots", zap.Error(err))
		return nil
	}
	byName := make(map[string]snapshot.Info, len(list))
	snaps := make([]rotation.Snapshot, 0, len(list))
	for _, s := range list {
		byName[s.Name] = s
		rs := rotation.Snapshot{Name: s.Name, Time: s.Time, Size: s.Size, Format: rotation.ArchiveFormat(s.Compression, s.Encryption)}
		r.mark(&rs)
		snaps = append(snaps, rs)
	}
	d := rotation.Decide(snaps, p, time.Now())
	r.noteRotation(d)
	if len(d.Held) > 0 {
		held := make([]string, len(d.Held))
		for i, s := range d.Held {
			held[i] = s.Name
		}
		log.Info("rotation keeps older snapshots that snapshots of an empty or shrunk source would have pushed out (SNAPVISOR_ALLOW_SHRINK=false)", zap.Strings("held", held))
	}
	var deleted []string
	for _, s := range d.Delete {
		info := byName[s.Name]
		if err := os.Remove(info.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("rotation: delete", zap.String("snapshot", s.Name), zap.Error(err))
			continue
		}
		_ = os.Remove(info.Path + ".sha256")
		deleted = append(deleted, s.Name)
	}
	if len(deleted) > 0 {
		log.Info("rotation deleted old snapshots", zap.Strings("deleted", deleted), zap.Int("kept", len(d.Keep)), zap.Stringer("policy", p))
	}
	return deleted
}

// Status is what `entrypoint status` and `entrypoint health` see.
type Status struct {
	Schedule     string    `json:"schedule"`
	Next         time.Time `json:"next,omitempty"`
	Running      bool      `json:"running"`
	Runs         int       `json:"runs"`
	Last         *Result   `json:"last,omitempty"`
	LastGood     *Result   `json:"last_good,omitempty"`
	Service      string    `json:"service"`
	HealthMaxAge string    `json:"health_max_age"`
	Healthy      bool      `json:"healthy"`
	Problem      string    `json:"problem,omitempty"`
	Note         string    `json:"note,omitempty"` // e.g. the grace period of a fresh container
}

func (r *Runner) status(next time.Time, maxAge time.Duration) Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{Schedule: r.cfg.Schedule, Next: next, Running: r.inflight != nil, Runs: r.runs, HealthMaxAge: maxAge.String()}
	if r.runs > 0 {
		last := r.last
		st.Last = &last
	}
	if !r.lastGood.Started.IsZero() {
		good := r.lastGood
		st.LastGood = &good
	}
	st.Service = "unknown"
	if r.svc != nil {
		st.Service = string(r.svc.State())
	}
	st.Healthy = true
	switch {
	case r.svc != nil && r.svc.State() != supervisor.StateRunning && r.svc.State() != supervisor.StatePaused && !(r.svc.State() == supervisor.StateStopped && st.Running):
		st.Healthy, st.Problem = false, "service is "+st.Service
	case st.LastGood != nil && st.LastGood.Shrunk != "" && !r.policy.AllowShrink:
		st.Healthy, st.Problem = false, "the newest snapshot is of an empty or shrunk source ("+st.LastGood.Shrunk+
			"): older, larger snapshots are kept; restore the data, or set SNAPVISOR_ALLOW_SHRINK=true if the shrink is intended"
	case r.leases.problem() != "":
		st.Healthy, st.Problem = false, r.leases.problem()
	case st.LastGood == nil && time.Since(r.started) < r.cfg.HealthGrace:
		// A fresh container within SNAPVISOR_HEALTH_GRACE: the first
		// snapshot may still be on its way.
		st.Note = fmt.Sprintf("no snapshot yet; healthy until %s without one (SNAPVISOR_HEALTH_GRACE)", r.started.Add(r.cfg.HealthGrace).UTC().Format(time.RFC3339))
	case st.LastGood == nil:
		st.Healthy, st.Problem = false, "no successful snapshot yet"
	case time.Since(st.LastGood.Started) > maxAge:
		st.Healthy, st.Problem = false, fmt.Sprintf("last good snapshot is %v old (max %v)", time.Since(st.LastGood.Started).Round(time.Second), maxAge)
	}
	return st
}

// jitter waits a random time up to max, or until ctx ends.
func jitter(ctx context.Context, max time.Duration) {
	if max <= 0 {
		return
	}
	d := rand.N(max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Final takes the cold snapshot after the service has exited: no hooks (the
// service is gone) and no freeze. It waits for a run in progress first (never
// two at once); ctx bounds it all.
func (r *Runner) Final(ctx context.Context) Result {
	f, err := r.claim(ctx)
	if err != nil {
		return Result{Reason: "exit", Started: time.Now(), Error: fmt.Sprintf("waiting for the snapshot in progress: %v", err)}
	}
	r.log.Info("final snapshot after the service exited")
	return r.fly(f, r.run(ctx, "exit", func(ctx context.Context, log *zap.Logger) (snapshot.Info, error) {
		r.nextSecond(ctx)
		return r.create(ctx, log)
	}))
}
