package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"snapvisor/internal/fsx"
	"snapvisor/internal/progress"
	"snapvisor/remote"
	"snapvisor/restic"
	"snapvisor/rotation"
	"snapvisor/snapshot"
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
	Reason   string        `json:"reason"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Snapshot string        `json:"snapshot,omitempty"`
	Size     int64         `json:"size,omitempty"`
	Deleted  []string      `json:"deleted,omitempty"`
	Remotes  []PushResult  `json:"remotes,omitempty"`
	Error    string        `json:"error,omitempty"`
	Skipped  string        `json:"skipped,omitempty"` // why the run took no snapshot without failing (a missing source, the service shutting down)
	Shrunk   string        `json:"shrunk,omitempty"`  // the shrink guard flagged this snapshot: why (rotation.Suspect)
	// Coalesced: this trigger joined a run already in progress, or, for an
	// on-demand one within SNAPVISOR_MIN_INTERVAL, got the previous run's
	// result (Note says so, NextAllowed is when a new one may run).
	Coalesced   bool      `json:"coalesced,omitempty"`
	Note        string    `json:"note,omitempty"`
	NextAllowed time.Time `json:"next_allowed,omitzero"`
}

// Trigger reasons that other packages name. A ReasonRequest snapshot is
// on-demand: it never pushes a scheduled one out (rotation.Snapshot.OnDemand);
// a standalone one counts as scheduled (a CronJob is a schedule).
const (
	ReasonRequest    = "request"    // `entrypoint snapshot` (POST /snapshot) to a running entrypoint
	ReasonStandalone = "standalone" // `entrypoint snapshot` with no entrypoint running (a CronJob, say)
)

// Watch makes every run report its advance to m (a terminal's progress
// line, progress.StartBar). Call it before the first run.
func (r *Runner) Watch(m *progress.Meter) {
	if m != nil {
		r.runCtx = progress.NewContext(r.runCtx, m)
	}
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
	remotes []remote.Remote  // remotes each snapshot is pushed to
	leases  *leases          // this writer's hold on the remotes' leases (lease.go); set with remotes
	restic  *restic.Settings // the restic format's settings (SetRestic); nil: archives
	// alt is the snapshot format when it is not the archive (SetRestic,
	// SetGit): the one seam a format plugs into a run.
	alt format
	// reason is the trigger of the run in progress (a git commit's
	// message names it). Used by runs only.
	reason string
	// resticKeys keeps the repositories' keys between runs (restic.Keys).
	resticKeys *restic.Keys

	started time.Time       // when the runner was made: the health grace period starts here
	clock   clockwork.Clock // the schedule's and the on-start delay's clock (a fake one in tests)

	// runCtx is the context of every run Trigger starts: the runner's, not
	// the caller's. Drain ends it (abandonRuns) when a run outlasts the
	// exit bound.
	runCtx      context.Context
	abandonRuns context.CancelFunc

	mu       sync.Mutex
	inflight *flight
	last     Result
	lastGood Result
	runs     int
	lastEnd  time.Time // when the last run ended (SNAPVISOR_MIN_INTERVAL)
	frozen   time.Time // when the service was paused or stopped for the run in progress; zero once thawed

	// Retention (retention.go): what the runner knows of its snapshots, and
	// what this run's rotations found.
	known      map[string]knownSnapshot
	suspects   map[string]rotation.Suspect
	oldestKept time.Time
	// makeRoomFirst: a run failed for lack of space, so runs rotate by
	// rotation.Policy.MakeRoom first. Used by runs only (never two at once).
	makeRoomFirst bool
	// Replication (replicate.go): copies found damaged (by remote and key)
	// until a good copy replaces them, each remote's newest snapshot as last
	// seen, and the last replication's result.
	damaged         map[string]bool
	remoteNewest    map[string]remote.Snapshot
	lastReplication *ReplicateResult
	// streamedAt: the name time of the last snapshot streamed (streaming
	// mode; nextSecond). Used by runs only.
	streamedAt time.Time
	// drills: the round robin and the last drill of each remote (drill.go); under mu.
	drills drillState
	// notifier sends notifications and heartbeats (notify.go; nil: none);
	// healthMaxAge is Serve's health max age (under mu; 0: not serving).
	notifier     *Notifier
	healthMaxAge time.Duration
}

type flight struct {
	done chan struct{}
	res  Result
	// kind is what holds the slot: kindSnapshot (a trigger joins it), or
	// a replication or a drill (exclusive), which a trigger waits for.
	kind string
}

// What can hold the runner's single in-flight slot.
const (
	kindSnapshot  = "snapshot"
	kindReplicate = "replication"
	kindDrill     = "drill"
)

// NewRunner builds a runner. svc may be nil for a standalone run (hooks run
// without the service, no freeze). The newest local snapshot that is not
// dated in the future is the last good one. With svc, a source that does not
// exist (nothing was restored into it) is reported: runs are skipped until it
// exists.
func NewRunner(cfg Config, snap snapshot.Config, policy rotation.Policy, svc Service, env []string, log *zap.Logger, m *Metrics) *Runner {
	if m == nil {
		m = NewMetrics()
	}
	r := &Runner{cfg: cfg, snap: snap, policy: policy, svc: svc, env: env, log: log, metrics: m, started: time.Now(), clock: clockwork.NewRealClock()}
	r.runCtx, r.abandonRuns = context.WithCancel(context.Background())
	if list, err := snapshot.List(snap.Dir, snap.Name); err == nil && len(list) > 0 {
		now := time.Now()
		var future []string
		for _, s := range list {
			if s.Time.After(now) {
				future = append(future, s.Name)
				continue
			}
			r.lastGood = Result{Reason: "found on disk", Started: s.Time, Snapshot: s.Name, Size: s.Size}
			m.lastSuccess.Set(float64(s.Time.Unix()))
			break
		}
		warnFuture(log, future, now)
	}
	if missing := missingSources(snap.Sources); svc != nil && len(missing) > 0 {
		log.Warn("a source does not exist and no snapshot was restored into it: snapshots will start once it exists",
			zap.Strings("missing", missing))
	}
	return r
}

// warnFuture reports snapshots named after now: a clock stepped back (NTP,
// a resumed VM) or a copy from a host with a skewed clock. They are not
// waited for and do not count as the last good snapshot.
func warnFuture(log *zap.Logger, names []string, now time.Time) {
	if len(names) == 0 {
		return
	}
	log.Warn("snapshots dated in the future: the clock may have been stepped back (or they were copied from a host with a skewed clock); "+
		"new snapshots are named by the current time and health does not count these as the last good snapshot",
		zap.Strings("snapshots", names), zap.Time("now", now.UTC()))
}

// sourceMissingError skips a run: a source does not exist (yet).
type sourceMissingError struct{ missing []string }

func (e *sourceMissingError) Error() string {
	return fmt.Sprintf("source %s does not exist (SNAPVISOR_SOURCE): snapshots will start once it exists", strings.Join(e.missing, ", "))
}

// checkSources returns a *sourceMissingError when a source does not exist.
func checkSources(sources []string) error {
	if missing := missingSources(sources); len(missing) > 0 {
		return &sourceMissingError{missing: missing}
	}
	return nil
}

// missingSources returns the sources that do not exist.
func missingSources(sources []string) []string {
	var missing []string
	for _, s := range sources {
		if _, err := os.Stat(s); errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, s)
		}
	}
	return missing
}

// Trigger takes a snapshot now, or joins the run in progress (coalescing).
// It returns when that run has finished, or with ctx's error when ctx ends
// first: ctx only bounds the wait, the run goes on (the runner owns it). An
// on-demand trigger (ReasonRequest) within SNAPVISOR_MIN_INTERVAL of the end
// of the previous run gets that run's result instead of a new snapshot.
func (r *Runner) Trigger(ctx context.Context, reason string) (Result, error) {
	r.mu.Lock()
	for r.inflight != nil && r.inflight.kind != kindSnapshot {
		// A replication or a drill holds the slot: the snapshot runs after it.
		f := r.inflight
		r.mu.Unlock()
		r.log.Info("snapshot waits for the "+f.kind+" in progress", zap.String("reason", reason))
		select {
		case <-f.done:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
		r.mu.Lock()
	}
	if f := r.inflight; f != nil {
		r.mu.Unlock()
		r.log.Info("snapshot already running: trigger coalesced", zap.String("reason", reason))
		r.metrics.coalesced.Inc()
		res, err := await(ctx, f)
		res.Coalesced = err == nil
		return res, err
	}
	// A skipped run (a missing source, say) did nothing to coalesce into.
	if until, ok := withinMinInterval(r.lastEnd, time.Now(), r.cfg.MinInterval); ok && reason == ReasonRequest && r.last.Skipped == "" {
		res := r.last
		r.mu.Unlock()
		res.Coalesced, res.NextAllowed = true, until
		res.Note = fmt.Sprintf("within SNAPVISOR_MIN_INTERVAL (%v) of the previous run: this is its result; the next on-demand snapshot is allowed from %s",
			r.cfg.MinInterval, until.UTC().Format(time.RFC3339))
		r.log.Info("snapshot request within SNAPVISOR_MIN_INTERVAL of the previous run: its result returned, no new snapshot",
			zap.Duration("min_interval", r.cfg.MinInterval), zap.Time("next_allowed", until.UTC()), zap.String("snapshot", res.Snapshot))
		r.metrics.coalesced.Inc()
		return res, nil
	}
	f := &flight{done: make(chan struct{}), kind: kindSnapshot}
	r.inflight = f
	r.mu.Unlock()

	// The run is not tied to the caller: a client going away, or Serve's
	// end, never leaves the service paused or a snapshot half-written. Only
	// Drain ends it early.
	go func() { r.fly(f, r.run(r.runCtx, reason, r.pipeline)) }()
	return await(ctx, f)
}

// await returns the result of the run f once it has finished, or ctx's
// error when ctx ends first.
func await(ctx context.Context, f *flight) (Result, error) {
	select {
	case <-f.done:
		return f.res, nil
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// withinMinInterval reports whether now is within min of end, the end of
// the previous run (zero: none), and until when.
func withinMinInterval(end, now time.Time, min time.Duration) (until time.Time, ok bool) {
	if min <= 0 || end.IsZero() {
		return time.Time{}, false
	}
	until = end.Add(min)
	return until, now.Before(until)
}

// fly ends the run f with res: records it and wakes whoever waits.
func (r *Runner) fly(f *flight, res Result) Result {
	r.mu.Lock()
	f.res = res
	r.inflight = nil
	r.last = res
	r.runs++
	r.lastEnd = time.Now()
	if res.OK() {
		r.lastGood = res
	}
	r.mu.Unlock()
	r.notifyRun(res) // queued before the result is out: a standalone run flushes it next
	close(f.done)
	return res
}

// Drain is the one wait for a run at exit: it returns true once no snapshot
// is running, or, when ctx ends first, abandons the run in progress (its
// context ends: hooks are killed, the service thawed, the archive's
// temporary file removed, pushes cut short) and returns false without
// waiting for it. Runs started after Drain abandoned one end at once.
func (r *Runner) Drain(ctx context.Context) bool {
	if r.wait(ctx) {
		return true
	}
	r.abandonRuns()
	return false
}

// wait returns when no snapshot is running, or when ctx ends (false).
func (r *Runner) wait(ctx context.Context) bool {
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

// claim waits until no run is in flight and takes the slot for kind (used
// by Final, which must not join a hot run: it is the cold one, and by
// exclusive).
func (r *Runner) claim(ctx context.Context, kind string) (*flight, error) {
	for {
		r.mu.Lock()
		if r.inflight == nil {
			f := &flight{done: make(chan struct{}), kind: kind}
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

// exclusive runs fn in the single in-flight slot, as kind (kindReplicate,
// kindDrill): it waits for the run in progress (never two at once, so never
// inside a snapshot's freeze); snapshot triggers meanwhile wait for it. fn's
// context ends with ctx or when Drain abandons runs. It returns ctx's error
// when ctx ended before the slot was free (fn did not run).
func (r *Runner) exclusive(ctx context.Context, kind string, fn func(ctx context.Context)) error {
	f, err := r.claim(ctx, kind)
	if err != nil {
		return err
	}
	defer func() {
		r.mu.Lock()
		r.inflight = nil
		r.mu.Unlock()
		close(f.done)
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.runCtx, cancel)
	defer stop()
	fn(ctx)
	return nil
}

// run is one snapshot run: the pipeline, then bookkeeping, rotation and pushes.
func (r *Runner) run(ctx context.Context, reason string, pipeline func(context.Context, *zap.Logger) (made, error)) Result {
	res := Result{Reason: reason, Started: time.Now()}
	log := r.log.With(zap.String("reason", reason))
	log.Info("snapshot starting")
	r.metrics.running.Set(1)
	defer r.metrics.running.Set(0)

	r.makeRoom(log)
	r.reason = reason
	info, err := pipeline(ctx, log)
	err = r.noSpace(err)
	res.Duration = time.Since(res.Started)
	r.metrics.lastDuration.Set(res.Duration.Seconds())
	if err != nil {
		service := "left untouched"
		var fe *freezeError
		if errors.As(err, &fe) {
			service = fe.service
		}
		var sm *sourceMissingError
		switch {
		case errors.As(err, &sm):
			// Not a failure: a service that creates its data directory on
			// first use, say. Health still fails once the grace period ends
			// without a good snapshot.
			res.Skipped = sm.Error()
			log.Warn("snapshot skipped: a source does not exist; snapshots will start once it exists", zap.Strings("missing", sm.missing))
		case errors.Is(err, supervisor.ErrShuttingDown):
			// A stop signal (docker stop) came first: nothing is wrong.
			res.Skipped = "the service is shutting down"
			log.Info("snapshot skipped: the service is shutting down", zap.String("service", service), zap.NamedError("reason", err))
		case r.svc != nil && r.svc.State() == supervisor.StateExited:
			// Its hooks and freeze were cut short by the service's exit;
			// the final snapshot (SNAPVISOR_ON_EXIT) is the one that counts.
			res.Error = err.Error()
			r.metrics.failures.Inc()
			log.Warn("snapshot interrupted: the service exited while it ran", zap.Error(err), zap.Duration("duration", res.Duration))
		default:
			res.Error = err.Error()
			r.metrics.failures.Inc()
			log.Error("snapshot failed; the service was "+service+" and the next run will try again",
				zap.Error(err), zap.String("service", service), zap.Duration("duration", res.Duration))
		}
		return res
	}
	res.Snapshot, res.Size = info.Name, info.Size
	r.metrics.successes.Inc()
	r.metrics.lastSuccess.Set(float64(time.Now().Unix()))
	r.metrics.lastSize.Set(float64(info.Size))
	log.Info("snapshot done", zap.String("snapshot", info.Name), zap.Int64("size", info.Size),
		zap.Int64("files", info.Files), zap.Duration("duration", res.Duration))
	if r.alt != nil {
		res.Note = info.note
		res.Remotes, res.Deleted = r.alt.after(ctx, info, log)
		r.metrics.pushed(res.Remotes)
		return res
	}
	r.remember(info.Info, reason)
	res.Deleted = r.rotate(log, r.policy)
	res.Remotes = r.push(ctx, info, log)
	r.metrics.pushed(res.Remotes)
	r.judgeShrink(&res, log)
	r.roomAgain(info.Info, log)
	return res
}

// pipeline: pre-hook, freeze, archive, unfreeze, post-hook (always).
func (r *Runner) pipeline(ctx context.Context, log *zap.Logger) (info made, err error) {
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
// SNAPVISOR_FREEZE_TIMEOUT thaws it even while the archive phase is stuck (a
// read or write blocked in the kernel); the snapshot is then abandoned. A
// failure is a *freezeError telling what happened to the service.
func (r *Runner) archive(ctx context.Context, log *zap.Logger) (info made, err error) {
	if err := checkSources(r.snap.Sources); err != nil { // before freezing the service for nothing
		return info, err
	}
	r.nextSecond(ctx, log)
	if r.svc == nil || r.cfg.Freeze == FreezeNone {
		return r.create(ctx, log)
	}
	fctx, cancel := context.WithTimeout(ctx, r.cfg.FreezeTimeout)
	defer cancel()
	th := &thaw{service: "left untouched"}
	defer func() { // after the thaw below: the service's fate is known
		if err != nil && errors.Is(fctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("abandoned at SNAPVISOR_FREEZE_TIMEOUT (%v): %w", r.cfg.FreezeTimeout, err)
		}
		if err != nil {
			err = &freezeError{service: th.service, err: err}
		}
	}()
	r.setFrozen(true)
	switch r.cfg.Freeze {
	case FreezePause:
		if err := r.svc.Pause(); err != nil {
			r.setFrozen(false)
			return info, fmt.Errorf("pause service: %w", err)
		}
		log.Info("service paused for the archive phase")
		th.fn = func() string {
			defer r.setFrozen(false)
			if err := r.svc.Resume(); err != nil {
				log.Warn("resume service", zap.Error(err))
				return "paused; resuming it failed: " + err.Error()
			}
			log.Info("service resumed")
			return "paused and resumed"
		}
	case FreezeStop:
		st, serr := r.svc.Stop(fctx)
		if r.svc.State() != supervisor.StateStopped {
			r.setFrozen(false)
			if serr == nil {
				serr = fmt.Errorf("the service is %s", r.svc.State())
			}
			return info, fmt.Errorf("stop service: %w", serr)
		}
		// Whatever Stop returned, a stopped service is started again.
		th.fn = func() string {
			defer r.setFrozen(false)
			if err := r.svc.Start(); errors.Is(err, supervisor.ErrShuttingDown) {
				log.Info("service not started again: it is shutting down")
				return "stopped and not started again (it is shutting down)"
			} else if err != nil {
				log.Error("start service again", zap.Error(err))
				return "stopped; starting it again failed: " + err.Error()
			}
			r.metrics.restarts.Inc()
			log.Info("service started again")
			return "stopped and started again"
		}
		if serr != nil {
			th.do()
			return info, fmt.Errorf("stop service: %w", serr)
		}
		log.Info("service stopped for a cold snapshot", zap.Stringer("status", st))
	}
	stopWatch := context.AfterFunc(fctx, th.do)
	defer func() { stopWatch(); th.do() }()
	return r.create(fctx, log)
}

// thaw ends a freeze exactly once: at SNAPVISOR_FREEZE_TIMEOUT (even while
// the archive phase is stuck) or when the archive phase ends, whichever
// comes first. service says what happened to the service; read it after do.
type thaw struct {
	once    sync.Once
	fn      func() string // resume or start again; returns what happened
	service string
}

func (t *thaw) do() {
	t.once.Do(func() {
		if t.fn != nil {
			t.service = t.fn()
		}
	})
}

// freezeError is a failed archive phase and what happened to the service.
type freezeError struct {
	service string // "left untouched", "paused and resumed", "stopped and started again", ...
	err     error
}

func (e *freezeError) Error() string { return e.err.Error() }
func (e *freezeError) Unwrap() error { return e.err }

// setFrozen records when the service was paused or stopped for a snapshot
// (health: not longer than SNAPVISOR_FREEZE_TIMEOUT), or that it was thawed.
func (r *Runner) setFrozen(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frozen = time.Time{}
	if on {
		r.frozen = time.Now()
	}
}

// nextSecond waits, a second at most, until the wall clock has left the
// second of every local snapshot, or in streaming mode of the last streamed
// one (lastStreamed): names have one-second resolution and are never
// reused. This is the one same-second rule; create then names the snapshot
// for its own now. Snapshots dated in the future (a clock stepped back) are
// not waited for: that could take hours. They are reported instead.
func (r *Runner) nextSecond(ctx context.Context, log *zap.Logger) {
	// Wall clock times (Round(0)): names are made of them, not of the monotonic clock.
	now := time.Now().Round(0)
	var times []time.Time
	var names []string
	if r.streaming() {
		if last := r.lastStreamed(ctx, now, log); !last.IsZero() {
			times, names = []time.Time{last}, []string{r.snap.NameAt(last).String()}
		}
	} else {
		list, err := snapshot.List(r.snap.Dir, r.snap.Name)
		if err != nil {
			return
		}
		for _, s := range list {
			times, names = append(times, s.Time), append(names, s.Name)
		}
	}
	wait, future := sameSecondWait(now, times)
	var ahead []string
	for _, i := range future {
		ahead = append(ahead, names[i])
	}
	warnFuture(log, ahead, now)
	_ = fsx.Sleep(ctx, wait)
}

// sameSecondWait is how long a snapshot to be named at now must wait so that
// its name differs from those of snapshots taken at times: until the next
// second when one is named in the current second, else not at all (at most a
// second). future lists the indexes of times after now's second.
func sameSecondWait(now time.Time, times []time.Time) (wait time.Duration, future []int) {
	sec := now.Truncate(time.Second)
	for i, t := range times {
		switch t := t.Truncate(time.Second); {
		case t.After(sec):
			future = append(future, i)
		case t.Equal(sec):
			wait = sec.Add(time.Second + 10*time.Millisecond).Sub(now)
		}
	}
	return wait, future
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
		_ = os.Remove(info.Path + snapshot.SumSuffix)
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
	// Remotes: each remote's newest snapshot as last seen (push, replication).
	Remotes         []RemoteState    `json:"remotes,omitempty"`
	LastReplication *ReplicateResult `json:"last_replication,omitempty"`

	// Drills: the last restore drill of each remote (drill.go).
	Drills []DrillResult `json:"drills,omitempty"`
}

func (r *Runner) status(next time.Time, maxAge time.Duration) Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{Schedule: r.cfg.Schedule, Next: next, Running: r.inflight != nil && r.inflight.kind == kindSnapshot, Runs: r.runs, HealthMaxAge: maxAge.String()}
	if r.runs > 0 {
		last := r.last
		st.Last = &last
	}
	if !r.lastGood.Started.IsZero() {
		good := r.lastGood
		st.LastGood = &good
	}
	st.Remotes = r.remoteStates()
	if r.lastReplication != nil {
		rep := *r.lastReplication
		st.LastReplication = &rep
	}
	st.Service = "unknown"
	var state supervisor.State
	if r.svc != nil {
		state = r.svc.State()
		st.Service = string(state)
	}
	// Frozen for this run (paused or stopped) for longer than allowed: the
	// thaw at SNAPVISOR_FREEZE_TIMEOUT did not bring the service back.
	frozenFor := time.Duration(0)
	if !r.frozen.IsZero() && (state == supervisor.StatePaused || state == supervisor.StateStopped) {
		frozenFor = time.Since(r.frozen)
	}
	// A last good snapshot dated in the future (a clock stepped back after
	// it was found) has no known age: it does not count.
	future := st.LastGood != nil && time.Now().Before(st.LastGood.Started)
	var drillProblem string
	st.Drills, drillProblem = r.drillStatus(time.Now())
	st.Healthy = true
	switch {
	case frozenFor > r.cfg.FreezeTimeout:
		st.Healthy, st.Problem = false, fmt.Sprintf("service %s for a snapshot for %v, longer than SNAPVISOR_FREEZE_TIMEOUT (%v)",
			state, frozenFor.Round(time.Second), r.cfg.FreezeTimeout)
	case r.svc != nil && state != supervisor.StateRunning && state != supervisor.StatePaused && !(state == supervisor.StateStopped && st.Running):
		st.Healthy, st.Problem = false, "service is "+st.Service
	case st.LastGood != nil && st.LastGood.Shrunk != "" && !r.policy.AllowShrink:
		st.Healthy, st.Problem = false, "the newest snapshot is of an empty or shrunk source ("+st.LastGood.Shrunk+
			"): older, larger snapshots are kept; restore the data, or set SNAPVISOR_ALLOW_SHRINK=true if the shrink is intended"
	case r.leases.problem() != "":
		st.Healthy, st.Problem = false, r.leases.problem()
	case (st.LastGood == nil || future) && time.Since(r.started) < r.cfg.HealthGrace:
		// A fresh container within SNAPVISOR_HEALTH_GRACE: the first
		// snapshot may still be on its way.
		st.Note = fmt.Sprintf("no snapshot yet; healthy until %s without one (SNAPVISOR_HEALTH_GRACE)", r.started.Add(r.cfg.HealthGrace).UTC().Format(time.RFC3339))
	case future:
		st.Healthy, st.Problem = false, fmt.Sprintf("the last good snapshot %s is dated in the future (%s; the clock may have been stepped back): its age is unknown",
			st.LastGood.Snapshot, st.LastGood.Started.UTC().Format(time.RFC3339))
	case st.LastGood == nil:
		st.Healthy, st.Problem = false, "no successful snapshot yet"
	case time.Since(st.LastGood.Started) > maxAge:
		st.Healthy, st.Problem = false, fmt.Sprintf("last good snapshot is %v old (max %v)", time.Since(st.LastGood.Started).Round(time.Second), maxAge)
	case drillProblem != "":
		st.Healthy, st.Problem = false, drillProblem
	}
	return st
}

// jitter waits a random time up to max, or until ctx ends.
func jitter(ctx context.Context, max time.Duration) {
	if max <= 0 {
		return
	}
	_ = fsx.Sleep(ctx, rand.N(max))
}

// Final takes the cold snapshot after the service has exited: no hooks (the
// service is gone) and no freeze. It waits for a run in progress first (never
// two at once); ctx bounds it all.
func (r *Runner) Final(ctx context.Context) Result {
	f, err := r.claim(ctx, kindSnapshot)
	if err != nil {
		return Result{Reason: "exit", Started: time.Now(), Error: fmt.Sprintf("waiting for the snapshot in progress: %v", err)}
	}
	r.log.Info("final snapshot after the service exited")
	return r.fly(f, r.run(ctx, "exit", func(ctx context.Context, log *zap.Logger) (made, error) {
		if err := checkSources(r.snap.Sources); err != nil {
			return made{}, err
		}
		r.nextSecond(ctx, log)
		return r.create(ctx, log)
	}))
}
