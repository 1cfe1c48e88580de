package restic

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Lock timings, restic 0.14's own.
const (
	// LockRefresh is how often a held lock's file is rewritten with a fresh
	// time (restic's refreshInterval).
	LockRefresh = 5 * time.Minute
	// LockStaleAfter is the age at which any client takes a lock file for
	// stale, whoever wrote it (restic's staleTimeout).
	LockStaleAfter = 30 * time.Minute
	// lockSettle is the pause between writing our lock file and looking for
	// others (restic's waitBeforeLockCheck): a client that wrote its file at
	// the same moment has it listed by then.
	lockSettle = 200 * time.Millisecond
)

// Our own bounds (restic 0.14 has no retries and no I/O bounds here).
const (
	// lockRetryFirst and lockRetryMax bound the pause between attempts
	// while a lock is waited for; it doubles from the first to the max.
	lockRetryFirst = time.Second
	lockRetryMax   = 30 * time.Second
	// lockIOTimeout bounds each write or delete of a lock file done
	// outside the caller's context (refresh, unlock, cleanup).
	lockIOTimeout = time.Minute
)

// lockFile is the JSON of a file in locks/, as restic reads and writes it.
type lockFile struct {
	Time      time.Time `json:"time"`
	Exclusive bool      `json:"exclusive"`
	Hostname  string    `json:"hostname"`
	Username  string    `json:"username"`
	PID       int       `json:"pid"`
	UID       uint32    `json:"uid,omitempty"`
	GID       uint32    `json:"gid,omitempty"`
}

// LockedError is the refusal to lock: another client holds a lock that
// conflicts with the one asked for.
type LockedError struct {
	Repo      string // the repository's location (credentials redacted)
	File      ID     // the other client's lock file
	Exclusive bool   // the other lock is exclusive
	Host      string
	PID       int
	User      string
	Time      time.Time     // when the other lock was written (or last refreshed)
	Age       time.Duration // its age when it was seen
}

func (e *LockedError) Error() string {
	how := ""
	if e.Exclusive {
		how = "exclusively "
	}
	return fmt.Sprintf("%s: repository is locked %sby PID %d on %s by %s (lock %s, written %s ago); another client is using it",
		e.Repo, how, e.PID, e.Host, e.User, e.File.Str(), e.Age.Round(time.Second))
}

// LockOptions say which lock to take and how; Repo.Lock fills them with
// the defaults.
type LockOptions struct {
	Exclusive bool
	// Wait is how long to retry while another client's lock conflicts;
	// 0: try once.
	Wait time.Duration
	// Refresh is how often the lock file is rewritten; 0: LockRefresh.
	Refresh time.Duration
	Log     *zap.Logger // nil: no logs
}

// Lock is a lock held on a repository: a file in locks/ that a goroutine
// owned by the Lock rewrites every refresh interval, until Unlock.
type Lock struct {
	r       *Repo
	info    lockFile
	refresh time.Duration
	log     *zap.Logger

	stop   chan struct{}
	done   chan struct{}
	unlock sync.Once
	err    error // Unlock's outcome, set before done closes

	mu    sync.Mutex
	file  ID        // the current lock file
	fresh time.Time // when the current lock file was written
	stale []ID      // our older files whose deletion failed, retried at each refresh
}

// Lock takes a lock on the repository as restic 0.14 does: exclusive
// (prune, forget) or not (backup, restore). An exclusive lock conflicts with
// every other lock, a non-exclusive one with exclusive ones; stale locks
// (older than LockStaleAfter, or written on this host by a process that no
// longer exists) are ignored. While a conflict lasts it retries until wait
// has passed (0: once), then returns a *LockedError naming the holder. The
// lock is refreshed every LockRefresh until Unlock.
func (r *Repo) Lock(ctx context.Context, exclusive bool, wait time.Duration) (*Lock, error) {
	return r.LockWith(ctx, LockOptions{Exclusive: exclusive, Wait: wait})
}

// LockWith is Lock with every option.
func (r *Repo) LockWith(ctx context.Context, o LockOptions) (*Lock, error) {
	if o.Refresh <= 0 {
		o.Refresh = LockRefresh
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	host, _ := os.Hostname() // restic leaves it empty too when it cannot be known
	info := lockFile{Exclusive: o.Exclusive, Hostname: host, Username: username(), PID: os.Getpid(),
		UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	deadline := time.Now().Add(o.Wait)
	pause := lockRetryFirst
	for {
		info.Time = time.Now()
		id, locked, err := r.tryLock(ctx, info)
		if err != nil {
			return nil, err
		}
		if locked == nil {
			l := &Lock{r: r, info: info, refresh: o.Refresh, log: o.Log, stop: make(chan struct{}), done: make(chan struct{}),
				file: id, fresh: info.Time}
			go l.run()
			return l, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, locked
		}
		p := min(pause, left)
		o.Log.Info("repository locked by another client; waiting", zap.String("repository", r.name),
			zap.Int("pid", locked.PID), zap.String("host", locked.Host), zap.Bool("exclusive", locked.Exclusive),
			zap.Duration("retry_in", p), zap.Duration("wait_left", left))
		t := time.NewTimer(p)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (stopped waiting: %w)", locked, ctx.Err())
		case <-t.C:
		}
		pause = min(2*pause, lockRetryMax)
	}
}

// tryLock makes one attempt: look for conflicting locks, write our lock
// file, let it settle, and look again (a client that wrote its own at the
// same moment sees ours, or we see theirs; both may back off). Looking
// first keeps us from writing a file while a conflicting lock is held: a
// client starting then would take our short-lived file for a real lock.
func (r *Repo) tryLock(ctx context.Context, info lockFile) (ID, *LockedError, error) {
	if locked, err := r.lockConflict(ctx, info, nil); locked != nil || err != nil {
		return ID{}, locked, err
	}
	id, err := r.SaveJSON(ctx, LockFile, info)
	if err != nil {
		return ID{}, nil, fmt.Errorf("write lock: %w", err)
	}
	t := time.NewTimer(lockSettle)
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
	}
	t.Stop()
	var locked *LockedError
	if err == nil {
		locked, err = r.lockConflict(ctx, info, &id)
	}
	if locked != nil || err != nil {
		if rerr := r.removeLockFile(id); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return ID{}, locked, err
	}
	return id, nil, nil
}

