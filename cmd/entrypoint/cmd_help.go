//go:build !initonly

package main

import (
	"context"
	"fmt"
)

func cmdHelp(_ context.Context, a *app, _ []string) error {
	w := a.stdout
	fmt.Fprintf(w, `snapvisor %s — a PID-1 container entrypoint with built-in snapshots

Usage:
  entrypoint [--] CMD [ARGS...]     run CMD as the service (signals forwarded, zombies reaped,
                                    exit code passed through; 128+N when killed by signal N)
  entrypoint SUBCOMMAND [ARGS...]   run a snapvisor subcommand

Subcommands:
`, version)
	cmds := commands()
	for _, name := range subcommandNames() {
		fmt.Fprintf(w, "  %-16s %s\n", name, cmds[name].summary)
	}
	fmt.Fprintf(w, "\nConfiguration is read from SNAPVISOR_* environment variables: see `entrypoint env`.\n%s", exitCodesHelp())
	return nil
}
