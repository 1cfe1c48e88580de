package gitsnap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"go.uber.org/zap"

	"snapvisor/internal/fsx"
	"snapvisor/snapshot"
)

// Set is one configuration's repositories: the local bare repository in
// SNAPVISOR_DIR and the remotes of SNAPVISOR_GIT_REMOTES.
type Set struct {
	Dir, Name string // SNAPVISOR_DIR, SNAPVISOR_NAME
	Settings  Settings
	Remotes   []Remote
	// Timeout bounds each remote's part of a run (SNAPVISOR_REMOTE_TIMEOUT).
	Timeout time.Duration
}

// NewSet parses the remotes of s (validated).
func NewSet(dir, name string, s Settings, timeout time.Duration) (Set, error) {
	set := Set{Dir: dir, Name: name, Settings: s, Timeout: timeout}
	for _, raw := range s.Remotes {
		rem, err := ParseRemote(raw)
		if err != nil {
			return set, err
		}
		set.Remotes = append(set.Remotes, rem)
	}
	return set, nil
}

// Open opens (create: makes) the local repository.
func (s Set) Open(create bool) (*Repo, error) {
	return Open(RepoPath(s.Dir, s.Name), s.Settings.BranchOr(s.Name), create)
}

// Find returns the remote configured as raw, or one parsed from it (restore --from).
func (s Set) Find(raw string) (Remote, error) {
	for _, r := range s.Remotes {
		if r.Raw == raw {
			return r, nil
		}
	}
	return ParseRemote(raw)
}

func (s Set) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.Timeout > 0 {
		return context.WithTimeout(ctx, s.Timeout)
	}
	return context.WithCancel(ctx)
}

// Adopt fetches the branch from the first remote (in order) that has it
// and makes it the local branch, when the local repository has none: a
// new volume continues the remotes' history instead of starting one that
// every push would refuse as diverged. It returns the remote it came from
// ("" when none had it) and the remotes that could not be read.
func (s Set) Adopt(ctx context.Context, r *Repo, log *zap.Logger) (from string, head plumbing.Hash, unreadable []error) {
	if h, err := r.Head(); err == nil {
		return "", h, nil
	}
	for _, rem := range s.Remotes {
		rctx, cancel := s.bound(ctx)
		h, err := r.Fetch(rctx, rem, s.Settings)
		cancel()
		if errors.Is(err, ErrNoBranch) {
			continue
		}
		if err != nil {
			log.Warn("git remote cannot be read", zap.String("remote", rem.Name()), zap.Error(err))
			unreadable = append(unreadable, fmt.Errorf("%s: %w", rem.Name(), err))
			continue
		}
		if err = r.setHead(h, plumbing.ZeroHash); err == nil {
			err = r.syncHead()
		}
		if err != nil {
			return "", plumbing.ZeroHash, append(unreadable, err)
		}
		log.Info("git history taken from a remote: the local repository had no branch", zap.String("remote", rem.Name()), zap.String("branch", r.Branch()), zap.String("head", h.String()))
		return rem.Name(), h, unreadable
	}
	return "", plumbing.ZeroHash, unreadable
}

// PushAll pushes the branch to every remote at once (Repo.Push), each
// bounded by Timeout; errs[i] is remote i's outcome. Once every remote
// holds a squash's rewritten branch, the squash is done (Repo.SquashDone).
func (s Set) PushAll(ctx context.Context, r *Repo, log *zap.Logger) []error {
	errs := make([]error, len(s.Remotes))
	var wg sync.WaitGroup
	for i, rem := range s.Remotes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := s.bound(ctx)
			defer cancel()
			// Each push reads through its own handle: go-git's storage is
			// not documented safe for concurrent use.
			own, err := Open(r.path, r.Branch(), false)
			if err != nil {
				errs[i] = err
				return
			}
			defer own.Close()
			errs[i] = own.Push(rctx, rem, s.Settings)
			if errs[i] != nil && rctx.Err() != nil && ctx.Err() == nil {
				errs[i] = fmt.Errorf("abandoned at SNAPVISOR_REMOTE_TIMEOUT (%v): %w", s.Timeout, errs[i])
			}
		}()
	}
	wg.Wait()
	if r.squashing() && !slices.ContainsFunc(errs, func(e error) bool { return e != nil }) {
		if err := r.SquashDone(); err != nil {
			// Kept for the next run: nothing is lost, the old objects stay longer.
			log.Warn("git squash: the pre-squash history could not be released; the next run tries again", zap.Error(err))
		} else {
			log.Info("git squash pushed to every remote: the pre-squash history is released")
		}
	}
	return errs
}

