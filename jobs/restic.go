package jobs

// The restic format's run (SNAPVISOR_FORMAT=restic): the same pipeline
// (hooks, freeze, schedule, socket) around a different create and
// retention. Snapshots go into a restic repository in SNAPVISOR_DIR (when
// set) and on every remote; the restic package does the format.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"snapvisor/remote"
	"snapvisor/restic"
	"snapvisor/snapshot"
	"snapvisor/store"
)

// Snapshot formats (SNAPVISOR_FORMAT).
const (
	FormatArchive = "archive"
	FormatRestic  = "restic"
	FormatGit     = "git"
)

// SetRestic switches the runner to the restic format with settings s
// (validated).
func (r *Runner) SetRestic(s restic.Settings) {
	r.restic, r.resticKeys = &s, &restic.Keys{}
	r.alt = resticFormat{r}
}

// resticFormat is the restic format's side of a run.
type resticFormat struct{ r *Runner }

func (f resticFormat) create(ctx context.Context, log *zap.Logger) (made, error) {
	return f.r.resticCreate(ctx, log)
}

// after: the repositories were written by create (no push step); then retention.
func (f resticFormat) after(ctx context.Context, m made, log *zap.Logger) ([]PushResult, []string) {
	return m.streamed, f.r.resticRetain(ctx, m, log)
}

func (f resticFormat) seed(ctx context.Context) { f.r.resticSeed(ctx) }

// Places are the locations of the restic repositories: SNAPVISOR_DIR (when
// set) first, then every remote. The caller closes them (CloseAll).
func Places(ctx context.Context, dir string, remotes []remote.Remote, log *zap.Logger) ([]remote.Remote, error) {
	var out []remote.Remote
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		st, err := store.Open(ctx, "file://"+abs, store.Config{}, log)
		if err != nil {
			return nil, fmt.Errorf("SNAPVISOR_DIR %s: %w", dir, err)
		}
		out = append(out, remote.Remote{Store: st})
	}
	return append(out, remotes...), nil
}

// placesTimeout is the time limit of one place's part of a run: the
// remotes' SNAPVISOR_REMOTE_TIMEOUT (SNAPVISOR_DIR has none of its own).
func placesTimeout(places []remote.Remote) time.Duration {
	var d time.Duration
	for _, p := range places {
		d = max(d, p.Timeout)
	}
	return d
}

// openRepos opens (create: initialises) the repository of every place,
// remembering the keys in keys (nil: none).
func openRepos(ctx context.Context, keys *restic.Keys, places []remote.Remote, s restic.Settings, create bool) ([]*restic.Repo, []error) {
	stores := make([]store.Store, len(places))
	for i, p := range places {
		stores[i] = p.Store
	}
	return keys.OpenAll(ctx, stores, restic.Password(s.Password.Reveal()), create, placesTimeout(places))
}

// resticCreate takes one snapshot into every place's repository.
func (r *Runner) resticCreate(ctx context.Context, log *zap.Logger) (made, error) {
	places, err := Places(ctx, r.snap.Dir, r.remotes, log)
	if err != nil {
		return made{}, err
	}
	if r.snap.Dir != "" {
		defer places[0].Close()
	}
	repos, errs := openRepos(ctx, r.resticKeys, places, *r.restic, true)
	results := make([]PushResult, len(places))
	var open []*restic.Repo
	idx := map[*restic.Repo]int{}
	for i, p := range places {
		results[i].Remote = p.Name()
		if errs[i] != nil {
			results[i].Error = errs[i].Error()
			log.Error("restic repository unavailable", zap.String("repository", p.Name()), zap.Error(errs[i]))
			continue
		}
		open = append(open, repos[i])
		idx[repos[i]] = i
	}
	if len(open) == 0 {
		return made{}, fmt.Errorf("no restic repository to write to: %s", remote.JoinResults(results))
	}
	at := time.Now().Round(0)
	sources := make([]string, len(r.snap.Sources))
	for i, s := range r.snap.Sources {
		if sources[i], err = filepath.Abs(s); err != nil {
			return made{}, err
		}
	}
	host := r.restic.HostOr(r.snap.Name)
	res, err := restic.Take(ctx, open, r.restic.LockWait, restic.BackupOptions{
		Sources: sources, Excluded: r.snap.Excluded, Host: host, Time: at, Version: "snapvisor " + snapshot.Version, Log: log,
		Tags: []string{"snapvisor"}, Timeout: placesTimeout(places),
	})
	var first *restic.Snapshot
	var written []*restic.Repo
	for _, o := range res {
		i := idx[o.Repo]
		if o.Err != nil {
			results[i].Error = o.Err.Error()
			r.metrics.pushFailures.Inc()
			log.Error("restic snapshot failed on one repository; the others are unaffected", zap.String("repository", o.Repo.Name()), zap.Error(o.Err))
			continue
		}
		written = append(written, o.Repo)
		sm := o.Snapshot.Summary
		log.Info("restic snapshot saved", zap.String("repository", o.Repo.Name()), zap.String("id", o.Snapshot.ID.Str()),
			zap.Uint64("added_bytes", sm.DataAdded), zap.Uint64("added_packed_bytes", sm.DataAddedPacked),
			zap.Uint("files_new", sm.FilesNew), zap.Uint("files_changed", sm.FilesChanged), zap.Uint("files_unmodified", sm.FilesUnmodified))
		r.metrics.resticAdded(o.Repo.Name(), sm.DataAddedPacked)
		if first == nil {
			first = o.Snapshot
		}
	}
	if err != nil {
		return made{}, err
	}
	sm := first.Summary
	info := snapshot.Info{Name: first.ID.Str(), Time: at, Size: int64(sm.TotalBytesProcessed), Files: int64(sm.TotalFilesProcessed)}
	return made{Info: info, streamed: results, repos: written, places: places}, nil
}

