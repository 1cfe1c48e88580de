//go:build !initonly

package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"snapvisor/config"
	"snapvisor/jobs"
	"snapvisor/remote"
)

// cmdTakeover makes this instance the writer of SNAPVISOR_NAME on every
// remote at once, instead of waiting for the previous writer's lease to
// expire (SNAPVISOR_LEASE_TTL).
func cmdTakeover(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "takeover", "takeover [--json]",
		"Makes this instance the only writer of SNAPVISOR_NAME on every remote of SNAPVISOR_REMOTES\n"+
			"now, instead of waiting for the previous writer's lease (<NAME>.lease) to expire\n"+
			"(SNAPVISOR_LEASE_TTL). When an entrypoint runs in this container (SNAPVISOR_CONTROL_SOCKET\n"+
			"answers), it takes every lease: the previous writer is refused from its next push on.\n"+
			"Otherwise it deletes the leases, whoever holds them, so that the next snapshot here takes\n"+
			"them; a previous writer that still runs would take them back, so stop it first.\n"+
			"It prints what it did on each remote; the exit code tells whether every remote did it.")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	if _, done, err := parseArgs(fs, args, 0); done || err != nil {
		return err
	}
	if len(a.cfg.Store.URLs()) == 0 {
		return config.Invalid("REMOTES", "", "the remotes whose leases to take: takeover works on the remotes of SNAPVISOR_REMOTES")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	results, err := jobs.NewClient(a.cfg.Jobs.ControlSocket).Takeover(ctx)
	if errors.Is(err, jobs.ErrNoSupervisor) {
		stores, oerr := remote.OpenAll(ctx, a.cfg.Store, nil, a.log)
		defer remote.CloseAll(stores)
		if oerr != nil {
			a.log.Warn("some remotes could not be opened", zap.Error(oerr))
		}
		results, err = jobs.BreakLeases(ctx, stores, a.snap.Name, a.log), nil
	}
	if err != nil {
		return err
	}
	if *asJSON {
		if err := printJSON(a.stdout, results); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			fmt.Fprintf(a.stdout, "%s: %s\n", r.Remote, takeoverLine(r))
		}
	}
	failed := 0
	for _, r := range results {
		if r.Error != "" {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("takeover failed on %d of %d remotes", failed, len(results))
	}
	return nil
}

// takeoverLine says what takeover did on one remote.
func takeoverLine(r jobs.LeaseResult) string {
	prev := "there was no lease"
	if p := r.Previous; p != nil {
		state := "valid until"
		if p.Expired(time.Now()) {
			state = "expired"
		}
		prev = fmt.Sprintf("it was held by %s, %s %s", p.Writer, state, p.Expires.UTC().Format(time.RFC3339))
	}
	switch r.Action {
	case "taken":
		return "lease taken by the running entrypoint (" + prev + ")"
	case "broken":
		if r.Previous == nil {
			return "no lease to break; the next snapshot here takes it"
		}
		return "lease deleted; the next snapshot here takes it (" + prev + ")"
	}
	return "FAILED: " + r.Error
}
