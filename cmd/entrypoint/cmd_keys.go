//go:build !initonly

package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"snapvisor/snapshot"
)

// keyJSON is one line of `entrypoint keys --json`.
type keyJSON struct {
	snapshot.KeyUse
	AgeSeconds int64 `json:"age_seconds,omitempty"`
}

func cmdKeys(_ context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "keys", "keys [--json]",
		"Lists the aes256-gcm encryption keys (SNAPVISOR_ENCRYPTION_KEYS(_FILE) and\n"+
			"SNAPVISOR_ENCRYPTION_KEY) by id: age, whether new snapshots use it, when rotation\n"+
			"replaces or may drop it, and the snapshots in SNAPVISOR_DIR encrypted with it.\n"+
			"Key ids that snapshots use but no configured key has are listed as MISSING.\n"+
			"Key material is never printed.")
	asJSON := fs.Bool("json", false, "print a JSON array of {id, created, current, missing, rotate_at, drop_after, snapshots, age_seconds}")
	if _, done, err := parseArgs(fs, args, 0); done || err != nil {
		return err
	}
	uses, err := snapshot.KeyUsage(a.snap.Encryption, a.snap.Dir)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	now := time.Now()
	if *asJSON {
		out := make([]keyJSON, 0, len(uses))
		for _, u := range uses {
			k := keyJSON{KeyUse: u}
			if !u.Created.IsZero() {
				k.AgeSeconds = int64(now.Sub(u.Created) / time.Second)
			}
			out = append(out, k)
		}
		return printJSON(a.stdout, out)
	}
	if len(uses) == 0 {
		fmt.Fprintln(a.stdout, "no aes256-gcm keys are configured and no snapshot in "+a.snap.Dir+" names one")
		return nil
	}
	tw := newTabWriter(a.stdout)
	fmt.Fprintln(tw, "ID\tCREATED\tAGE\tSTATE\tSNAPSHOTS")
	for _, u := range uses {
		created, age := "-", "-"
		if !u.Created.IsZero() {
			created = u.Created.UTC().Format(time.RFC3339)
			age = humanAge(now.Sub(u.Created))
		}
		state := "decrypts"
		switch {
		case u.Missing:
			state = "MISSING (snapshots need it; add it to SNAPVISOR_ENCRYPTION_KEYS)"
		case u.Current && !u.RotateAt.IsZero():
			state = "encrypts (replaced after " + u.RotateAt.UTC().Format(time.RFC3339) + ")"
		case u.Current:
			state = "encrypts"
		case !u.DropAfter.IsZero():
			state = "decrypts (dropped after " + u.DropAfter.UTC().Format(time.RFC3339) + " once unused)"
		}
		snaps := "0"
		if n := len(u.Snapshots); n > 0 {
			snaps = fmt.Sprintf("%d: %s", n, strings.Join(u.Snapshots, ", "))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.ID, created, age, state, snaps)
	}
	return tw.Flush()
}

// humanAge formats a duration as days, hours or minutes ("91d", "5h", "12m").
func humanAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0m"
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dm", int(d/time.Minute))
}
