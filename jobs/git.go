package jobs

// The git format's run (SNAPVISOR_FORMAT=git): the same pipeline (hooks,
// freeze, schedule, socket) around a different create and retention. Each
// snapshot commits the sources to the bare repository in SNAPVISOR_DIR and
// pushes the branch to every remote of SNAPVISOR_GIT_REMOTES; the gitsnap
// package does the format.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"go.uber.org/zap"

	"snapvisor/gitsnap"
	"snapvisor/snapshot"
)

// SetGit switches the runner to the git format with the repositories of set.
func (r *Runner) SetGit(set gitsnap.Set) { r.alt = gitFormat{r: r, set: set} }

// gitFormat is the git format's side of a run.
type gitFormat struct {
	r   *Runner
	set gitsnap.Set
}

// GitHost is the host a git-format commit names: the machine's host name,
// else SNAPVISOR_NAME.
func GitHost(name string) string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return name
}

// create commits the sources (unless nothing changed), inside the freeze.
func (f gitFormat) create(ctx context.Context, log *zap.Logger) (made, error) {
	r, s := f.r, f.set.Settings
	repo, err := f.set.Open(true)
	if err != nil {
		return made{}, err
	}
	defer repo.Close()
	if from, _, unreadable := f.set.Adopt(ctx, repo, log); from == "" && len(unreadable) > 0 {
		log.Warn("the local git repository has no branch yet and a remote could not be read: this history starts afresh, and that remote will refuse it as diverged if it holds one",
			zap.Errors("unreadable", unreadable))
	}
	sources := make([]string, len(r.snap.Sources))
	for i, src := range r.snap.Sources {
		if sources[i], err = filepath.Abs(src); err != nil {
			return made{}, err
		}
	}
	at := time.Now().Round(0)
	res, err := repo.Commit(ctx, gitsnap.Options{Sources: sources, Excluded: r.snap.Excluded, MaxFileSize: s.MaxFileSize.Bytes(), Strict: s.Strict,
		Author: s.Author, Trigger: r.reason, Host: GitHost(r.snap.Name), Now: at}, log)
	if err != nil {
		return made{}, err
	}
	short := res.Hash.String()[:7]
	note := ""
	if res.Unchanged {
		note = "unchanged: the sources equal commit " + short + "; no commit made"
		log.Info("git snapshot unchanged: no commit made", zap.String("commit", short), zap.Int64("files", res.Files))
	} else {
		log.Info("git snapshot committed", zap.String("commit", short), zap.String("branch", repo.Branch()), zap.Int("files_changed", res.Changed),
			zap.Int64("files", res.Files), zap.Int64("bytes", res.Bytes), zap.Int("left_out", len(res.Skipped)))
	}
	return made{Info: snapshot.Info{Name: short, Time: at, Size: res.Bytes, Files: res.Files}, note: note}, nil
}

// pushAll pushes to every remote and reports each outcome.
func (f gitFormat) pushAll(ctx context.Context, repo *gitsnap.Repo, log *zap.Logger) []PushResult {
	errs := f.set.PushAll(ctx, repo, log)
	results := make([]PushResult, len(errs))
	for i, err := range errs {
		results[i].Remote = f.set.Remotes[i].Name()
		if err != nil {
			results[i].Error = err.Error()
			f.r.metrics.pushFailures.Inc()
			msg := "git push failed; the next snapshot pushes again"
			if errors.Is(err, gitsnap.ErrDiverged) {
				msg = "git push refused: the remote's branch has commits this repository does not have (a second writer?); nothing was overwritten"
			}
			log.Error(msg, zap.String("remote", results[i].Remote), zap.Error(err))
		}
	}
	return results
}

