//go:build !initonly

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"snapvisor/config"
	"snapvisor/jobs"
	"snapvisor/remote"
)

func cmdDrill(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "drill", "drill [--from URL] [--json]",
		"Runs one restore drill now: the newest snapshot of a remote (--from URL, else the next\n"+
			"remote of SNAPVISOR_REMOTES in turn; without remotes the newest in SNAPVISOR_DIR) is\n"+
			"downloaded into a fresh directory in SNAPVISOR_DRILL_DIR, restored there (checksum and\n"+
			"full read verified; the data directory is never touched), checked by\n"+
			"SNAPVISOR_DRILL_COMMAND when set, and deleted. When an entrypoint runs in this container\n"+
			"(SNAPVISOR_CONTROL_SOCKET answers), it asks that one (its metrics and status show the\n"+
			"result; --from must then be one of its remotes); otherwise it runs the drill by itself.\n"+
			"Exit 0 when the drill passed, 1 when it failed.")
	from := fs.String("from", "", "drill the newest snapshot of this remote `URL` (same forms and credentials as SNAPVISOR_REMOTES)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	noProgress := progressFlag(fs)
	if _, done, err := parseArgs(fs, args, 0); done || err != nil {
		return err
	}
	res, err := jobs.NewClient(a.cfg.Jobs.ControlSocket).Drill(ctx, *from)
	if errors.Is(err, jobs.ErrNoSupervisor) {
		pctx, _, stopProgress := a.withProgress(ctx, *asJSON || *noProgress)
		res, err = drillStandalone(pctx, a, *from)
		stopProgress()
	}
	if err != nil {
		return err
	}
	if *asJSON {
		if err := json.NewEncoder(a.stdout).Encode(res); err != nil {
			return err
		}
	} else {
		verdict := "passed"
		if !res.OK() {
			verdict = "FAILED"
		}
		fmt.Fprintf(a.stdout, "drill %s: %s from %s, %d bytes restored, %s\n", verdict, res.Snapshot, res.Remote, res.Bytes,
			res.Duration.Round(time.Millisecond))
	}
	if !res.OK() {
		return fmt.Errorf("restore drill of %s failed: %s", res.Remote, res.Error)
	}
	return nil
}

// drillStandalone runs one drill with no entrypoint running: from the
// remote from (opened for this drill when it is not one of
// SNAPVISOR_REMOTES), or the first configured remote, or the local
// snapshots.
func drillStandalone(ctx context.Context, a *app, from string) (jobs.DrillResult, error) {
	if err := jobs.CheckDrillDir(a.cfg.Jobs, a.snap); err != nil {
		return jobs.DrillResult{}, err
	}
	var stores []remote.Remote
	defer func() { _ = remote.CloseAll(stores) }()
	if from != "" {
		s, err := openRemote(ctx, a, from)
		if err != nil {
			return jobs.DrillResult{}, err
		}
		stores = []remote.Remote{s}
		from = s.Name()
	} else if len(a.cfg.Store.URLs()) > 0 {
		var err error
		if stores, err = openRemotes(ctx, a); err != nil {
			return jobs.DrillResult{}, err
		}
	} else if a.snap.Dir == "" {
		return jobs.DrillResult{}, config.Invalid("REMOTES", "", "a remote to drill (or drill --from URL, or a local SNAPVISOR_DIR)")
	}
	env := serviceEnv(os.Environ(), a.cfg.serviceSecrets())
	runner := newRunner(a, nil, env, nil, stores)
	res, err := runner.Drill(ctx, from)
	runner.FlushNotifications(context.WithoutCancel(ctx)) // its notification, bounded
	if err != nil {
		return res, fmt.Errorf("drill: %w", err)
	}
	return res, nil
}
