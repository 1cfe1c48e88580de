//go:build !initonly

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"snapvisor/config"
	"snapvisor/jobs"
	"snapvisor/remote"
	"snapvisor/supervisor"
)

// cmdSidecar runs the snapshot jobs with no service of ours: beside an
// unmodified image in the same pod (or compose project), sharing its volume.
func cmdSidecar(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "sidecar", "sidecar",
		"Runs the snapshot jobs without a service of its own, until TERM or INT: for an image\n"+
			"you cannot change, in a second container that mounts the same volume (a Kubernetes\n"+
			"sidecar, a compose service sharing the volume and network). The schedule, the hooks\n"+
			"(which reach the service over the network, e.g. SNAPVISOR_PRE_COMMAND='redis-cli -h\n"+
			"127.0.0.1 BGSAVE'), rotation, pushes, replication, drills, the control socket, metrics\n"+
			"and health work as beside a service; snapshots are on whether or not SNAPVISOR_BACKUP is\n"+
			"set. SNAPVISOR_FREEZE must be none: pausing or stopping the service needs it as the\n"+
			"entrypoint's child. No auto-restore (the service is already running): use\n"+
			"`entrypoint restore-if-empty` in an init container. No final snapshot at exit\n"+
			"(SNAPVISOR_ON_EXIT): the service stops on its own, out of our sight.")
	if _, done, err := parseArgs(fs, args, 0); done || err != nil {
		return err
	}
	jc := &a.cfg.Jobs
	if jc.Freeze != jobs.FreezeNone {
		e := config.Invalid("FREEZE", jc.Freeze, "none in sidecar mode")
		e.Err = fmt.Errorf("`entrypoint sidecar` has no service of its own to pause or stop: freezing needs the service as the entrypoint's child " +
			"(ENTRYPOINT [\"entrypoint\", \"--\"] in the service's image); in sidecar mode make the data consistent with a hook instead " +
			"(SNAPVISOR_PRE_COMMAND, e.g. redis-cli -h 127.0.0.1 BGSAVE), or set SNAPVISOR_FREEZE=none")
		return e
	}
	jc.Backup = true
	if err := a.cfg.validateBackup(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, unix.SIGTERM, unix.SIGINT)
	defer stop()

	metrics := jobs.NewMetrics()
	remotes, err := remote.OpenAll(ctx, a.cfg.Store, metrics.MetricsSet(), a.log)
	defer func() { _ = remote.CloseAll(remotes) }()
	if err != nil {
		// One bad remote never blocks the others or the local snapshots.
		a.log.Error("some remotes could not be opened; snapshots go to the others", zap.Error(err))
	}
	// The hooks get the environment minus snapvisor's secrets, as beside a service.
	env := serviceEnv(os.Environ(), a.cfg.serviceSecrets())
	runner := newRunner(a, nil, env, metrics, remotes)
	listeners, err := runner.Listen()
	if err != nil {
		return err
	}
	a.log.Info("sidecar: snapshot jobs running with no service of ours; TERM or INT stops them",
		zap.String("sources", strings.Join(a.snap.Sources, ",")), zap.String("schedule", jc.Schedule))
	if err := runner.Serve(ctx, listeners, jc.ExitTimeout); err != nil {
		return err
	}
	a.log.Info("sidecar: stopped")
	return nil
}

// cmdRestoreIfEmpty is the auto-restore alone, for an init container.
func cmdRestoreIfEmpty(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "restore-if-empty", "restore-if-empty",
		"Does what the entrypoint does before it starts a service, then exits: completes an\n"+
			"interrupted restore, and when the sources (SNAPVISOR_SOURCE) are empty restores the newest\n"+
			"snapshot that verifies (of SNAPVISOR_FORMAT, from SNAPVISOR_DIR or SNAPVISOR_REMOTES).\n"+
			"For a Kubernetes initContainer (or a compose service the real one depends_on) in front\n"+
			"of an image you cannot change. Prints what it restored, or why there was nothing to do.\n"+
			"Exit 0 when it restored or there was nothing to do (data present, or no snapshot\n"+
			"anywhere: a first start); non-zero when a snapshot exists but could not be restored,\n"+
			"so the service does not start on empty data.")
	if _, done, err := parseArgs(fs, args, 0); done || err != nil {
		return err
	}
	// A TERM or INT (the pod deleted during a long restore) cancels the
	// restore, which leaves nothing half-restored, and exits 128+N as a
	// service stopped before it started does.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stopped atomic.Int32
	go func() {
		select {
		case s := <-sigs:
			stopped.Store(int32(s.(syscall.Signal)))
			cancel()
		case <-ctx.Done():
		}
	}()
	stores, err := openRemotes(ctx, a)
	if err != nil {
		return err
	}
	defer func() { _ = remote.CloseAll(stores) }()
	restored, err := autoRestore(ctx, a, stores)
	if sig := syscall.Signal(stopped.Load()); err != nil && sig != 0 {
		a.log.Warn("restore-if-empty: stopped by a signal; nothing half-restored is left, the next run restores again",
			zap.String("signal", supervisor.SignalName(sig)), zap.Error(err))
		return &exitError{code: 128 + int(sig)}
	}
	if err != nil {
		return err
	}
	if restored == "" {
		fmt.Fprintf(a.stdout, "nothing to restore into %s: not empty, or no snapshot anywhere (a first start)\n", strings.Join(a.snap.Sources, ", "))
		return nil
	}
	fmt.Fprintln(a.stdout, restored)
	return nil
}
