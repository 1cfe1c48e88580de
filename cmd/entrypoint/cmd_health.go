//go:build !initonly

package main

import (
	"context"
	"fmt"
	"time"

	"snapvisor/jobs"
)

// errUnhealthy is `entrypoint health`'s failure: exit 1 with the reason.
type errUnhealthy string

func (e errUnhealthy) Error() string { return "unhealthy: " + string(e) }

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
