package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"snapvisor/jobs"
)

// printJSON writes v as indented JSON: the --json output of every subcommand.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
}

// errUnhealthy is `entrypoint health`'s failure: exit 1 with the reason.
type errUnhealthy string

func (e errUnhealthy) Error() string { return "unhealthy: " + string(e) }

func cmdStatus(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "Usage: entrypoint status [--json]\n\nAsks the running snapvisor (SNAPVISOR_CONTROL_SOCKET) for its schedule, next run,\nlast result and the service's state.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := jobs.NewClient(a.cfg.Jobs.ControlSocket).Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(a.stdout, st)
	}
	w := newTabWriter(a.stdout)
	fmt.Fprintf(w, "service\t%s\n", st.Service)
	fmt.Fprintf(w, "schedule\t%s\n", st.Schedule)
	if !st.Next.IsZero() {
		fmt.Fprintf(w, "next run\t%s (in %s)\n", st.Next.Format(time.RFC3339), time.Until(st.Next).Round(time.Second))
	}
	fmt.Fprintf(w, "running now\t%v\n", st.Running)
	fmt.Fprintf(w, "runs\t%d\n", st.Runs)
	if st.Last != nil {
		res := "ok " + st.Last.Snapshot
		if st.Last.Error != "" {
			res = "FAILED: " + st.Last.Error
		} else if st.Last.Skipped != "" {
			res = "skipped: " + st.Last.Skipped
		}
		fmt.Fprintf(w, "last run\t%s (%s, %s): %s\n", st.Last.Started.Format(time.RFC3339), st.Last.Reason, st.Last.Duration.Round(time.Millisecond), res)
	}
	if st.LastGood != nil {
		fmt.Fprintf(w, "last good\t%s %s (%d bytes)\n", st.LastGood.Started.Format(time.RFC3339), st.LastGood.Snapshot, st.LastGood.Size)
	}
	health := "healthy"
	if !st.Healthy {
		health = "UNHEALTHY: " + st.Problem
	}
	fmt.Fprintf(w, "health\t%s (max age %s)\n", health, st.HealthMaxAge)
	return w.Flush()
}

func cmdHealth(ctx context.Context, a *app, args []string) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(a.stdout, "Usage: entrypoint health\n\nExits 0 when the service runs and the last good snapshot is younger than\nSNAPVISOR_HEALTH_MAX_AGE; 1 otherwise. For HEALTHCHECK and Kubernetes probes.")
		return nil
	}
	if !a.cfg.Jobs.Backup {
		fmt.Fprintln(a.stdout, "healthy: snapshots are off (SNAPVISOR_BACKUP); the entrypoint exits with the service, so a running container has a running service")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := jobs.NewClient(a.cfg.Jobs.ControlSocket).Status(ctx)
	if err != nil {
		return errUnhealthy(err.Error())
	}
	if !st.Healthy {
		return errUnhealthy(st.Problem)
	}
	last := "none"
	if st.LastGood != nil {
		last = st.LastGood.Snapshot + " at " + st.LastGood.Started.Format(time.RFC3339)
	}
	fmt.Fprintf(a.stdout, "healthy: service %s, last good snapshot %s\n", st.Service, last)
	return nil
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
		fmt.Fprintf(a.stdout, "%s%s\n", filepath.Join(a.snap.Dir, res.Snapshot), note)
	}
	if err := resultError(res); err != nil && res.Note != "" {
		return true, fmt.Errorf("%w (%s)", err, res.Note)
	} else if err != nil {
		return true, err
	}
	return true, nil
}