// resticRetain forgets the snapshots of this host and sources that the
// retention policy does not keep, in every repository the run wrote, then
// prunes unreferenced data within SNAPVISOR_PRUNE_BUDGET. Failures are
// logged: the snapshot just taken is safe either way.
func (r *Runner) resticRetain(ctx context.Context, m made, log *zap.Logger) []string {
	host := r.restic.HostOr(r.snap.Name)
	paths := make([]string, len(r.snap.Sources))
	for i, s := range r.snap.Sources {
		paths[i], _ = filepath.Abs(s)
	}
	var (
		mu      sync.Mutex
		deleted []string
		wg      sync.WaitGroup
	)
	for _, repo := range m.repos {
		wg.Go(func() {
			gone, err := restic.Forget(ctx, repo, host, paths, r.policy, time.Now())
			if err != nil {
				log.Warn("restic forget failed", zap.String("repository", repo.Name()), zap.Error(err))
				return
			}
			mu.Lock()
			for _, s := range gone {
				deleted = append(deleted, repo.Name()+": "+s.ID.Str())
			}
			mu.Unlock()
			if r.restic.PruneBudget > 0 && len(gone) > 0 {
				pctx, cancel := context.WithTimeout(ctx, r.restic.PruneBudget)
				st, err := restic.Prune(pctx, repo, restic.PruneOptions{Budget: r.restic.PruneBudget, LockWait: r.restic.LockWait})
				cancel()
				if err != nil {
					var le *restic.LockedError
					if errors.As(err, &le) {
						log.Info("restic prune skipped: another client holds a lock; the next run prunes", zap.String("repository", repo.Name()), zap.Error(err))
					} else {
						log.Warn("restic prune failed; the next run tries again", zap.String("repository", repo.Name()), zap.Error(err))
					}
				} else {
					log.Info("restic prune done", zap.String("repository", repo.Name()), zap.Any("stats", st))
				}
			}
			if size, err := repo.Size(ctx); err == nil {
				r.metrics.resticSize(repo.Name(), size)
			}
		})
	}
	wg.Wait()
	if len(deleted) > 0 {
		log.Info("restic retention forgot old snapshots", zap.Strings("forgotten", deleted))
	}
	return deleted
}

