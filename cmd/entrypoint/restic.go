//go:build !initonly

package main

// The restic format's side of list, restore and verify
// (SNAPVISOR_FORMAT=restic): the repositories in SNAPVISOR_DIR and on the
// remotes, or on the one remote that --remote/--from names.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"snapvisor/config"
	"snapvisor/jobs"
	"snapvisor/remote"
	"snapvisor/restic"
	"snapvisor/snapshot"
	"snapvisor/store"
)

// resticRepos opens the repositories a subcommand works on: the one at
// rawURL, else SNAPVISOR_DIR's and every remote's. A place without a
// repository is skipped; a wrong RESTIC_PASSWORD is a configuration error.
func resticRepos(ctx context.Context, a *app, rawURL string) (repos []*restic.Repo, closeAll func(), err error) {
	var remotes []remote.Remote
	dir := a.snap.Dir
	if rawURL != "" {
		r, err := openRemote(ctx, a, rawURL)
		if err != nil {
			return nil, nil, err
		}
		remotes, dir = []remote.Remote{r}, ""
	} else if len(a.cfg.Store.Remotes) > 0 {
		remotes, err = remote.OpenAll(ctx, a.cfg.Store, nil, a.log)
		if err != nil {
			a.log.Warn("some remotes could not be opened", zap.Error(err))
		}
	}
	places, err := jobs.Places(ctx, dir, remotes, a.log)
	if err != nil {
		_ = remote.CloseAll(remotes)
		return nil, nil, err
	}
	closeAll = func() { _ = remote.CloseAll(places) }
	all, errs := restic.OpenAll(ctx, storesOf(places), restic.Password(a.cfg.Restic.Password.Reveal()), false, a.cfg.Store.Timeout)
	var bad []error
	for i, r := range all {
		switch {
		case errs[i] == nil:
			repos = append(repos, r)
		case errors.Is(errs[i], restic.ErrWrongPassword):
			closeAll()
			return nil, nil, &config.Error{Var: "RESTIC_PASSWORD", Secret: true, Err: errs[i], Accepted: "the password of the repository (or RESTIC_PASSWORD_FILE naming a file holding it)"}
		case errors.Is(errs[i], restic.ErrNoRepository):
			a.log.Info("no restic repository there yet", zap.String("repository", places[i].Name()))
		default:
			bad = append(bad, errs[i])
		}
	}
	if len(repos) == 0 {
		closeAll()
		if len(bad) > 0 {
			return nil, nil, errors.Join(bad...)
		}
		return nil, nil, fmt.Errorf("no restic repository in %s", placeNames(places))
	}
	for _, err := range bad {
		a.log.Warn("a restic repository cannot be read; using the others", zap.Error(err))
	}
	return repos, closeAll, nil
}

func storesOf(places []remote.Remote) []store.Store {
	out := make([]store.Store, len(places))
	for i, p := range places {
		out[i] = p.Store
	}
	return out
}

func placeNames(places []remote.Remote) string {
	names := make([]string, len(places))
	for i, p := range places {
		names[i] = p.Name()
	}
	return strings.Join(names, ", ")
}

// resticRow is one snapshot as `list --json` prints it.
type resticRow struct {
	ID         string    `json:"id"`
	ShortID    string    `json:"short_id"`
	Time       time.Time `json:"time"`
	Host       string    `json:"host"`
	Paths      []string  `json:"paths"`
	Tags       []string  `json:"tags,omitempty"`
	Size       uint64    `json:"size"`
	Added      uint64    `json:"added"`
	Repository string    `json:"repository"`
}

func listRestic(ctx context.Context, a *app, rawURL string, asJSON bool) error {
	repos, closeAll, err := resticRepos(ctx, a, rawURL)
	if err != nil {
		return err
	}
	defer closeAll()
	rows := []resticRow{}
	for _, r := range repos {
		snaps, err := r.Snapshots(ctx)
		if err != nil {
			return err
		}
		for i := len(snaps) - 1; i >= 0; i-- {
			s := snaps[i]
			row := resticRow{ID: s.ID.String(), ShortID: s.ID.Str(), Time: s.Time, Host: s.Hostname, Paths: s.Paths, Tags: s.Tags, Repository: r.Name()}
			if sm := s.Summary; sm != nil {
				row.Size, row.Added = sm.TotalBytesProcessed, sm.DataAddedPacked
			}
			rows = append(rows, row)
		}
	}
	if asJSON {
		return printJSON(a.stdout, rows)
	}
	tw := newTabWriter(a.stdout)
	fmt.Fprintln(tw, "ID\tTIME\tHOST\tPATHS\tSIZE\tADDED\tREPOSITORY")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", r.ShortID, r.Time.Format(time.RFC3339), r.Host, strings.Join(r.Paths, ","), r.Size, r.Added, r.Repository)
	}
	return tw.Flush()
}

