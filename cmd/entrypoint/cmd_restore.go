//go:build !initonly

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"snapvisor/jobs"
	"snapvisor/remote"
	"snapvisor/snapshot"
)

func cmdRestore(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "restore", "restore [--discard-current] [--from URL] [--target DIR] [--no-progress] [NAME|latest]",
		"Restores a snapshot into the source paths (SNAPVISOR_SOURCE). NAME is a file in\n"+
			"SNAPVISOR_DIR or a path; latest (the default) is the newest snapshot that verifies.\n"+
			"With --from URL, NAME (a key as `list --remote URL` shows it) or the newest that\n"+
			"verifies is downloaded from that remote into a temporary directory beside the first\n"+
			"source, checked, restored and deleted. The checksum is verified and the archive\n"+
			"extracted beside each source before the current contents are swapped out to\n"+
			"<source>.pre-restore-<UTC time>.\n"+
			"With SNAPVISOR_FORMAT=restic, NAME is a snapshot ID (or unique prefix) and latest the\n"+
			"newest snapshot of SNAPVISOR_HOST in SNAPVISOR_DIR's or any remote's repository (or\n"+
			"the --from one); every blob is authenticated before the swap.\n"+
			"With SNAPVISOR_FORMAT=git, NAME is a commit hash (or unique prefix of 4+ digits) or a\n"+
			"tag, latest the branch's head in SNAPVISOR_DIR's repository (or fetched from the --from\n"+
			"git remote); every object is checked against its hash before the swap.\n"+
			"With --target DIR the snapshot is extracted into DIR instead (DIR/<base name of each\n"+
			"source>), verified the same way; DIR is created and must be empty or absent; the data\n"+
			"directory is not touched: to inspect a snapshot, copy one file back, seed another volume.\n"+
			"At a terminal a live progress line shows the phase, bytes, rate and time left.")
	discard := fs.Bool("discard-current", false, "delete the current contents after the swap instead of keeping them as <source>.pre-restore-<time>")
	from := fs.String("from", "", "restore from this remote `URL` (same forms and credentials as SNAPVISOR_REMOTES)")
	target := fs.String("target", "", "extract into this `DIR` (created; must be empty or absent) instead of the sources, which are not touched")
	noProgress := progressFlag(fs)
	pos, done, err := parseArgs(fs, args, 1)
	if done || err != nil {
		return err
	}
	opts := snapshot.RestoreOptions{DiscardCurrent: *discard, Now: time.Now}
	cleanup := func() {}
	if *target != "" {
		if cleanup, err = retarget(a, *target); err != nil {
			return err
		}
	}
	pctx, _, stopProgress := a.withProgress(ctx, *noProgress)
	// The result is printed once the progress line has ended.
	var out bytes.Buffer
	ra := *a
	ra.stdout = &out
	err = restoreOne(pctx, &ra, *from, pos, opts)
	stopProgress()
	_, _ = a.stdout.Write(out.Bytes())
	if err != nil {
		cleanup() // --target: nothing half-restored is left there
	}
	return err
}

// retarget points a's sources into dir for `restore --target DIR`: dir is
// created (0700) and must be empty or absent, and apart from every source.
// cleanup removes what the failed restore left in it (dir too when retarget
// created it).
func retarget(a *app, dir string) (cleanup func(), err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, &usageError{fmt.Sprintf("restore --target %s: %v", dir, err)}
	}
	if s := a.snap.Overlaps(abs); s != "" {
		return nil, &usageError{fmt.Sprintf("restore --target %s: it overlaps the source %s; give a directory apart from the data (restore without --target restores the data itself)", dir, s)}
	}
	created := false
	switch ents, err := os.ReadDir(abs); {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, fmt.Errorf("restore --target: %w", err)
		}
		created = true
	case err != nil:
		return nil, &usageError{fmt.Sprintf("restore --target %s: %v (it must be an empty directory, or absent)", dir, err)}
	case len(ents) > 0:
		return nil, &usageError{fmt.Sprintf("restore --target %s: the directory is not empty (%d entries, such as %s); give an empty or new directory", dir, len(ents), ents[0].Name())}
	}
	a.snap = a.snap.Retarget(abs)
	return func() {
		if created {
			_ = os.RemoveAll(abs)
			return
		}
		ents, _ := os.ReadDir(abs)
		for _, e := range ents {
			_ = os.RemoveAll(filepath.Join(abs, e.Name()))
		}
	}, nil
}

// restoreOne restores as the command line says, into a.snap's sources.
func restoreOne(ctx context.Context, a *app, from string, pos []string, opts snapshot.RestoreOptions) error {
	if a.cfg.restic() {
		return restoreRestic(ctx, a, from, pos, opts)
	}
	if a.cfg.git() {
		return restoreGit(ctx, a, from, pos, opts)
	}
	if from != "" {
		return restoreFrom(ctx, a, from, pos, opts)
	}
	if a.snap.Dir == "" && (len(pos) == 0 || !strings.ContainsRune(pos[0], os.PathSeparator)) {
		return &usageError{"restore: SNAPVISOR_DIR is empty (streaming mode), so there are no local snapshots: use restore --from URL, or give a path"}
	}
	if len(pos) == 1 && pos[0] != "latest" {
		return snapshot.Restore(ctx, a.snap, snapshotPath(a, pos[0]), opts, a.log)
	}
	list, err := snapshot.List(a.snap.Dir, a.snap.Name)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		return fmt.Errorf("restore latest: no snapshot named %s-* in %s", a.snap.Name, a.snap.Dir)
	}
	// Newest first: a snapshot that fails its checksum or does not read to the end is skipped
	// (Restore leaves the targets untouched when it fails).
	for _, s := range list {
		err := snapshot.Restore(ctx, a.snap, s.Path, opts, a.log)
		if err == nil {
			fmt.Fprintln(a.stdout, s.Path)
			return nil
		}
		if !errors.Is(err, snapshot.ErrChecksum) && !errors.Is(err, snapshot.ErrCorrupt) {
			return err
		}
		a.log.Warn("restore latest: skipping a snapshot that does not verify", zap.String("snapshot", s.Path), zap.Error(err))
	}
	return fmt.Errorf("restore latest: none of the %d snapshots in %s verifies", len(list), a.snap.Dir)
}

// restoreFrom restores NAME, or the newest snapshot that verifies, from one remote.
func restoreFrom(ctx context.Context, a *app, rawURL string, pos []string, opts snapshot.RestoreOptions) error {
	key := ""
	if len(pos) == 1 && pos[0] != "latest" {
		key = pos[0]
		if strings.ContainsRune(key, '/') {
			return &usageError{fmt.Sprintf("restore --from: NAME is a key as `entrypoint list --remote URL` shows it, not a path: %q", key)}
		}
	}
	s, err := openRemote(ctx, a, rawURL)
	if err != nil {
		return err
	}
	defer s.Close()
	rs, err := jobs.RestoreFromRemotes(ctx, a.snap, []remote.Remote{s}, key, "", opts, a.log)
	if err != nil {
		return fmt.Errorf("restore --from %s: %w", s.Name(), err)
	}
	if rs.Key == "" {
		return fmt.Errorf("restore --from %s: no snapshot named %s-* there", s.Name(), a.snap.Name)
	}
	fmt.Fprintln(a.stdout, rs.Key)
	return nil
}