// ResticRestoreIfEmpty is RestoreIfEmpty for the restic format: when the
// first source is missing or empty, the newest snapshot of this host
// (SNAPVISOR_HOST) in any place's repository (SNAPVISOR_DIR, then the
// remotes) is restored, staged and swapped as archives are. A snapshot
// whose data is damaged or missing makes it try the next newest; any other
// fault stops it. A place that cannot be read (unreachable, wrong password)
// while no other has a snapshot refuses the start (ErrRemoteUnavailable)
// rather than start the service on empty data.
func ResticRestoreIfEmpty(ctx context.Context, cfg snapshot.Config, s restic.Settings, remotes []remote.Remote, log *zap.Logger) (string, error) {
	if err := snapshot.Recover(cfg, log); err != nil {
		return "", fmt.Errorf("%w: %w", ErrRestoreFailed, err)
	}
	opts, empty, err := emptySources(cfg, log)
	if !empty || err != nil {
		return "", err
	}
	places, err := Places(ctx, cfg.Dir, remotes, log)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrRestoreFailed, err)
	}
	if cfg.Dir != "" {
		defer places[0].Close()
	}
	repos, errs := openRepos(ctx, nil, places, s, false)
	var unreadable []error
	for i, err := range errs {
		if err != nil && !errors.Is(err, restic.ErrNoRepository) {
			unreadable = append(unreadable, fmt.Errorf("%s: %w", places[i].Name(), err))
		}
	}
	host := s.HostOr(cfg.Name)
	cands, lerrs := restic.Candidates(ctx, repos, host)
	unreadable = append(unreadable, lerrs...)
	var tried []error
	for _, c := range cands {
		log.Info("auto-restore: restoring before the service starts", zap.String("repository", c.Repo.Name()),
			zap.String("snapshot", c.Snapshot.ID.Str()), zap.Time("time", c.Snapshot.Time), zap.String("source", cfg.Sources[0]))
		st, err := restic.RestoreSnapshot(ctx, c.Repo, c.Snapshot, cfg, s.LockWait, opts, log)
		if err == nil {
			log.Info("auto-restore: done", zap.String("snapshot", c.Snapshot.ID.Str()), zap.Int64("files", st.Files), zap.Int64("bytes", st.Bytes))
			return c.Snapshot.ID.Str(), nil
		}
		if !restic.Unusable(err) {
			return "", fmt.Errorf("%w: restoring restic snapshot %s from %s (the service was not started; older snapshots were not tried: the fault is not the snapshot's): %w",
				ErrRestoreFailed, c.Snapshot.ID.Str(), c.Repo.Name(), err)
		}
		tried = append(tried, err)
		log.Warn("auto-restore: snapshot damaged or incomplete, trying the next newest", zap.String("snapshot", c.Snapshot.ID.Str()), zap.Error(err))
	}
	switch {
	case len(tried) > 0:
		return "", fmt.Errorf("%w: none of %d restic snapshots of host %q restored (the service was not started): %w", ErrRestoreFailed, len(tried), host, errors.Join(append(tried, unreadable...)...))
	case len(unreadable) > 0:
		return "", fmt.Errorf("%w: %w: not starting the service on empty data while a repository that may hold its snapshots cannot be read "+
			"(fix it, its credentials or RESTIC_PASSWORD; to start with empty data on purpose, set SNAPVISOR_RESTORE=never once): %w",
			ErrRestoreFailed, ErrRemoteUnavailable, errors.Join(unreadable...))
	}
	log.Info("auto-restore: data directory is empty and no repository has a snapshot of this host: starting with empty data",
		zap.String("source", cfg.Sources[0]), zap.String("host", host), zap.Int("repositories", len(places)))
	return "", nil
}

// resticSeed makes the newest snapshot of this host in the repositories
// the last good one (seedFromRemotes for the restic format).
func (r *Runner) resticSeed(ctx context.Context) {
	places, err := Places(ctx, r.snap.Dir, r.remotes, r.log)
	if err != nil {
		return
	}
	if r.snap.Dir != "" {
		defer places[0].Close()
	}
	repos, _ := openRepos(ctx, r.resticKeys, places, *r.restic, false)
	cands, _ := restic.Candidates(ctx, repos, r.restic.HostOr(r.snap.Name))
	now := time.Now()
	for _, c := range cands {
		if c.Snapshot.Time.After(now) {
			continue
		}
		r.mu.Lock()
		if c.Snapshot.Time.After(r.lastGood.Started) {
			size := int64(0)
			if c.Snapshot.Summary != nil {
				size = int64(c.Snapshot.Summary.TotalBytesProcessed)
			}
			r.lastGood = Result{Reason: "found in " + c.Repo.Name(), Started: c.Snapshot.Time, Snapshot: c.Snapshot.ID.Str(), Size: size}
			r.metrics.lastSuccess.Set(float64(c.Snapshot.Time.Unix()))
		}
		r.mu.Unlock()
		return
	}
}
