package jobs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"snapvisor/config"
	"snapvisor/gitsnap"
	"snapvisor/remote"
	"snapvisor/restic"
	"snapvisor/snapshot"
	"snapvisor/store"
	"snapvisor/supervisor"
)

// DrillResult is the outcome of one restore drill.
type DrillResult struct {
	Remote   string        `json:"remote"`             // the remote's Name(), or DrillLocal
	Snapshot string        `json:"snapshot,omitempty"` // the archive key (restic: the snapshot's short ID)
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Archive  int64         `json:"archive_bytes,omitempty"` // bytes downloaded (the archive's size)
	Bytes    int64         `json:"bytes"`                   // bytes of the restored copy (regular files)
	Error    string        `json:"error,omitempty"`
	Output   string        `json:"output,omitempty"` // the tail of SNAPVISOR_DRILL_COMMAND's output
}

// OK reports whether the drill passed.
func (d DrillResult) OK() bool { return d.Error == "" && d.Snapshot != "" }

// DrillLocal is the remote label of a drill of a local snapshot (no
// SNAPVISOR_REMOTES, a local SNAPVISOR_DIR).
const DrillLocal = "local"

// drillOutputTail bounds the drill command's output kept in DrillResult.
const drillOutputTail = 2048

// drillNice is the nice value of SNAPVISOR_DRILL_COMMAND's process.
const drillNice = 10

// drillMargin is the free space a drill leaves beyond its estimate: a
// sixteenth of it plus 16 MiB (file system metadata, the estimate's error).
func drillMargin(need int64) int64 { return need/16 + 16<<20 }

// drillState is the runner's drill bookkeeping: the round robin's next
// remote and the last drill of each remote.
type drillState struct {
	next     int                    // index into r.remotes of the next drill
	last     map[string]DrillResult // by remote label
	lastPass map[string]time.Time   // when a drill of the remote last passed
}

// ErrDrillRemote is wrapped by the error of a drill asked of a remote the
// runner does not have.
var ErrDrillRemote = errors.New("not one of SNAPVISOR_REMOTES")

// Drill runs one restore drill (SNAPVISOR_DRILL_SCHEDULE, entrypoint drill)
// in the runner's single in-flight slot (never during a snapshot): the newest
// complete snapshot of the remote from (a URL or Name() of one of the
// runner's remotes) or, when from is "", of the next remote in turn (round
// robin; without remotes, the newest local snapshot), is downloaded into a
// fresh subdirectory of SNAPVISOR_DRILL_DIR, restored there (checksum and
// full read verified; the real sources are never touched), checked by
// SNAPVISOR_DRILL_COMMAND, and deleted. A drill that ran returns its result,
// passed or failed (DrillResult.Error), and a nil error; the error is
// non-nil only when no drill ran or it has no verdict (ctx ended waiting for
// the slot or during the drill, from is not a remote of the runner, nothing
// to drill): such a drill is not recorded.
func (r *Runner) Drill(ctx context.Context, from string) (DrillResult, error) {
	var res DrillResult
	var derr error
	err := r.exclusive(ctx, kindDrill, func(ctx context.Context) {
		target, label, err := r.drillTarget(from)
		if err != nil {
			derr = err
			return
		}
		res = r.drill(ctx, target, label)
		if !res.OK() && ctx.Err() != nil {
			// Cut short (shutdown, the client gone): no verdict on the snapshot.
			r.log.Info("restore drill interrupted", zap.String("remote", label), zap.String("error", res.Error))
			derr = fmt.Errorf("drill of %s interrupted: %w", label, ctx.Err())
			return
		}
		r.recordDrill(res)
	})
	if err != nil {
		return res, err
	}
	return res, derr
}

