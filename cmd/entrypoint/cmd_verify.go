//go:build !initonly

package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"snapvisor/snapshot"
)

func cmdVerify(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "verify", "verify [NAME|--all] [--read-data] [--remote URL]",
		"Checks a snapshot's checksum and that its archive reads to the end.\n"+
			"Without NAME, checks the newest snapshot; --all checks every one.\n"+
			"With SNAPVISOR_FORMAT=restic: checks each repository's structure and index against\n"+
			"its packs (--read-data: every blob read and authenticated) and names the damaged snapshots.\n"+
			"With SNAPVISOR_FORMAT=git: reads every object of the branch's whole history (SNAPVISOR_DIR's\n"+
			"repository, or the --remote one fetched first) and checks each against its hash.")
	all := fs.Bool("all", false, "verify every snapshot")
	readData := fs.Bool("read-data", false, "restic format: read every pack and authenticate every blob")
	remoteURL := fs.String("remote", "", "restic and git formats: check only the repository at this remote `URL`")
	noProgress := progressFlag(fs)
	pos, done, err := parseArgs(fs, args, 1)
	if done || err != nil {
		return err
	}
	if a.cfg.restic() {
		if len(pos) > 0 {
			return &usageError{"verify: the restic format checks whole repositories: no NAME"}
		}
		return verifyRestic(ctx, a, *remoteURL, *readData)
	}
	if a.cfg.git() {
		if len(pos) > 0 {
			return &usageError{"verify: the git format checks the branch's whole history: no NAME"}
		}
		return verifyGit(ctx, a, *remoteURL)
	}
	if *all && len(pos) > 0 {
		return &usageError{"verify: give NAME or --all, not both"}
	}
	var paths []string
	switch {
	case len(pos) == 1:
		paths = []string{snapshotPath(a, pos[0])}
	default:
		// Every archive by its name, not List: one whose .sha256 is missing or
		// damaged must be reported as FAILED, not skipped.
		archives, err := snapshot.Archives(a.snap.Dir, a.snap.Name)
		if err != nil {
			return err
		}
		if len(archives) == 0 {
			return fmt.Errorf("verify: no snapshot named %s-* in %s", a.snap.Name, a.snap.Dir)
		}
		if !*all {
			archives = archives[:1]
		}
		paths = archives
	}
	failed := 0
	var last error
	for _, p := range paths {
		pctx, _, stopProgress := a.withProgress(ctx, *noProgress)
		err := snapshot.VerifyWith(pctx, p, a.snap.Encryption)
		stopProgress()
		if err != nil {
			failed++
			last = err
			fmt.Fprintf(a.stdout, "FAILED %s: %v\n", filepath.Base(p), err)
			continue
		}
		fmt.Fprintf(a.stdout, "OK     %s\n", filepath.Base(p))
	}
	switch {
	case failed == 0:
		return nil
	case len(paths) == 1:
		// The FAILED line is the report: exit with the error's code without printing it again.
		return &exitError{code: report(io.Discard, nil, last)}
	}
	return fmt.Errorf("verify: %d of %d snapshots failed", failed, len(paths))
}
