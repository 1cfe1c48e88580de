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
	for _, name := range []string{"snapshot", "restore", "list", "copy", "verify", "keys", "status", "health", "replicate", "drill", "sidecar", "restore-if-empty", "takeover", "env", "version", "help"} {
		fmt.Fprintf(w, "  %-16s %s\n", name, cmds[name].summary)
	}
	fmt.Fprintf(w, `
Configuration is read from SNAPVISOR_* environment variables: see `+"`entrypoint env`"+`.
Exit codes: the service's own; %d bad command line; %d invalid configuration;
%d service not executable; %d service not found; %d other failure of a subcommand.
`, exitUsage, exitConfig, exitNoExec, exitNotFound, exitFailure)
	return nil
}
