// Command entrypoint is snapvisor: a PID-1 container entrypoint that runs the
// service as its child (signals, zombie reaping, exit code) and, when enabled,
// takes scheduled snapshots of the service's data and restores them on start.
//
//	entrypoint [--] CMD [ARGS...]   run CMD as the service
//	entrypoint SUBCOMMAND [ARGS...] run one of snapvisor's own subcommands
//
// Built with the tag initonly (make build-init, bin/entrypoint-init) it is
// the supervisor alone: no snapshots, stores, encryption, metrics or
// scheduler are linked in (initonly.go). The files of the full build carry
// //go:build !initonly; the untagged files are what both builds share.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"snapvisor/config"
	"snapvisor/internal/zlog"
	"snapvisor/supervisor"
)

// version is set at build time (-ldflags -X main.version=...).
var version = "dev"

// Exit codes with a meaning of their own; everything else is the service's code.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 64  // EX_USAGE: bad command line
	exitConfig   = 78  // EX_CONFIG: invalid configuration
	exitNoExec   = 126 // service not executable
	exitNotFound = 127 // service not found
)

// serviceUsage is the help text's line for running a service, in both builds.
const serviceUsage = `  entrypoint [--] CMD [ARGS...]     run CMD as the service (signals forwarded, zombies reaped,
                                    exit code passed through; 128+N when killed by signal N)
`

// helpFooter ends the help text of both builds: where the configuration
// comes from and the exit codes above.
func helpFooter() string {
	return "\nConfiguration is read from SNAPVISOR_* environment variables: see `entrypoint env`.\n" +
		fmt.Sprintf("Exit codes: the service's own; %d bad command line; %d invalid configuration;\n"+
			"%d service not executable; %d service not found; %d other failure of a subcommand.\n",
			exitUsage, exitConfig, exitNoExec, exitNotFound, exitFailure)
}

func main() {
	// First, before anything registers a signal: what the service inherits.
	inherited := supervisor.CaptureInherited()
	os.Exit(run(os.Args[1:], inherited, os.Stdout, os.Stderr))
}

// usageError is a bad command line (exit 64).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// exitError carries an exact exit code (the service's own, for instance).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// parseCommandLine splits the command line into a subcommand (isCommand
// names them; -h/--help is "help", -v/--version "version") or the service's
// argv: after `--`, or from the first word that is no subcommand. A
// missing command or an unknown flag is a *usageError.
func parseCommandLine(args []string, isCommand func(string) bool) (sub string, service []string, err error) {
	switch {
	case len(args) == 0:
		return "", nil, &usageError{"no command given: use `entrypoint [--] CMD [ARGS...]` to run a service, or `entrypoint help`"}
	case args[0] == "--":
		if len(args) == 1 {
			return "", nil, &usageError{"no service command after `--`: use `entrypoint -- CMD [ARGS...]`"}
		}
		return "", args[1:], nil
	case args[0] == "-h" || args[0] == "--help":
		return "help", nil, nil
	case args[0] == "--version" || args[0] == "-v":
		return "version", nil, nil
	case strings.HasPrefix(args[0], "-"):
		return "", nil, &usageError{fmt.Sprintf("unknown flag %q: put `--` before a service command that starts with a dash", args[0])}
	case isCommand(args[0]):
		return args[0], nil, nil
	}
	return "", args, nil
}

// printVersion is the output of `entrypoint version`.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "snapvisor entrypoint %s\n", version)
}

// notStarted turns a TERM or INT that arrived before the service started
// into the exit code 128+N, saying so in the log; other errors pass through.
func notStarted(log zlog.Logger, err error) error {
	var se *supervisor.StoppedError
	if !errors.As(err, &se) {
		return err
	}
	fields := []zlog.Field{zlog.String("signal", supervisor.SignalName(se.Signal)), zlog.Int("exit_code", se.Code())}
	if se.Err != nil {
		// An auto-restore cut short: snapshot.Restore removes its staging
		// and never swaps in part of a snapshot.
		fields = append(fields, zlog.NamedError("cancelled", se.Err))
	}
	log.Warn("stopped before the service started: the service was not started", fields...)
	return &exitError{code: se.Code()}
}

// report maps the final error to an exit code, in one place. log is nil
// before the logger exists.
func report(stderr io.Writer, log zlog.Logger, err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) && ee.err == nil {
		return ee.code
	}
	code := exitFailure
	var (
		ue *usageError
		ce *config.Error
		se *supervisor.StartError
	)
	switch {
	case errors.As(err, &ue):
		code = exitUsage
	case errors.As(err, &ce):
		code = exitConfig
	case errors.As(err, &se):
		code = se.Code
	case errors.As(err, &ee):
		code = ee.code
	}
	switch {
	case code == exitConfig:
		fmt.Fprintf(stderr, "snapvisor: configuration error: %v\n", err)
	case code == exitUsage:
		fmt.Fprintf(stderr, "snapvisor: %v\nRun `entrypoint help` for usage.\n", err)
	case log != nil:
		log.Error("failed", zlog.Error(err), zlog.Int("exit_code", code))
	default:
		fmt.Fprintf(stderr, "snapvisor: %v\n", err)
	}
	return code
}