// lockConflict returns the first lock file (other than own) that conflicts
// with mine. A lock file that cannot be read is an error: whether it
// conflicts cannot be known (restic 0.14 ignores it; newer versions refuse).
func (r *Repo) lockConflict(ctx context.Context, mine lockFile, own *ID) (*LockedError, error) {
	ids, err := r.List(ctx, LockFile)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, id := range sortedIDs(ids) {
		if own != nil && id == *own {
			continue
		}
		var other lockFile
		if err := r.LoadJSON(ctx, LockFile, id, &other); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since it was listed
			}
			return nil, fmt.Errorf("lock file %s cannot be read, so whether it conflicts is unknown (remove it with `restic unlock --remove-all` when no client runs): %w", id.Str(), err)
		}
		if conflicts(mine, other, now, processAlive) {
			return &LockedError{Repo: r.name, File: id, Exclusive: other.Exclusive, Host: other.Hostname, PID: other.PID,
				User: other.Username, Time: other.Time, Age: now.Sub(other.Time)}, nil
		}
	}
	return nil, nil
}

// conflicts reports whether other keeps mine from being taken at now: an
// exclusive lock conflicts with any other, a non-exclusive one with
// exclusive ones, unless other is stale.
func conflicts(mine, other lockFile, now time.Time, alive func(pid int) bool) bool {
	if !mine.Exclusive && !other.Exclusive {
		return false
	}
	return !stale(other, mine.Hostname, now, alive)
}

// stale is restic's test: a lock older than LockStaleAfter, or one written
// on this host (host) by a process that does not exist.
func stale(l lockFile, host string, now time.Time, alive func(pid int) bool) bool {
	if now.Sub(l.Time) > LockStaleAfter {
		return true
	}
	return host != "" && l.Hostname == host && l.PID > 0 && !alive(l.PID)
}

// processAlive reports whether a process pid exists here. restic sends it a
// SIGHUP (its own processes ignore that); signal 0 asks the kernel without
// disturbing a process of ours, which may be PID 1 forwarding signals.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// removeLockFile deletes one of our lock files, bounded by lockIOTimeout
// whatever the caller's context.
func (r *Repo) removeLockFile(id ID) error {
	ctx, cancel := context.WithTimeout(context.Background(), lockIOTimeout)
	defer cancel()
	return r.Remove(ctx, LockFile, id)
}

// run is the refresh goroutine: it owns the lock file until stop, then
// deletes it.
func (l *Lock) run() {
	defer close(l.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // a refresh in flight is abandoned at Unlock
		select {
		case <-l.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	t := time.NewTicker(l.refresh)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			l.err = l.release()
			return
		case <-t.C:
			l.refreshOnce(ctx)
		}
	}
}

// refreshOnce writes a lock file with a fresh time, then deletes the old
// one (restic's order: the lock is never without a file).
func (l *Lock) refreshOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, lockIOTimeout)
	defer cancel()
	info := l.info
	info.Time = time.Now()
	id, err := l.r.SaveJSON(ctx, LockFile, info)
	if err != nil {
		l.log.Warn("lock refresh failed; retried at the next interval", zap.String("repository", l.r.name), zap.Error(err))
		return
	}
	l.mu.Lock()
	old := append(l.stale, l.file)
	l.file, l.fresh, l.stale = id, info.Time, nil
	l.mu.Unlock()
	var failed []ID
	for _, o := range old {
		if err := l.r.Remove(ctx, LockFile, o); err != nil {
			l.log.Warn("old lock file not deleted; retried at the next refresh", zap.String("repository", l.r.name),
				zap.String("lock", o.Str()), zap.Error(err))
			failed = append(failed, o)
		}
	}
	l.mu.Lock()
	l.stale = append(l.stale, failed...)
	l.mu.Unlock()
}

// release deletes every lock file of ours.
func (l *Lock) release() error {
	l.mu.Lock()
	files := append(l.stale, l.file)
	l.mu.Unlock()
	var errs []error
	for _, id := range files {
		if err := l.r.removeLockFile(id); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("unlock (the lock turns stale by itself once this process exits or in %v): %w", LockStaleAfter, err)
	}
	return nil
}

// Unlock stops the refresh and deletes the lock file; it returns within
// about two lockIOTimeouts. Calling it again returns the first outcome; a
// nil Lock is unlocked.
func (l *Lock) Unlock() error {
	if l == nil {
		return nil
	}
	l.unlock.Do(func() { close(l.stop) })
	<-l.done
	return l.err
}

// Check reports an error when the lock may no longer hold: its file was
// last written more than half of LockStaleAfter ago (refreshes failed), so
// other clients may soon take it for stale. Destructive steps check it first.
func (l *Lock) Check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.done:
		return errors.New("the lock was released")
	default:
	}
	if age := time.Since(l.fresh); age > LockStaleAfter/2 {
		return fmt.Errorf("%s: our lock was last refreshed %v ago (refreshes fail): other clients may take it for stale soon", l.r.name, age.Round(time.Second))
	}
	return nil
}

// Exclusive reports whether the lock is exclusive.
func (l *Lock) Exclusive() bool { return l.info.Exclusive }
