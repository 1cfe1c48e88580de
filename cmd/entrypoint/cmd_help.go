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
%s  entrypoint SUBCOMMAND [ARGS...]   run a snapvisor subcommand

Subcommands:
`, version, serviceUsage)
	cmds := commands()
	for _, name := range subcommandNames() {
		fmt.Fprintf(w, "  %-16s %s\n", name, cmds[name].summary)
	}
	fmt.Fprint(w, helpFooter())
	return nil
}