func restoreRestic(ctx context.Context, a *app, rawURL string, pos []string, opts snapshot.RestoreOptions) error {
	repos, closeAll, err := resticRepos(ctx, a, rawURL)
	if err != nil {
		return err
	}
	defer closeAll()
	ref := "latest"
	if len(pos) == 1 {
		ref = pos[0]
	}
	host := a.cfg.Restic.HostOr(a.snap.Name)
	var cands []restic.Candidate
	if ref == "latest" {
		cands, _ = restic.Candidates(ctx, repos, host)
		if len(cands) == 0 {
			return fmt.Errorf("restore latest: no restic snapshot of host %q (SNAPVISOR_HOST) in %s", host, repoNames(repos))
		}
	} else {
		for _, r := range repos {
			snaps, err := r.Snapshots(ctx)
			if err != nil {
				return err
			}
			if s, err := restic.FindSnapshot(snaps, ref, ""); err == nil {
				cands = append(cands, restic.Candidate{Repo: r, Snapshot: s})
			}
		}
		if len(cands) == 0 {
			return fmt.Errorf("restore: no restic snapshot %q in %s", ref, repoNames(repos))
		}
	}
	for i, c := range cands {
		_, err := restic.RestoreSnapshot(ctx, c.Repo, c.Snapshot, a.snap, a.cfg.Restic.LockWait, opts, a.log)
		if err == nil {
			fmt.Fprintln(a.stdout, c.Snapshot.ID.Str())
			return nil
		}
		if !restic.Unusable(err) || i == len(cands)-1 {
			return err
		}
		a.log.Warn("restore: snapshot damaged or incomplete; trying the next", zap.String("repository", c.Repo.Name()), zap.Error(err))
	}
	return nil
}

func repoNames(repos []*restic.Repo) string {
	names := make([]string, len(repos))
	for i, r := range repos {
		names[i] = r.Name()
	}
	return strings.Join(names, ", ")
}

func verifyRestic(ctx context.Context, a *app, rawURL string, readData bool) error {
	repos, closeAll, err := resticRepos(ctx, a, rawURL)
	if err != nil {
		return err
	}
	defer closeAll()
	failed := 0
	for _, r := range repos {
		var read atomic.Int64
		rep, err := r.Check(ctx, restic.CheckOptions{ReadData: readData, Progress: &read})
		if err != nil {
			failed++
			fmt.Fprintf(a.stdout, "FAILED %s: %v\n", r.Name(), err)
			continue
		}
		for _, e := range rep.Errors {
			fmt.Fprintf(a.stdout, "ERROR  %v\n", e)
		}
		for _, d := range rep.Damaged {
			fmt.Fprintf(a.stdout, "DAMAGED snapshot %s (%s, %s): %v\n", d.Snapshot.ID.Str(), d.Snapshot.Time.Format(time.RFC3339), d.Snapshot.Hostname, d.Reason)
		}
		what := "structure"
		if readData {
			what = fmt.Sprintf("structure and %d bytes of data", rep.Read)
		}
		if !rep.OK() {
			failed++
			fmt.Fprintf(a.stdout, "FAILED %s: %d snapshot(s) damaged, %d error(s) (%s checked)\n", r.Name(), len(rep.Damaged), len(rep.Errors), what)
			continue
		}
		fmt.Fprintf(a.stdout, "OK     %s: %d snapshots, %d packs, %d blobs (%s checked; %d unreferenced packs)\n", r.Name(), rep.Snapshots, rep.Packs, rep.Blobs, what, len(rep.Orphans))
	}
	if failed > 0 {
		return &exitError{code: exitFailure}
	}
	return nil
}