// drillTarget picks the remote of the next drill (nil: the local snapshots)
// and its label.
func (r *Runner) drillTarget(from string) (*remote.Remote, string, error) {
	if g, ok := r.alt.(gitFormat); ok {
		label, err := r.gitDrillTarget(g.set, from)
		return nil, label, err
	}
	if from != "" {
		for i := range r.remotes {
			if n := r.remotes[i].Name(); n == from || n == store.Redact(from) {
				return &r.remotes[i], n, nil
			}
		}
		if len(r.remotes) == 0 && from == DrillLocal && r.snap.Dir != "" {
			return nil, DrillLocal, nil
		}
		return nil, "", fmt.Errorf("drill --from %s: %w (%s)", store.Redact(from), ErrDrillRemote, storeNames(r.remotes))
	}
	if len(r.remotes) == 0 {
		if r.snap.Dir == "" {
			return nil, "", errors.New("drill: no remote (SNAPVISOR_REMOTES) and no local snapshot directory (SNAPVISOR_DIR): nothing to drill")
		}
		return nil, DrillLocal, nil
	}
	r.mu.Lock()
	i := r.drills.next % len(r.remotes)
	r.drills.next = i + 1
	r.mu.Unlock()
	return &r.remotes[i], r.remotes[i].Name(), nil
}

// drillLabels are the remotes drills cover, in order: every remote, or
// DrillLocal without remotes.
func (r *Runner) drillLabels() []string {
	if g, ok := r.alt.(gitFormat); ok {
		if len(g.set.Remotes) == 0 {
			return []string{DrillLocal}
		}
		out := make([]string, len(g.set.Remotes))
		for i, rem := range g.set.Remotes {
			out[i] = rem.Name()
		}
		return out
	}
	if len(r.remotes) == 0 {
		if r.snap.Dir == "" {
			return nil
		}
		return []string{DrillLocal}
	}
	out := make([]string, len(r.remotes))
	for i, rm := range r.remotes {
		out[i] = rm.Name()
	}
	return out
}

// recordDrill keeps res as its remote's last drill, and logs and counts it.
func (r *Runner) recordDrill(res DrillResult) {
	r.mu.Lock()
	if r.drills.last == nil {
		r.drills.last, r.drills.lastPass = map[string]DrillResult{}, map[string]time.Time{}
	}
	r.drills.last[res.Remote] = res
	if res.OK() {
		r.drills.lastPass[res.Remote] = res.Started.Add(res.Duration)
	}
	r.mu.Unlock()
	r.metrics.drilled(res)
	r.notifyDrill(res)
	log := r.log.With(zap.String("remote", res.Remote), zap.String("snapshot", res.Snapshot), zap.Duration("duration", res.Duration),
		zap.Int64("bytes", res.Bytes))
	if res.OK() {
		log.Info("restore drill passed")
		return
	}
	log.Error("restore drill failed", zap.String("error", res.Error), zap.String("output", res.Output))
}

// drillBase is the drills' scratch directory: SNAPVISOR_DRILL_DIR, or
// SNAPVISOR_DIR/.drill, or in streaming mode the temporary directory's
// snapvisor-drill.
func drillBase(cfg Config, snap snapshot.Config) string {
	switch {
	case cfg.DrillDir != "":
		return cfg.DrillDir
	case snap.Dir != "":
		return filepath.Join(snap.Dir, ".drill")
	}
	return filepath.Join(os.TempDir(), "snapvisor-drill")
}

// CheckDrillDir checks that the drills' scratch directory (drillBase) is
// apart from every source both ways: a *config.Error for
// SNAPVISOR_DRILL_DIR otherwise. Configuration loading calls it; every drill
// checks again (a mount may have changed).
func CheckDrillDir(cfg Config, snap snapshot.Config) error {
	base := drillBase(cfg, snap)
	if s := snap.Overlaps(base); s != "" {
		e := config.Invalid("DRILL_DIR", cfg.DrillDir, "a directory apart from every source (neither inside one nor holding one): a drill restores a copy there and deletes it")
		e.Err = fmt.Errorf("%s and source %s overlap", base, s)
		return e
	}
	return nil
}

