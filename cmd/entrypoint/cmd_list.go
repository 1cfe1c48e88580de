//go:build !initonly

package main

import (
	"context"
	"fmt"
	"time"

	"snapvisor/remote"
	"snapvisor/seal"
	"snapvisor/snapshot"
)

func cmdList(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "list", "list [--json] [--remote URL]",
		"Lists the complete snapshots in SNAPVISOR_DIR named SNAPVISOR_NAME-*, newest first;\n"+
			"with --remote URL, those on that remote (an archive counts once its .sha256 is there).\n"+
			"With SNAPVISOR_FORMAT=restic: the snapshots of the restic repositories in SNAPVISOR_DIR\n"+
			"and on every remote (or the --remote one): id, time, host, paths, size, bytes added.\n"+
			"With SNAPVISOR_FORMAT=git: the commits of the branch in SNAPVISOR_DIR's repository (or\n"+
			"fetched from the --remote one), newest first: short hash, time, files changed, tags.")
	asJSON := fs.Bool("json", false, "print a JSON array of {name, path, time, size, compression, sha256}; with --remote, of {key, name, time, size, compression, modified, remote}")
	remoteURL := fs.String("remote", "", "list the snapshots on this remote `URL` (same forms and credentials as SNAPVISOR_REMOTES)")
	if _, done, err := parseArgs(fs, args, 0); done || err != nil {
		return err
	}
	if a.cfg.restic() {
		return listRestic(ctx, a, *remoteURL, *asJSON)
	}
	if a.cfg.git() {
		return listGit(ctx, a, *remoteURL, *asJSON)
	}
	if *remoteURL != "" {
		return listRemote(ctx, a, *remoteURL, *asJSON)
	}
	if a.snap.Dir == "" {
		return &usageError{"list: SNAPVISOR_DIR is empty (streaming mode), so there are no local snapshots: use list --remote URL"}
	}
	list, err := snapshot.List(a.snap.Dir, a.snap.Name)
	if err != nil {
		return err
	}
	return printList(a, *asJSON, list, func(s snapshot.Info) snapshotRow {
		return snapshotRow{s.Name, s.Time, s.Size, s.Compression, s.Encryption}
	})
}

// snapshotRow is one line of the `list` table, for a local or a remote snapshot.
type snapshotRow struct {
	name        string
	time        time.Time
	size        int64
	compression string
	encryption  string
}

// printList prints list as JSON (an empty array when there is none) or as the `list` table.
func printList[T any](a *app, asJSON bool, list []T, row func(T) snapshotRow) error {
	if asJSON {
		if list == nil {
			list = []T{}
		}
		return printJSON(a.stdout, list)
	}
	tw := newTabWriter(a.stdout)
	fmt.Fprintln(tw, "NAME\tTIME\tSIZE\tCOMPRESSION\tENCRYPTION")
	for _, s := range list {
		r := row(s)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", r.name, r.time.Format(time.RFC3339), r.size, r.compression, r.encryption)
	}
	return tw.Flush()
}

func listRemote(ctx context.Context, a *app, rawURL string, asJSON bool) error {
	s, err := openRemote(ctx, a, rawURL)
	if err != nil {
		return err
	}
	defer s.Close()
	lctx, cancel := s.WithTimeout(ctx)
	defer cancel()
	list, err := remote.ListSnapshots(lctx, s, a.snap.Name)
	if err != nil {
		return remote.TimeoutError(lctx, err)
	}
	return printList(a, asJSON, list, func(r remote.Snapshot) snapshotRow {
		return snapshotRow{r.Key, r.Time, r.Size, r.Compression, seal.FromSuffix(r.Key)}
	})
}
