//go:build !initonly

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"snapvisor/config"
	"snapvisor/jobs"
	"snapvisor/remote"
)

func cmdReplicate(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "replicate", "replicate [--json]",
		"Reconciles SNAPVISOR_REMOTES now, as SNAPVISOR_REPLICATE_SCHEDULE does: every snapshot\n"+
			"inside the retention that exists on any remote (or in SNAPVISOR_DIR) is copied to every\n"+
			"remote that lacks it, from whichever copy verifies, its .sha256 written last; a copy that\n"+
			"fails verification is reported and replaced from a good one; then each remote that got\n"+
			"copies is rotated. When an entrypoint runs in this container (SNAPVISOR_CONTROL_SOCKET\n"+
			"answers), it asks that one (it waits for a snapshot in progress); otherwise it runs by\n"+
			"itself. Exit 0 when every remote holds the retained snapshots, 1 otherwise.\n"+
			"To copy between any two stores, see `entrypoint copy`.")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if _, done, err := parseArgs(fs, args, 0); done || err != nil {
		return err
	}
	res, err := jobs.NewClient(a.cfg.Jobs.ControlSocket).Replicate(ctx)
	if errors.Is(err, jobs.ErrNoSupervisor) {
		res, err = replicateStandalone(ctx, a)
	}
	if res.Started.IsZero() && err != nil {
		return err
	}
	if *asJSON {
		if jerr := printJSON(a.stdout, res); jerr != nil {
			return jerr
		}
	} else {
		printReplication(a, res)
	}
	if !res.OK() {
		return fmt.Errorf("replication incomplete: %s", res.Summary())
	}
	return nil
}

// replicateStandalone runs one replication with no entrypoint running.
func replicateStandalone(ctx context.Context, a *app) (jobs.ReplicateResult, error) {
	if len(a.cfg.Store.URLs()) == 0 {
		return jobs.ReplicateResult{}, config.Invalid("REMOTES", "", "the remotes to reconcile, comma-separated")
	}
	stores, err := openRemotes(ctx, a)
	if err != nil {
		return jobs.ReplicateResult{}, err
	}
	defer func() { _ = remote.CloseAll(stores) }()
	runner := newRunner(a, nil, serviceEnv(os.Environ(), a.cfg.serviceSecrets()), nil, stores)
	defer runner.ReleaseLeases(context.Background()) // bounded per remote
	res, err := runner.Replicate(ctx)
	runner.FlushNotifications(context.WithoutCancel(ctx)) // its notification, bounded
	return res, err
}

// printReplication prints one line per remote.
func printReplication(a *app, res jobs.ReplicateResult) {
	if res.Skipped != "" {
		fmt.Fprintln(a.stdout, "skipped: "+res.Skipped)
		return
	}
	w := newTabWriter(a.stdout)
	for _, rr := range res.Remotes {
		state := "complete"
		if rr.Missing > 0 || len(rr.Errors) > 0 {
			state = fmt.Sprintf("INCOMPLETE (%d missing)", rr.Missing)
		}
		fmt.Fprintf(w, "%s\t%s\tcopied %d, replaced %d, %d bytes, rotated out %d\t%s\n", rr.Remote, state,
			len(rr.Copied), len(rr.Replaced), rr.Bytes, len(rr.Deleted), rr.Newest)
		for _, e := range rr.Errors {
			fmt.Fprintf(w, "\t\t%s\n", e)
		}
	}
	for _, d := range res.Damaged {
		fmt.Fprintf(w, "damaged\t%s\n", d)
	}
	fmt.Fprintf(w, "retained\t%d snapshots, %s\n", res.Retained, res.Duration.Round(time.Millisecond))
	_ = w.Flush()
}
