//go:build !initonly

// The full build: the configuration of every component, the subcommands,
// and the service with its snapshot jobs beside it.

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	_ "time/tzdata" // CRON_TZ and TZ work in FROM-scratch images

	"go.uber.org/zap"

	"snapvisor/jobs"
	"snapvisor/remote"
	"snapvisor/snapshot"
	"snapvisor/supervisor"
)

// app is what a subcommand needs: the loaded configuration, a logger and outputs.
type app struct {
	log            *zap.Logger
	stdout, stderr io.Writer
	cfg            *Config
	snap           snapshot.Config
}

type command struct {
	run     func(ctx context.Context, a *app, args []string) error
	summary string
}

func commands() map[string]command {
	return map[string]command{
		"snapshot":         {cmdSnapshot, "take a snapshot now"},
		"restore":          {cmdRestore, "restore a snapshot (default: the newest that verifies) into the source paths"},
		"list":             {cmdList, "list snapshots (--json for machine-readable output)"},
		"copy":             {cmdCopy, "copy snapshots from one remote to another (--from URL --to URL [NAME|latest|--all])"},
		"verify":           {cmdVerify, "check a snapshot's checksum and that its archive reads to the end"},
		"keys":             {cmdKeys, "list the aes256-gcm key ids, their ages and the snapshots using them (never the keys)"},
		"status":           {cmdStatus, "show the schedule, the last result and the service state"},
		"health":           {cmdHealth, "exit non-zero when the service is down or the last snapshot is too old"},
		"replicate":        {cmdReplicate, "copy every retained snapshot to every remote that lacks it, from a copy that verifies"},
		"drill":            {cmdDrill, "run a restore drill now: restore the newest snapshot of a remote into a scratch directory, check it, delete it"},
		"sidecar":          {cmdSidecar, "run the snapshot jobs with no service of ours, beside an unmodified image sharing its volume (until TERM)"},
		"restore-if-empty": {cmdRestoreIfEmpty, "restore the newest good snapshot when the sources are empty, then exit (an init container)"},
		"takeover":         {cmdTakeover, "make this instance the writer on every remote now (take or break the remotes' leases)"},
		"env":              {cmdEnv, "print every environment variable with its default and meaning"},
		"version":          {cmdVersion, "print the version"},
		"help":             {cmdHelp, "show this help"},
	}
}

// run is the whole program: it parses the command line, loads and validates
// configuration, runs a subcommand or the service, and maps the result to an
// exit code. inherited is the signal state the process was started with.
func run(args []string, inherited supervisor.Inherited, stdout, stderr io.Writer) int {
	snapshot.Version = version
	sub, service, err := parseCommandLine(args, func(name string) bool { _, ok := commands()[name]; return ok })
	if err != nil {
		return report(stderr, nil, err)
	}
	if sub == "help" || sub == "version" || sub == "env" {
		// These work whatever the environment holds.
		a := &app{log: zap.NewNop(), stdout: stdout, stderr: stderr}
		return report(stderr, nil, commands()[sub].run(context.Background(), a, args[1:]))
	}

	cfg, err := loadConfig()
	if err != nil {
		return report(stderr, nil, err)
	}
	cfg.Supervisor.Inherited = inherited
	if sub == "" {
		cfg.Log.quietInit(cfg.Jobs.Backup, os.LookupEnv)
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return report(stderr, nil, err)
	}
	defer func() { _ = log.Sync() }()
	a := &app{log: log, stdout: stdout, stderr: stderr, cfg: cfg, snap: cfg.Snapshot}

	ctx := context.Background()
	if sub != "" {
		return report(stderr, log, commands()[sub].run(ctx, a, args[1:]))
	}
	return report(stderr, log, runService(ctx, a, service))
}

