//go:build !initonly

package main

// The git format's side of list, restore and verify (SNAPVISOR_FORMAT=git):
// the local bare repository in SNAPVISOR_DIR, or, with --remote/--from, a
// remote's branch fetched into it first.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"go.uber.org/zap"

	"snapvisor/gitsnap"
	"snapvisor/snapshot"
	"snapvisor/store"
)

// gitHead opens the local repository and finds the head to work on: the
// local branch's, or with rawURL that remote's branch, fetched first (the
// local repository is created for it when missing).
func gitHead(ctx context.Context, a *app, rawURL string) (*gitsnap.Repo, plumbing.Hash, string, error) {
	set := a.cfg.gitSet()
	if rawURL == "" {
		repo, err := set.Open(false)
		if errors.Is(err, gitsnap.ErrNoRepository) {
			return nil, plumbing.ZeroHash, "", fmt.Errorf("no git repository in SNAPVISOR_DIR (%s) yet: take a snapshot first, or name a remote with --from/--remote URL", gitsnap.RepoPath(set.Dir, set.Name))
		}
		if err != nil {
			return nil, plumbing.ZeroHash, "", err
		}
		h, err := repo.Head()
		if err != nil {
			repo.Close()
			return nil, plumbing.ZeroHash, "", err
		}
		return repo, h, repo.Path(), nil
	}
	rem, err := set.Find(rawURL)
	if err != nil {
		return nil, plumbing.ZeroHash, "", &usageError{fmt.Sprintf("--from/--remote %s: %v", store.Redact(rawURL), err)}
	}
	repo, err := set.Open(true)
	if err != nil {
		return nil, plumbing.ZeroHash, "", err
	}
	fctx, cancel := context.WithTimeout(ctx, max(a.cfg.Store.Timeout, time.Minute))
	defer cancel()
	h, err := repo.Fetch(fctx, rem, set.Settings)
	if err != nil {
		repo.Close()
		return nil, plumbing.ZeroHash, "", err
	}
	return repo, h, rem.Name(), nil
}

func listGit(ctx context.Context, a *app, rawURL string, asJSON bool) error {
	repo, head, _, err := gitHead(ctx, a, rawURL)
	if err != nil {
		return err
	}
	defer repo.Close()
	log, err := repo.LogFrom(head)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(a.stdout, log)
	}
	tw := newTabWriter(a.stdout)
	fmt.Fprintln(tw, "COMMIT\tTIME\tFILES CHANGED\tTAGS\tSUBJECT")
	for _, c := range log {
		n := fmt.Sprint(c.Changed)
		if c.Changed < 0 {
			n = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Short, c.Time.UTC().Format(time.RFC3339), n, strings.Join(c.Tags, ","), c.Subject)
	}
	return tw.Flush()
}

func restoreGit(ctx context.Context, a *app, rawURL string, pos []string, opts snapshot.RestoreOptions) error {
	repo, head, from, err := gitHead(ctx, a, rawURL)
	if err != nil {
		return err
	}
	defer repo.Close()
	if len(pos) == 1 && pos[0] != "latest" {
		h, err := repo.Resolve(pos[0])
		if err != nil {
			return err
		}
		_, err = repo.Restore(ctx, h, a.snap, opts, a.log)
		return err
	}
	h, err := repo.RestoreNewest(ctx, head, a.snap, opts, a.log)
	if err != nil {
		return fmt.Errorf("restore latest from %s: %w", from, err)
	}
	if rawURL != "" {
		// A new volume continues the history it was restored from.
		if _, lerr := repo.Head(); errors.Is(lerr, gitsnap.ErrNoBranch) {
			if _, _, unreadable := a.cfg.gitSet().Adopt(ctx, repo, a.log); len(unreadable) > 0 {
				a.log.Warn("restored; the local branch was not set from the remotes", zap.Errors("unreadable", unreadable))
			}
		}
	}
	a.log.Info("restored git commit", zap.String("commit", h.String()), zap.String("from", from))
	return nil
}

func verifyGit(ctx context.Context, a *app, rawURL string) error {
	repo, head, from, err := gitHead(ctx, a, rawURL)
	if err != nil {
		return err
	}
	defer repo.Close()
	rep, err := repo.Verify(ctx, head)
	if err != nil {
		fmt.Fprintf(a.stdout, "FAILED %s: %v\n", from, err)
		return &exitError{code: exitFailure}
	}
	fmt.Fprintf(a.stdout, "OK     %s: branch %s at %s: %d commits, %d trees, %d blobs (%d bytes) read and hashed\n",
		from, repo.Branch(), head.String()[:7], rep.Commits, rep.Trees, rep.Blobs, rep.Bytes)
	return nil
}
