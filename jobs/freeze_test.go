package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"snapvisor/internal/testutil"
	"snapvisor/rotation"
	"snapvisor/supervisor"
)

// requireRoot fails in CI (which runs as root) and skips elsewhere.
func requireRoot(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t, "this test mounts a filesystem: it")
}

// loopExt4 mounts a fresh 64 MiB ext4 filesystem (lost+found included, as on
// a new volume) on a temporary directory; it is thawed and unmounted at
// cleanup.
func loopExt4(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{{"truncate", "-s", "64M", img}, {"mkfs.ext4", "-q", "-F", img}, {"mount", "-o", "loop", img, mnt}} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", argv, err, out)
		}
	}
	t.Cleanup(func() {
		_ = exec.Command("fsfreeze", "-u", mnt).Run()
		// A run stuck on the frozen filesystem may hold it for a moment after the thaw.
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := exec.Command("umount", mnt).CombinedOutput()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				_ = exec.Command("umount", "-l", mnt).Run()
				t.Errorf("umount %s: %v: %s", mnt, err, out)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	return mnt
}

// slowStart is the real supervisor whose Start waits for gate: a service
// that cannot be started again (yet).
type slowStart struct {
	*supervisor.Supervisor
	gate chan struct{}
}

func (s *slowStart) Start() error {
	<-s.gate
	return s.Supervisor.Start()
}

// TestRunner_FreezeStopHungIO is finding 4: with FREEZE=stop and the
// snapshot directory's filesystem frozen (hung I/O), the service must run
// again at SNAPVISOR_FREEZE_TIMEOUT, not when the I/O comes back.
func TestRunner_FreezeStopHungIO(t *testing.T) {
	// The volume first: its mount commands (and its unmount at cleanup,
	// which then runs last) must not run while the fixture's supervisor
	// reaps every exited child of the test process.
	// So must the freeze: its Wait failed with "waitid: no child processes"
	// once in 40 runs when it came after the fixture.
	mnt := loopExt4(t)
	backups := filepath.Join(mnt, "backups")
	if err := os.Mkdir(backups, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("fsfreeze", "-f", mnt).CombinedOutput(); err != nil {
		t.Fatalf("fsfreeze: %v: %s", err, out)
	}
	f := newFixture(t, Config{}, looping)
	f.snap.Dir = backups
	core, logs := observer.New(zap.InfoLevel)
	const timeout = time.Second
	r := NewRunner(Config{Freeze: FreezeStop, FreezeTimeout: timeout, HookTimeout: 5 * time.Second},
		f.snap, rotation.Policy{Keep: 10}, f.sup, f.env, zap.New(core), nil)
	first := f.sup.PID()
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			if err := fsThaw(mnt); err != nil {
				t.Error(err)
			}
		}
	}
	defer thaw()

	start := time.Now()
	done := make(chan Result, 1)
	go func() { res, _ := r.Trigger(context.Background(), "test"); done <- res }()
	testutil.Eventually(t, 5*time.Second, "the service stopped for the snapshot", func() bool { return f.sup.PID() != first || f.sup.State() == supervisor.StateStopped })
	testutil.Eventually(t, timeout+5*time.Second, "the service running again while the archive is stuck", func() bool {
		return f.sup.State() == supervisor.StateRunning && f.sup.PID() != first
	})
	if d := time.Since(start); d < timeout {
		t.Errorf("service started again after %v, before SNAPVISOR_FREEZE_TIMEOUT (%v)", d, timeout)
	}
	select {
	case res := <-done:
		t.Fatalf("the run ended while the filesystem was frozen: %+v", res)
	default:
	}
	if st := r.status(time.Time{}, time.Hour); st.Service != string(supervisor.StateRunning) || !st.Running {
		t.Errorf("status while the archive is stuck: %+v, want the service running and the run in progress", st)
	}

	thaw()
	var res Result
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not end after the thaw")
	}
	if res.OK() || !strings.Contains(res.Error, "abandoned at SNAPVISOR_FREEZE_TIMEOUT") {
		t.Errorf("run past SNAPVISOR_FREEZE_TIMEOUT: %+v, want it abandoned, saying so", res)
	}
	if n := logs.FilterMessage("service started again").Len(); n != 1 {
		t.Errorf("service started again %d times, want exactly once", n)
	}
	if got := f.sup.Restarts(); got != 1 {
		t.Errorf("supervisor restarts %d, want 1", got)
	}
}

