//go:build initonly

// The init-only build (make build-init, bin/entrypoint-init): the
// supervisor alone, for images that want tini's job and nothing more.

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"snapvisor/config"
	"snapvisor/internal/zlog"
	"snapvisor/supervisor"
)

// fullBuildHint ends every refusal of what only the full build does.
const fullBuildHint = "this is entrypoint-init, the init-only build (the supervisor alone: no snapshots, " +
	"restore, stores, encryption, metrics or schedules); use the full `entrypoint` binary (the snapvisor image) for it"

// run is the whole program of the init-only build: help, version and env,
// or the service supervised alone. A subcommand of the full build is a
// usage error (64), a variable only the full build honours a
// configuration error (78), both before the service starts.
func run(args []string, inherited supervisor.Inherited, stdout, stderr io.Writer) int {
	sub, service, err := parseCommandLine(args, func(name string) bool { return slices.Contains(subcommandNames(), name) })
	if err != nil {
		return report(stderr, nil, err)
	}
	switch sub {
	case "":
	case "help":
		printInitHelp(stdout)
		return exitOK
	case "version":
		printVersion(stdout)
		return exitOK
	case "env":
		printInitEnv(stdout)
		return exitOK
	default:
		return report(stderr, nil, &usageError{fmt.Sprintf("%s: a subcommand of the full build: %s", sub, fullBuildHint)})
	}

	var cfg InitConfig
	if err := loadInitOnly(&cfg, os.Environ()); err != nil {
		return report(stderr, nil, err)
	}
	cfg.Supervisor.Inherited = inherited
	cfg.Log.quietInit(false, os.LookupEnv)
	core, err := logCore(cfg.Log, stderr)
	if err != nil {
		return report(stderr, nil, err)
	}
	log := zlog.New(core, loggerName)
	defer func() { _ = log.Sync() }()
	sup, err := newSupervisor(cfg.Supervisor, service, os.Environ(), log)
	if err != nil {
		return report(stderr, log, err)
	}
	return report(stderr, log, superviseAlone(context.Background(), sup, log))
}

// loadInitOnly refuses the variables of the full build set in environ
// (fullBuildVars), then loads and validates c.
func loadInitOnly(c *InitConfig, environ []string) error {
	if vars := fullBuildVars(environ, config.Names(c.initSpecs()...)); len(vars) > 0 {
		also := ""
		if len(vars) > 1 {
			also = " (also set: " + strings.Join(vars[1:], ", ") + ")"
		}
		return &config.Error{Var: vars[0], Secret: true, Err: fmt.Errorf("only the full build honours it%s", also),
			Accepted: "unset here: " + fullBuildHint}
	}
	if err := loadSpecs(c.initSpecs()); err != nil {
		return err
	}
	return c.validateInit()
}

// fullBuildVars lists, sorted, the SNAPVISOR_ variables of environ that are
// set, not empty and not among known: each asks for something only the full
// build does, which this build would otherwise silently skip. The one
// exception is SNAPVISOR_BACKUP with a false value, which asks for what this
// build is.
func fullBuildVars(environ, known []string) []string {
	var out []string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, config.Var("")) || v == "" || slices.Contains(known, k) {
			continue
		}
		if on, err := strconv.ParseBool(v); k == config.Var("BACKUP") && err == nil && !on {
			continue
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// printInitHelp is `entrypoint-init help`.
func printInitHelp(w io.Writer) {
	fmt.Fprintf(w, `snapvisor %s — a PID-1 container entrypoint (init-only build)

Usage:
%s  entrypoint help|version|env       this help, the version, the variables read

This build is the supervisor alone: snapshots, restore, remote stores, encryption, metrics and
schedules are not linked in, and their subcommands and SNAPVISOR_* variables are refused
(exit %d and %d): use the full entrypoint binary (the snapvisor image) for them.
%s`, version, serviceUsage, exitUsage, exitConfig, helpFooter())
}

// printInitEnv is `entrypoint-init env`: the variables this build reads.
func printInitEnv(w io.Writer) {
	var c InitConfig
	fmt.Fprintln(w, "entrypoint-init reads these environment variables (defaults in the DEFAULT column);")
	fmt.Fprintln(w, "any other non-empty SNAPVISOR_* variable is refused (exit 78): it needs the full build.")
	fmt.Fprintln(w)
	config.Usage(tabwriter.NewWriter(w, 2, 4, 2, ' ', 0), c.initSpecs()...)
}