// after pushes the branch to every remote once the service is thawed
// (also when nothing changed: a remote that was down catches up); a
// remote's failure is its result's, never the snapshot's. The history is
// the retention (SNAPVISOR_KEEP and friends delete no commits); with
// SNAPVISOR_GIT_SQUASH_AFTER the older history is squashed (in batches of
// a third of it) and the rewritten branch force-pushed over remote
// branches that hold nothing but the old history (Repo.Push).
func (f gitFormat) after(ctx context.Context, m made, log *zap.Logger) ([]PushResult, []string) {
	repo, err := f.set.Open(false)
	if err != nil {
		log.Error("git repository unavailable after the snapshot: nothing pushed", zap.Error(err))
		results := make([]PushResult, len(f.set.Remotes))
		for i, rem := range f.set.Remotes {
			results[i] = PushResult{Remote: rem.Name(), Error: err.Error()}
		}
		return results, nil
	}
	defer repo.Close()
	if after := f.set.Settings.SquashAfter.Duration(); after > 0 {
		if _, err := repo.Squash(time.Now().Add(-after), after/3, log); err != nil {
			log.Warn("git squash failed; the next run tries again", zap.Error(err))
		}
	}
	return f.pushAll(ctx, repo, log), nil
}

// seed makes the branch's head commit the last good snapshot.
func (f gitFormat) seed(ctx context.Context) {
	r := f.r
	repo, err := f.set.Open(false)
	if err != nil {
		return
	}
	defer repo.Close()
	log, err := repo.Log()
	if err != nil || len(log) == 0 {
		return
	}
	c := log[0]
	if c.Time.After(time.Now()) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.Time.After(r.lastGood.Started) {
		r.lastGood = Result{Reason: "found in " + repo.Path(), Started: c.Time, Snapshot: c.Short}
		r.metrics.lastSuccess.Set(float64(c.Time.Unix()))
	}
}

// GitRestoreIfEmpty is RestoreIfEmpty for the git format: when the first
// source is missing or empty, the branch's head (the local repository's,
// else the first remote's that has the branch, which becomes the local
// branch) is checked out into staging and swapped in as archives are. A
// commit whose objects are damaged or missing makes it try its parent
// (gitsnap.Repo.RestoreNewest). A
// remote that cannot be read while no repository has the branch refuses
// the start (ErrRemoteUnavailable) rather than start on empty data.
func GitRestoreIfEmpty(ctx context.Context, cfg snapshot.Config, set gitsnap.Set, log *zap.Logger) (string, error) {
	if err := snapshot.Recover(cfg, log); err != nil {
		return "", fmt.Errorf("%w: %w", ErrRestoreFailed, err)
	}
	opts, empty, err := emptySources(cfg, log)
	if !empty || err != nil {
		return "", err
	}
	repo, err := set.Open(true)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrRestoreFailed, err)
	}
	defer repo.Close()
	from, head, unreadable := set.Adopt(ctx, repo, log)
	if head.IsZero() {
		if len(unreadable) > 0 {
			return "", fmt.Errorf("%w: %w: not starting the service on empty data while a git remote that may hold its snapshots cannot be read "+
				"(fix it or its credentials; to start with empty data on purpose, set SNAPVISOR_RESTORE=never once): %w",
				ErrRestoreFailed, ErrRemoteUnavailable, errors.Join(unreadable...))
		}
		log.Info("auto-restore: data directory is empty and no git repository has the branch: starting with empty data",
			zap.String("source", cfg.Sources[0]), zap.String("branch", repo.Branch()), zap.Int("remotes", len(set.Remotes)))
		return "", nil
	}
	if from == "" {
		from = repo.Path()
	}
	log.Info("auto-restore: restoring before the service starts", zap.String("repository", from), zap.String("commit", head.String()), zap.String("source", cfg.Sources[0]))
	h, err := repo.RestoreNewest(ctx, head, cfg, opts, log)
	if errors.Is(err, gitsnap.ErrDamaged) && len(set.Remotes) > 0 {
		log.Warn("auto-restore: the local git repository is damaged; trying the remotes", zap.Error(err))
		repo.Close()
		var rerr error
		if h, from, rerr = set.Recover(ctx, cfg, opts, log); rerr == nil {
			err = nil
		} else {
			err = errors.Join(err, rerr)
		}
	}
	if err != nil {
		return "", fmt.Errorf("%w: restoring git commit %s from %s (the service was not started): %w", ErrRestoreFailed, short(h), from, err)
	}
	log.Info("auto-restore: done", zap.String("commit", h.String()), zap.String("repository", from))
	return h.String()[:7], nil
}

func short(h plumbing.Hash) string {
	if h.IsZero() {
		return "(none)"
	}
	return h.String()[:7]
}
