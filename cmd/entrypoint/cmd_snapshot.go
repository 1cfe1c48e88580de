//go:build !initonly

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"snapvisor/config"
	"snapvisor/jobs"
	"snapvisor/remote"
)

func cmdSnapshot(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "snapshot", "snapshot [--json]",
		"Takes one snapshot now and prints its path. When an entrypoint runs in this container\n"+
			"(SNAPVISOR_CONTROL_SOCKET answers), it asks that one and waits for the result; within\n"+
			"SNAPVISOR_MIN_INTERVAL of its previous run it gets that run's result. Otherwise (a\n"+
			"CronJob, docker run --rm IMAGE entrypoint snapshot) it runs the same pipeline by itself:\n"+
			"the hooks, the snapshot into SNAPVISOR_DIR, the pushes to SNAPVISOR_REMOTES and the\n"+
			"rotation, local and remote; with SNAPVISOR_DIR empty (streaming mode) the snapshot goes\n"+
			"straight to every remote and one line per remote is printed. Freezing needs the running\n"+
			"service: standalone, SNAPVISOR_FREEZE other than none is refused (exit 78).\n"+
			"The exit code tells success: a remote that did not get the snapshot is a failure.")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	noProgress := progressFlag(fs)
	if _, done, err := parseArgs(fs, args, 0); done || err != nil {
		return err
	}
	if handled, err := snapshotViaSupervisor(ctx, a, *asJSON); handled {
		return err
	}
	return snapshotStandalone(ctx, a, *asJSON, *asJSON || *noProgress)
}

// snapshotStandalone takes one snapshot with no entrypoint running, through
// the pipeline of a scheduled run (jobs.Runner without a service: hooks run
// standalone, then the snapshot, the pushes and the rotation, local and
// remote). It prints the local path, or in streaming mode one line per remote
// that took the snapshot; a failed push is a failure.
func snapshotStandalone(ctx context.Context, a *app, asJSON, noProgress bool) error {
	jc := a.cfg.Jobs
	if jc.Freeze == jobs.FreezePause || jc.Freeze == jobs.FreezeStop {
		e := config.Invalid("FREEZE", jc.Freeze, "none for a standalone `entrypoint snapshot`")
		e.Err = fmt.Errorf("no entrypoint answers on %s (SNAPVISOR_CONTROL_SOCKET), and pausing or stopping the service needs the entrypoint that runs it: "+
			"run `entrypoint snapshot` inside that container (docker exec, kubectl exec), or set SNAPVISOR_FREEZE=none for this command", jc.ControlSocket)
		return e
	}
	if a.snap.Dir == "" && len(a.cfg.Store.URLs()) == 0 {
		return config.Invalid("DIR", "", "a snapshot directory, or SNAPVISOR_DIR empty together with SNAPVISOR_REMOTES (streaming mode)")
	}
	// A remote that cannot be opened is reported again as a failed push to it.
	stores, err := openRemotes(ctx, a)
	if err != nil {
		return err
	}
	defer func() { _ = remote.CloseAll(stores) }()
	// The hooks see what they see in a scheduled run: the environment minus
	// snapvisor's secrets, the stores' credentials included.
	c := *a.cfg
	c.Jobs.Backup = true
	env := serviceEnv(os.Environ(), c.serviceSecrets())
	runner := newRunner(a, nil, env, nil, stores)
	// The remotes' leases are renewed while the run lasts (a push may
	// outlast SNAPVISOR_LEASE_TTL) and released after it: a CronJob's next
	// pod is another writer, which must not wait for the TTL.
	lctx, stopLeases := context.WithCancel(ctx)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		runner.KeepLeases(lctx)
	}()
	_, meter, stopProgress := a.withProgress(ctx, noProgress)
	runner.Watch(meter)
	res, err := runner.Trigger(ctx, jobs.ReasonStandalone)
	stopProgress()
	stopLeases()
	<-kept                                     // one round at most, bounded per remote
	runner.ReleaseLeases(context.Background()) // bounded per remote
	runner.FlushNotifications(ctx)             // the notification and heartbeat, bounded
	if err != nil {
		return err
	}
	if asJSON {
		if err := json.NewEncoder(a.stdout).Encode(res); err != nil {
			return err
		}
	} else if res.OK() && a.cfg.restic() {
		fmt.Fprintln(a.stdout, res.Snapshot) // the restic snapshot's ID, in every repository's listing
	} else if res.OK() && a.cfg.git() {
		fmt.Fprintln(a.stdout, res.Snapshot) // the branch's head commit (short hash)
		if res.Note != "" {
			fmt.Fprintln(a.stderr, res.Note)
		}
	} else if res.OK() {
		if a.snap.Dir != "" {
			fmt.Fprintln(a.stdout, filepath.Join(a.snap.Dir, res.Snapshot))
		}
		for _, r := range res.Remotes {
			if r.Error == "" && a.snap.Dir == "" {
				fmt.Fprintf(a.stdout, "%s/%s\n", strings.TrimSuffix(r.Remote, "/"), res.Snapshot)
			}
		}
	}
	return resultError(res)
}

// resultError is the error (exit 1) of a snapshot's result: no snapshot, or a
// remote that did not get it.
func resultError(res jobs.Result) error {
	switch {
	case res.Skipped != "":
		return fmt.Errorf("snapshot skipped: %s", res.Skipped)
	case !res.OK():
		return fmt.Errorf("snapshot failed: %s", res.Error)
	}
	for _, r := range res.Remotes {
		if r.Error != "" {
			return fmt.Errorf("snapshot %s is on %d of %d remotes: %s: %s", res.Snapshot, countOK(res.Remotes), len(res.Remotes), r.Remote, r.Error)
		}
	}
	return nil
}

func countOK(results []jobs.PushResult) int {
	n := 0
	for _, r := range results {
		if r.Error == "" {
			n++
		}
	}
	return n
}

// snapshotViaSupervisor asks the entrypoint running in this container (over
// its control socket) for a snapshot and waits for the result; handled is
// false when no supervisor answers, so the caller snapshots standalone.
func snapshotViaSupervisor(ctx context.Context, a *app, asJSON bool) (handled bool, err error) {
	res, err := jobs.NewClient(a.cfg.Jobs.ControlSocket).Snapshot(ctx)
	if errors.Is(err, jobs.ErrNoSupervisor) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	if asJSON {
		if err := json.NewEncoder(a.stdout).Encode(res); err != nil {
			return true, err
		}
	} else if res.OK() {
		note := ""
		switch {
		case res.Note != "": // within SNAPVISOR_MIN_INTERVAL
			note = " (" + res.Note + ")"
		case res.Coalesced:
			note = " (joined the run in progress)"
		}
		name := filepath.Join(a.snap.Dir, res.Snapshot)
		if a.cfg.restic() || a.cfg.git() {
			name = res.Snapshot // a snapshot ID or a commit, not a file in SNAPVISOR_DIR (as snapshotStandalone prints)
		}
		fmt.Fprintf(a.stdout, "%s%s\n", name, note)
	}
	if err := resultError(res); err != nil && res.Note != "" {
		return true, fmt.Errorf("%w (%s)", err, res.Note)
	} else if err != nil {
		return true, err
	}
	return true, nil
}