// TestRunner_FrozenTooLongIsUnhealthy: a service stopped for a snapshot
// longer than SNAPVISOR_FREEZE_TIMEOUT (it could not be started again) is
// unhealthy; within the timeout it is not.
func TestRunner_FrozenTooLongIsUnhealthy(t *testing.T) {
	f := newFixture(t, Config{}, looping)
	svc := &slowStart{Supervisor: f.sup, gate: make(chan struct{})}
	const timeout = 300 * time.Millisecond
	r := NewRunner(Config{Freeze: FreezeStop, FreezeTimeout: timeout, HookTimeout: 5 * time.Second, HealthGrace: time.Hour},
		f.snap, rotation.Policy{Keep: 10}, svc, f.env, zap.NewNop(), nil)
	done := make(chan Result, 1)
	go func() { res, _ := r.Trigger(context.Background(), "test"); done <- res }()
	testutil.Eventually(t, 5*time.Second, "the service stopped for the snapshot", func() bool { return f.sup.State() == supervisor.StateStopped })
	testutil.Eventually(t, timeout+5*time.Second, "unhealthy: stopped past SNAPVISOR_FREEZE_TIMEOUT", func() bool {
		st := r.status(time.Time{}, time.Hour)
		return !st.Healthy && strings.Contains(st.Problem, "SNAPVISOR_FREEZE_TIMEOUT")
	})
	close(svc.gate)
	<-done
	testutil.Eventually(t, 5*time.Second, "healthy once the service runs again", func() bool {
		return r.status(time.Time{}, time.Hour).Healthy
	})
}

// TestRunner_FailureLog is finding 18's "the service is untouched" after a
// FREEZE=stop run: a failed run says what happened to the service.
func TestRunner_FailureLog(t *testing.T) {
	for _, tc := range []struct {
		freeze, want string
	}{
		{FreezeNone, "left untouched"},
		{FreezePause, "paused and resumed"},
		{FreezeStop, "stopped and started again"},
	} {
		t.Run(tc.freeze, func(t *testing.T) {
			f := newFixture(t, Config{}, looping)
			// DIR under a regular file: the archive phase fails.
			blocker := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(blocker, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			f.snap.Dir = filepath.Join(blocker, "backups")
			core, logs := observer.New(zap.InfoLevel)
			r := NewRunner(Config{Freeze: tc.freeze, FreezeTimeout: 10 * time.Second, HookTimeout: 5 * time.Second},
				f.snap, rotation.Policy{Keep: 10}, f.sup, f.env, zap.New(core), nil)
			if res, _ := r.Trigger(context.Background(), "test"); res.OK() || res.Error == "" {
				t.Fatalf("run: %+v, want a failure", res)
			}
			failed := logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessageSnippet("snapshot failed").All()
			if len(failed) != 1 || !strings.Contains(failed[0].Message, tc.want) || failed[0].ContextMap()["service"] != tc.want {
				t.Fatalf("failure log %+v, want one saying the service was %q", failed, tc.want)
			}
		})
	}
}

// TestRunner_ShuttingDown: a scheduled FREEZE=stop run that meets a stop
// signal (docker stop) is skipped with an info line, not an ERROR.
func TestRunner_ShuttingDown(t *testing.T) {
	// The service takes its time to stop: TERM is ignored until the stop
	// timeout kills it, so the run meets a supervisor that is shutting down.
	f := newFixture(t, Config{}, `trap '' TERM; touch "$READY"; while :; do sleep 0.05; done`)
	core, logs := observer.New(zap.DebugLevel)
	r := NewRunner(Config{Freeze: FreezeStop, FreezeTimeout: 10 * time.Second, HookTimeout: 5 * time.Second},
		f.snap, rotation.Policy{Keep: 10}, f.sup, f.env, zap.New(core), nil)
	f.stop()
	testutil.Eventually(t, 5*time.Second, "the supervisor shutting down", func() bool {
		// Start of a running service changes nothing; it names the shutdown first.
		return errors.Is(f.sup.Start(), supervisor.ErrShuttingDown)
	})
	res, _ := r.Trigger(context.Background(), "schedule")
	if res.OK() || res.Error != "" || !strings.Contains(res.Skipped, "shutting down") {
		t.Fatalf("run during shutdown: %+v, want skipped (shutting down), no error", res)
	}
	if errs := logs.FilterLevelExact(zapcore.ErrorLevel).All(); len(errs) > 0 {
		t.Errorf("ERROR lines for a run skipped at shutdown: %+v", errs)
	}
	if n := logs.FilterLevelExact(zapcore.InfoLevel).FilterMessage("snapshot skipped: the service is shutting down").Len(); n != 1 {
		t.Errorf("%d info lines saying the run was skipped, want 1: %+v", n, logs.All())
	}
}

// fsThaw runs fsfreeze -u on mnt. The supervisor under test reaps every
// child of this process, fsfreeze's too, so its Wait may see ECHILD after
// it ran: then a second fsfreeze -u saying "Invalid argument" (not frozen)
// proves the thaw.
func fsThaw(mnt string) error {
	reaped := false
	for range 5 {
		out, err := exec.Command("fsfreeze", "-u", mnt).CombinedOutput()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.ECHILD):
			reaped = true
		case reaped && strings.Contains(string(out), "Invalid argument"):
			return nil
		default:
			return fmt.Errorf("fsfreeze -u: %v: %s", err, out)
		}
	}
	return fmt.Errorf("fsfreeze -u %s: reaped by the supervisor five times", mnt)
}