// drill runs one drill of the newest snapshot of rm (nil: the local
// snapshots) and returns its result; the scratch subdirectory is always
// removed.
func (r *Runner) drill(ctx context.Context, rm *remote.Remote, label string) (res DrillResult) {
	res = DrillResult{Remote: label, Started: time.Now()}
	log := r.log.With(zap.String("remote", label))
	defer func() { res.Duration = time.Since(res.Started) }()
	fail := func(err error) DrillResult {
		res.Error = err.Error()
		return res
	}
	if err := CheckDrillDir(r.cfg, r.snap); err != nil {
		return fail(err)
	}
	base := drillBase(r.cfg, r.snap)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return fail(fmt.Errorf("drill scratch directory (SNAPVISOR_DRILL_DIR) %s: %w", base, err))
	}
	removeStaleDrills(base, log)
	sub, err := os.MkdirTemp(base, drillPrefix+"*")
	if err != nil {
		return fail(fmt.Errorf("drill scratch directory (SNAPVISOR_DRILL_DIR) %s: %w", base, err))
	}
	defer func() {
		if r.cfg.DrillDir == "" {
			// The default lives in SNAPVISOR_DIR (a restic repository, say):
			// left only while a drill runs. Removed only when empty.
			defer os.Remove(base)
		}
		if err := os.RemoveAll(sub); err != nil {
			log.Warn("drill: removing the scratch directory", zap.String("path", sub), zap.Error(err))
			if res.Error == "" {
				res.Error = fmt.Sprintf("the drill passed but its scratch directory %s could not be removed: %v", sub, err)
			}
		}
	}()
	root := filepath.Join(sub, "copy")
	cfg := r.snap.Retarget(root)
	opts := snapshot.RestoreOptions{DiscardCurrent: true}

	if g, ok := r.alt.(gitFormat); ok {
		if err := r.drillGit(ctx, g.set, label, sub, cfg, opts, &res, log); err != nil {
			return fail(err)
		}
	} else if r.restic != nil {
		if err := r.drillRestic(ctx, rm, sub, cfg, opts, &res, log); err != nil {
			return fail(err)
		}
	} else if err := r.drillArchive(ctx, rm, sub, cfg, opts, &res, log); err != nil {
		return fail(err)
	}
	res.Bytes = treeBytes(root)
	if r.cfg.DrillCommand != "" {
		out, err := r.drillCommand(ctx, root, log)
		res.Output = out
		if err != nil {
			return fail(err)
		}
	}
	return res
}

// drillPrefix names a drill's scratch subdirectory: distinct enough that
// removeStaleDrills never takes a user's file in SNAPVISOR_DRILL_DIR for one.
const drillPrefix = ".snapvisor-drill-"

// removeStaleDrills removes what drills that were killed left in base.
func removeStaleDrills(base string, log *zap.Logger) {
	stale, _ := filepath.Glob(filepath.Join(base, drillPrefix+"*"))
	for _, d := range stale {
		log.Info("drill: removing a leftover scratch directory", zap.String("path", d))
		_ = os.RemoveAll(d)
	}
}