// runService supervises the service and, when backups are on, restores
// before it starts and runs the snapshot jobs beside it: one group of two
// actors, the supervisor (here) and the jobs (Serve), followed by the final
// snapshot. The shutdown order, all of it after the service's exit bounded by
// SNAPVISOR_EXIT_TIMEOUT from that exit:
//
//  1. the service exits;
//  2. the jobs stop (Serve: its actors, then the snapshot in progress
//     finishes or is abandoned, then the remotes' leases are released);
//  3. the optional final cold snapshot (SNAPVISOR_ON_EXIT, exit code 0),
//     then its leases are released;
//  4. the entrypoint exits with the service's code.
//
// From its start a TERM or INT is handled: one that arrives before the
// service has started (during the auto-restore, say) cancels what runs and
// ends the entrypoint with 128+N without starting the service.
func runService(ctx context.Context, a *app, argv []string) error {
	secrets := a.cfg.serviceSecrets()
	env := serviceEnv(os.Environ(), secrets)
	sup, err := newSupervisor(a.cfg.Supervisor, argv, env, a.log)
	if err != nil {
		return err
	}
	// Every secret is in a.cfg by now (store clients get their credentials
	// from it, never from the environment): take them out of the
	// environment, where a service of the same uid reads /proc/1/environ.
	if err := scrubEnviron(secrets); err != nil {
		a.log.Warn("secret variables stay readable in /proc/1/environ by processes of the same uid", zap.Error(err))
	}
	if !a.cfg.Jobs.Backup {
		return superviseAlone(ctx, sup, a.log)
	}

	jc := a.cfg.Jobs
	metrics := jobs.NewMetrics()
	var remotes []remote.Remote
	defer func() { _ = remote.CloseAll(remotes) }()
	err = sup.Before(ctx, func(ctx context.Context) error {
		var err error
		remotes, err = remote.OpenAll(ctx, a.cfg.Store, metrics.MetricsSet(), a.log)
		if err != nil {
			// One bad remote never blocks the others or the local snapshots.
			a.log.Error("some remotes could not be opened; snapshots go to the others", zap.Error(err))
		}
		if jc.Restore == jobs.RestoreModeIfEmpty {
			_, err := autoRestore(ctx, a, remotes)
			return err
		}
		// Without auto-restore an interrupted restore (entrypoint restore
		// killed mid-swap) is still finished or rolled back: the service
		// never starts on a half-swapped directory.
		if err := snapshot.Recover(a.snap, a.log); err != nil {
			return fmt.Errorf("%w: %w", jobs.ErrRestoreFailed, err)
		}
		return nil
	})
	if err != nil {
		return notStarted(a.log, err)
	}
	runner := newRunner(a, sup, env, metrics, remotes)
	// The control socket and metrics port are opened before the service
	// starts: a busy one fails the start, not a snapshot hours later.
	listeners, err := runner.Listen()
	if err != nil {
		return err
	}
	jctx, stopJobs := context.WithCancel(context.Background())
	defer stopJobs()
	served := make(chan struct{})
	go func() {
		defer close(served)
		select {
		case <-sup.Started():
			if err := runner.Serve(jctx, listeners, jc.ExitTimeout); err != nil {
				a.log.Error("snapshot jobs stopped: no more scheduled snapshots until the container restarts", zap.Error(err))
			}
		case <-jctx.Done():
			listeners.Close()
		}
	}()

	st, err := sup.Run(ctx)
	exit, cancel := context.WithTimeout(context.Background(), jc.ExitTimeout) // the exit bound starts now
	defer cancel()
	stopJobs()
	select {
	case <-served: // Serve bounds its own stop by SNAPVISOR_EXIT_TIMEOUT
	case <-exit.Done():
	}
	if err != nil {
		return notStarted(a.log, err)
	}
	code := sup.ExitCode(st) // SNAPVISOR_SUCCESS_CODES count as 0 here too
	if jc.OnExit {
		if code == 0 {
			res := runner.Final(exit)
			// Serve released the remotes' leases when it ended; the final
			// snapshot took them again: a clean exit leaves them free.
			runner.ReleaseLeases(exit)
			if !res.OK() {
				a.log.Error("final snapshot failed", zap.String("error", res.Error))
			}
		} else {
			a.log.Warn("no final snapshot: the service did not exit cleanly", zap.Int("code", st.Code()))
		}
	}
	runner.FlushNotifications(exit) // the final snapshot's (Serve delivered the others), bounded
	return &exitError{code: code}
}

// autoRestore restores the newest good snapshot (of the configured format,
// from SNAPVISOR_DIR or the remotes) when the sources are empty, after
// completing an interrupted restore; it returns what it restored ("" when
// there was nothing to do). Before the service starts, and as
// `entrypoint restore-if-empty` (an initContainer).
func autoRestore(ctx context.Context, a *app, remotes []remote.Remote) (string, error) {
	switch {
	case a.cfg.git():
		return jobs.GitRestoreIfEmpty(ctx, a.snap, a.cfg.gitSet(), a.log)
	case a.cfg.restic():
		return jobs.ResticRestoreIfEmpty(ctx, a.snap, a.cfg.Restic, remotes, a.log)
	}
	return jobs.RestoreIfEmpty(ctx, a.snap, remotes, a.log)
}

// serviceEnv is the container's environment minus snapvisor's secret variables.
func serviceEnv(environ, secret []string) []string {
	drop := make(map[string]bool, len(secret))
	for _, k := range secret {
		drop[k] = true
	}
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			out = append(out, kv)
		}
	}
	return out
}