// Recover restores the newest good commit of the branch from the remotes
// into cfg's sources when the local repository is damaged: each remote's
// branch is fetched into a fresh repository beside the local one, and the
// first that restores replaces the local repository, which is kept as
// <name>.git.damaged-<UTC time> (never deleted). It returns the commit
// restored and the remote it came from.
func (s Set) Recover(ctx context.Context, cfg snapshot.Config, opts snapshot.RestoreOptions, log *zap.Logger) (plumbing.Hash, string, error) {
	var errs []error
	local := RepoPath(s.Dir, s.Name)
	for _, rem := range s.Remotes {
		tmp, err := os.MkdirTemp(s.Dir, "."+s.Name+".git.fetch-*")
		if err != nil {
			return plumbing.ZeroHash, "", err
		}
		h, err := s.recoverFrom(ctx, rem, tmp, cfg, opts, log)
		if err != nil {
			os.RemoveAll(tmp)
			if !errors.Is(err, ErrNoBranch) {
				errs = append(errs, fmt.Errorf("%s: %w", rem.Name(), err))
			}
			continue
		}
		kept := fmt.Sprintf("%s.damaged-%s", local, time.Now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(local, kept); err != nil && !errors.Is(err, os.ErrNotExist) {
			return h, rem.Name(), fmt.Errorf("restored from %s; keeping the damaged repository aside failed (the fetched one is %s): %w", rem.Name(), tmp, err)
		}
		if err := os.Rename(tmp, local); err != nil {
			return h, rem.Name(), fmt.Errorf("restored from %s; moving its repository into place failed (it is %s, the damaged one %s): %w", rem.Name(), tmp, kept, err)
		}
		log.Warn("the local git repository was damaged: the restore came from a remote, whose history replaces it; the damaged one is kept",
			zap.String("remote", rem.Name()), zap.String("kept", kept))
		_ = fsx.SyncDir(s.Dir)
		return h, rem.Name(), nil
	}
	if len(errs) == 0 {
		return plumbing.ZeroHash, "", fmt.Errorf("no remote has the branch %s: %w", s.Settings.BranchOr(s.Name), ErrNoBranch)
	}
	return plumbing.ZeroHash, "", errors.Join(errs...)
}

func (s Set) recoverFrom(ctx context.Context, rem Remote, dir string, cfg snapshot.Config, opts snapshot.RestoreOptions, log *zap.Logger) (plumbing.Hash, error) {
	r, h, err := s.FetchInto(ctx, rem, dir)
	if err != nil {
		return h, err
	}
	defer r.Close()
	return r.RestoreNewest(ctx, h, cfg, opts, log)
}

// FetchInto fetches rem's branch into a new repository at dir (bounded by
// the set's timeout) and makes it that repository's branch: a copy of the
// remote's history, apart from the local repository (auto-restore's
// recovery, restore drills). The caller closes the repository.
func (s Set) FetchInto(ctx context.Context, rem Remote, dir string) (*Repo, plumbing.Hash, error) {
	r, err := Open(dir, s.Settings.BranchOr(s.Name), true)
	if err != nil {
		return nil, plumbing.ZeroHash, err
	}
	fctx, cancel := s.bound(ctx)
	h, err := r.Fetch(fctx, rem, s.Settings)
	cancel()
	if err == nil {
		err = r.setHead(h, plumbing.ZeroHash)
	}
	if err == nil {
		err = r.syncHead()
	}
	if err != nil {
		r.Close()
		return nil, h, err
	}
	return r, h, nil
}