// drillArchive fetches the newest complete archive of rm (nil: the newest
// local one, read in place) into sub and restores it with cfg.
func (r *Runner) drillArchive(ctx context.Context, rm *remote.Remote, sub string, cfg snapshot.Config, opts snapshot.RestoreOptions, res *DrillResult, log *zap.Logger) error {
	var path string
	var download int64
	if rm == nil {
		list, err := snapshot.List(r.snap.Dir, r.snap.Name)
		if err != nil {
			return fmt.Errorf("drill: list %s: %w", r.snap.Dir, err)
		}
		if len(list) == 0 {
			return fmt.Errorf("drill: no snapshot named %s-* in %s", r.snap.Name, r.snap.Dir)
		}
		res.Snapshot, res.Archive, path = list[0].Name, list[0].Size, list[0].Path
	} else {
		lctx, cancel := rm.WithTimeout(ctx)
		list, err := remote.ListSnapshots(lctx, rm, r.snap.Name)
		err = remote.TimeoutError(lctx, err)
		cancel()
		if err != nil {
			return fmt.Errorf("drill: list %s: %w", rm.Name(), err)
		}
		if len(list) == 0 {
			return fmt.Errorf("drill: no complete snapshot named %s-* on %s", r.snap.Name, rm.Name())
		}
		res.Snapshot, res.Archive, download = list[0].Key, list[0].Size, list[0].Size
	}
	if err := r.drillSpace(sub, download, res.Archive); err != nil {
		return err
	}
	if rm != nil {
		log.Info("drill: downloading", zap.String("snapshot", res.Snapshot), zap.Int64("size", res.Archive))
		fctx, cancel := rm.WithTimeout(ctx)
		p, err := remote.Fetch(fctx, rm, res.Snapshot, filepath.Join(sub, "fetch"))
		err = remote.TimeoutError(fctx, err)
		cancel()
		if err != nil {
			if errors.Is(err, remote.ErrChecksum) {
				// The next replication verifies this copy again and replaces it from a good one.
				r.damagedCopy(rm.Name(), res.Snapshot)
			}
			return fmt.Errorf("drill: download %s from %s: %w", res.Snapshot, rm.Name(), err)
		}
		path = p
	}
	if err := snapshot.Restore(ctx, cfg, path, opts, log); err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	return nil
}

// drillRestic restores the newest snapshot of this host in rm's restic
// repository (nil: SNAPVISOR_DIR's) with cfg.
func (r *Runner) drillRestic(ctx context.Context, rm *remote.Remote, sub string, cfg snapshot.Config, opts snapshot.RestoreOptions, res *DrillResult, log *zap.Logger) error {
	var place remote.Remote
	if rm != nil {
		place = *rm
	} else {
		places, err := Places(ctx, r.snap.Dir, nil, log)
		if err != nil {
			return fmt.Errorf("drill: %w", err)
		}
		place = places[0]
		defer place.Close()
	}
	repos, errs := openRepos(ctx, r.resticKeys, []remote.Remote{place}, *r.restic, false)
	if errs[0] != nil {
		return fmt.Errorf("drill: open the restic repository on %s: %w", place.Name(), errs[0])
	}
	host := r.restic.HostOr(r.snap.Name)
	cands, lerrs := restic.Candidates(ctx, repos, host)
	if len(lerrs) > 0 {
		return fmt.Errorf("drill: list the restic snapshots on %s: %w", place.Name(), errors.Join(lerrs...))
	}
	if len(cands) == 0 {
		return fmt.Errorf("drill: no restic snapshot of host %q on %s", host, place.Name())
	}
	c := cands[0]
	res.Snapshot = c.Snapshot.ID.Str()
	// A restic restore reads blobs in place: no download, the restored
	// size estimated by the sources'.
	if err := r.drillSpace(sub, 0, 0); err != nil {
		return err
	}
	st, err := restic.RestoreSnapshot(ctx, c.Repo, c.Snapshot, cfg, r.restic.LockWait, opts, log)
	if err != nil {
		return fmt.Errorf("drill: restic snapshot %s: %w", res.Snapshot, err)
	}
	log.Info("drill: restic snapshot restored", zap.String("snapshot", res.Snapshot), zap.Int64("files", st.Files))
	return nil
}

