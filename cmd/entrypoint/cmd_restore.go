package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"snapvisor/jobs"
	"snapvisor/remote"
	"snapvisor/snapshot"
)

func cmdRestore(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "restore", "restore [--discard-current] [--from URL] [NAME|latest]",
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
			"git remote); every object is checked against its hash before the swap.")
	discard := fs.Bool("discard-current", false, "delete the current contents after the swap instead of keeping them as <source>.pre-restore-<time>")
	from := fs.String("from", "", "restore from this remote `URL` (same forms and credentials as SNAPVISOR_REMOTES)")
	pos, done, err := parseArgs(fs, args, 1)
	if done || err != nil {
		return err
	}
	opts := snapshot.RestoreOptions{DiscardCurrent: *discard, Now: time.Now}
	if a.cfg.restic() {
		return restoreRestic(ctx, a, *from, pos, opts)
	}
	if a.cfg.git() {
		return restoreGit(ctx, a, *from, pos, opts)
	}
	if *from != "" {
		return restoreFrom(ctx, a, *from, pos, opts)
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
