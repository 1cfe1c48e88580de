//go:build !initonly

package main

// What the subcommands (cmd_<name>.go, listed in main.go's commands) share:
// their flag parsing, their output, the snapshot and remote arguments.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"go.uber.org/zap"

	"snapvisor/config"
	"snapvisor/jobs"
	"snapvisor/remote"
	"snapvisor/store"
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

// newFlagSet returns a FlagSet for a subcommand whose -h prints usage and flags to stdout.
func newFlagSet(a *app, name, usage, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(a.stdout, "Usage: entrypoint %s\n\n%s\n", usage, about)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(a.stdout, "\nFlags:")
			fs.SetOutput(a.stdout)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
		}
	}
	return fs
}

// parseArgs parses flags anywhere on the command line and returns the positional arguments.
// done is true when -h was given (usage already printed).
func parseArgs(fs *flag.FlagSet, args []string, maxPos int) (pos []string, done bool, err error) {
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) { // fs.Usage has printed the help
				return nil, true, nil
			}
			return nil, false, &usageError{fmt.Sprintf("%s: %v", fs.Name(), err)}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) > maxPos {
		return nil, false, &usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), pos[maxPos])}
	}
	return pos, false, nil
}

// snapshotPath maps a NAME argument to a path: a bare file name is looked up in the snapshot directory.
func snapshotPath(a *app, name string) string {
	if strings.ContainsRune(name, os.PathSeparator) {
		return name
	}
	return filepath.Join(a.snap.Dir, name)
}

// openRemote opens one remote for a subcommand, with the retry policy and
// time limit of the configuration. Its errors are configuration errors (exit
// 78) when the URL or the settings are wrong.
func openRemote(ctx context.Context, a *app, rawURL string) (remote.Remote, error) {
	cfg := a.cfg.Store
	cfg.Remotes = []string{rawURL}
	if err := cfg.Validate(); err != nil {
		return remote.Remote{}, err
	}
	s, err := store.Open(ctx, rawURL, cfg, a.log)
	if err != nil {
		return remote.Remote{}, err
	}
	return remote.Remote{Store: store.WithRetry(s, cfg.Policy(), a.log), Timeout: cfg.Timeout, LeaseTTL: cfg.LeaseTTL}, nil
}

// openRemotes opens every remote of SNAPVISOR_REMOTES for a standalone
// subcommand (none configured: none). An invalid configuration is its
// error; a remote that cannot be opened now is logged and kept as a store
// that retries the opening, reported again when it is used.
func openRemotes(ctx context.Context, a *app) ([]remote.Remote, error) {
	if len(a.cfg.Store.URLs()) == 0 {
		return nil, nil
	}
	if err := a.cfg.Store.Validate(); err != nil {
		return nil, err
	}
	stores, err := remote.OpenAll(ctx, a.cfg.Store, nil, a.log)
	var ce *config.Error
	if errors.As(err, &ce) {
		_ = remote.CloseAll(stores)
		return nil, err
	}
	if err != nil {
		a.log.Warn("some remotes could not be opened", zap.Error(err))
	}
	return stores, nil
}

// newRunner builds the snapshot runner of a's configuration: the service
// (nil for a standalone run), the hooks' environment, the metrics (nil: its
// own) and the remotes, in the configured format.
func newRunner(a *app, svc jobs.Service, env []string, m *jobs.Metrics, remotes []remote.Remote) *jobs.Runner {
	r := jobs.NewRunner(a.cfg.Jobs, a.snap, a.cfg.Policy, svc, env, a.log, m)
	r.SetRemotes(remotes)
	if err := r.SetNotify(a.cfg.Notify); err != nil { // validated by loadConfig
		a.log.Warn("notifications off", zap.Error(err))
	}
	if a.cfg.restic() {
		r.SetRestic(a.cfg.Restic)
	}
	if a.cfg.git() {
		r.SetGit(a.cfg.gitSet())
	}
	return r
}