// drillSpace refuses a drill that would not fit in sub's file system: the
// download, plus the restored copy, estimated as the larger of the
// sources' current size and the archive's size, plus drillMargin.
func (r *Runner) drillSpace(sub string, download, archive int64) error {
	var restored int64
	for _, s := range r.snap.Sources {
		restored += treeBytes(s)
	}
	restored = max(restored, archive)
	need := download + restored
	need += drillMargin(need)
	var st unix.Statfs_t
	if err := unix.Statfs(sub, &st); err != nil {
		return fmt.Errorf("drill: free space of %s (SNAPVISOR_DRILL_DIR): %w", sub, err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < need {
		return fmt.Errorf("drill refused: SNAPVISOR_DRILL_DIR (%s) has %s free, the drill needs about %s "+
			"(download %s + restored copy %s, estimated by the sources' current size, + margin): "+
			"point SNAPVISOR_DRILL_DIR at a larger volume", filepath.Dir(sub), mib(free), mib(need), mib(download), mib(restored))
	}
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// treeBytes is the size of the regular files under root (0 when missing).
func treeBytes(root string) int64 {
	var n int64
	_ = filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable parts do not count
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// drillCommand runs SNAPVISOR_DRILL_COMMAND against the restored copy at
// root (SNAPVISOR_DRILL_DIR=root), at nice 10, bounded by
// SNAPVISOR_HOOK_TIMEOUT, through the supervisor like the hooks (so that
// PID 1's reaper leaves its status alone). It returns the output's tail.
func (r *Runner) drillCommand(ctx context.Context, root string, log *zap.Logger) (string, error) {
	hctx, cancel := context.WithTimeout(ctx, r.cfg.HookTimeout)
	defer cancel()
	env := append(append([]string(nil), r.env...), "SNAPVISOR_DRILL_DIR="+root)
	tail := &tailWriter{max: drillOutputTail}
	lw := &lineLogger{log: log.With(zap.String("hook", "drill"))}
	out := multiWriter{lw, tail}
	var st supervisor.Status
	var err error
	niced(func() {
		if r.svc != nil {
			st, err = r.svc.Exec(hctx, HookArgv(r.cfg.DrillCommand), env, out)
		} else {
			st, err = supervisor.ExecStandalone(hctx, HookArgv(r.cfg.DrillCommand), env, out)
		}
	}, log)
	lw.flush()
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (err != nil && errors.Is(hctx.Err(), context.DeadlineExceeded)):
		return tail.String(), fmt.Errorf("drill command (SNAPVISOR_DRILL_COMMAND) timed out after %v (SNAPVISOR_HOOK_TIMEOUT)", r.cfg.HookTimeout)
	case err != nil:
		return tail.String(), fmt.Errorf("drill command (SNAPVISOR_DRILL_COMMAND): %w", err)
	case st.Code() != 0:
		return tail.String(), fmt.Errorf("drill command (SNAPVISOR_DRILL_COMMAND) %s", st)
	}
	return tail.String(), nil
}

// niced runs fn, which starts a process, on an OS thread of its own at nice
// drillNice: a child inherits the nice value of the thread that forks it, so
// only the command's process runs niced, not the entrypoint. The thread is
// never unlocked, so Go ends it with the goroutine and no other goroutine
// ever runs at that priority. (No library does this; os/exec has no nice
// attribute, and a nice(1) binary is not in every image.)
//
// Except the main thread: Go never ends it, it wedges it, and the
// entrypoint (its main thread is what ps and /proc/PID/stat show) would
// stay at nice 10. A goroutine that lands there holds it, locked, while
// another one, which cannot run there then, does the work.
func niced(fn func(), log *zap.Logger) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if unix.Gettid() == unix.Getpid() {
			niced(fn, log)
			runtime.UnlockOSThread() // the main thread, untouched
			return
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), drillNice); err != nil {
			// Already nicer than 10 (lowering it needs CAP_SYS_NICE): fine.
			log.Debug("drill command: set nice", zap.Error(err))
		}
		fn()
	}()
	<-done
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// multiWriter writes to each writer (none of them fails).
type multiWriter []interface{ Write([]byte) (int, error) }

func (m multiWriter) Write(p []byte) (int, error) {
	for _, w := range m {
		_, _ = w.Write(p)
	}
	return len(p), nil
}

// drillStatus returns the last drill of every remote, by label, and the
// health problem of the drills ("" when none) with SNAPVISOR_HEALTH_DRILL_MAX_AGE
// set: a remote whose last drill failed, or with no drill passed within that
// age (counted from the runner's start while none has passed). Caller
// holds r.mu.
func (r *Runner) drillStatus(now time.Time) ([]DrillResult, string) {
	var out []DrillResult
	for _, d := range r.drills.last {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Remote < out[j].Remote })
	maxAge := r.cfg.HealthDrillMaxAge
	if maxAge <= 0 {
		return out, ""
	}
	for _, label := range r.drillLabels() {
		if d, ok := r.drills.last[label]; ok && !d.OK() {
			return out, fmt.Sprintf("the last restore drill of %s failed (%s): fix it and run `entrypoint drill --from %s` (SNAPVISOR_HEALTH_DRILL_MAX_AGE=%v)",
				label, d.Error, label, maxAge)
		}
		since, ok := r.drills.lastPass[label]
		if !ok {
			since = r.started
		}
		if age := now.Sub(since); age > maxAge {
			what := "no restore drill of " + label + " has passed"
			if ok {
				what = "the last passed restore drill of " + label + " is " + age.Round(time.Second).String() + " old"
			}
			return out, fmt.Sprintf("%s within SNAPVISOR_HEALTH_DRILL_MAX_AGE (%v): check SNAPVISOR_DRILL_SCHEDULE, or run `entrypoint drill`", what, maxAge)
		}
	}
	return out, ""
}

