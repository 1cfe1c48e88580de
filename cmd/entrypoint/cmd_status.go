//go:build !initonly

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"snapvisor/jobs"
)

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
	for _, rs := range st.Remotes {
		newest := "no snapshot seen yet"
		if rs.Newest != "" {
			newest = fmt.Sprintf("newest %s (%s ago)", rs.Newest, time.Since(rs.NewestTime).Round(time.Second))
		}
		fmt.Fprintf(w, "remote %s\t%s\n", rs.Remote, newest)
	}
	if rep := st.LastReplication; rep != nil {
		res := "ok: every remote holds the retained snapshots"
		switch {
		case rep.Skipped != "":
			res = "skipped: " + rep.Skipped
		case !rep.OK():
			res = "INCOMPLETE: " + rep.Summary()
		}
		fmt.Fprintf(w, "last replication\t%s (%s): %s\n", rep.Started.Format(time.RFC3339), rep.Duration.Round(time.Millisecond), res)
	}
	health := "healthy"
	if !st.Healthy {
		health = "UNHEALTHY: " + st.Problem
	}
	fmt.Fprintf(w, "health\t%s (max age %s)\n", health, st.HealthMaxAge)
	return w.Flush()
}