// gitDrillTarget picks the git remote (SNAPVISOR_GIT_REMOTES) of the next
// drill of the git format by its label: from (its URL or Name()), or the
// next in turn; without git remotes, the local repository (DrillLocal).
func (r *Runner) gitDrillTarget(set gitsnap.Set, from string) (string, error) {
	if len(set.Remotes) == 0 {
		if from != "" && from != DrillLocal {
			return "", fmt.Errorf("drill --from %s: %w (no SNAPVISOR_GIT_REMOTES: only the local repository)", store.Redact(from), ErrDrillRemote)
		}
		return DrillLocal, nil
	}
	if from != "" {
		for _, rem := range set.Remotes {
			if rem.Raw == from || rem.Name() == from || rem.Name() == store.Redact(from) {
				return rem.Name(), nil
			}
		}
		return "", fmt.Errorf("drill --from %s: %w (a git remote of SNAPVISOR_GIT_REMOTES)", store.Redact(from), ErrDrillRemote)
	}
	r.mu.Lock()
	i := r.drills.next % len(set.Remotes)
	r.drills.next = i + 1
	r.mu.Unlock()
	return set.Remotes[i].Name(), nil
}

// drillGit restores the branch's head commit of the git remote labelled
// label (fetched into sub first: its whole history, each object checked
// against its hash), or of the local repository (DrillLocal), with cfg.
// The head itself must restore: a drill does not fall back to the parent
// as auto-restore does, since that would hide the damage it is for.
func (r *Runner) drillGit(ctx context.Context, set gitsnap.Set, label, sub string, cfg snapshot.Config, opts snapshot.RestoreOptions, res *DrillResult, log *zap.Logger) error {
	if err := r.drillSpace(sub, 0, 0); err != nil {
		return err
	}
	var repo *gitsnap.Repo
	var head plumbing.Hash
	var err error
	if label == DrillLocal {
		if repo, err = set.Open(false); err == nil {
			if head, err = repo.Head(); err != nil {
				repo.Close()
			}
		}
	} else {
		for _, rem := range set.Remotes {
			if rem.Name() == label {
				log.Info("drill: fetching the branch", zap.String("remote", label))
				repo, head, err = set.FetchInto(ctx, rem, filepath.Join(sub, "fetch.git"))
				break
			}
		}
		if repo == nil && err == nil {
			err = fmt.Errorf("%w: %s", ErrDrillRemote, label)
		}
	}
	if err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	defer repo.Close()
	res.Snapshot = head.String()[:12]
	if _, err := repo.Restore(ctx, head, cfg, opts, log); err != nil {
		return fmt.Errorf("drill: commit %s: %w", res.Snapshot, err)
	}
	return nil
}
