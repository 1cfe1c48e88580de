package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"snapvisor/internal/testutil"
)

func newSup(t *testing.T, argv ...string) *Supervisor {
	t.Helper()
	s, err := New(Config{StopTimeout: 2 * time.Second}, argv, os.Environ(), zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type result struct {
	st  Status
	err error
}

// runAsync runs s; cancelling the returned func is the same as a SIGTERM.
func runAsync(t *testing.T, s *Supervisor) (<-chan result, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch := make(chan result, 1)
	go func() {
		st, err := s.Run(ctx)
		ch <- result{st, err}
	}()
	select {
	case <-s.Started():
	case r := <-ch:
		t.Fatalf("Run returned before start: %v", r.err)
	case <-time.After(5 * time.Second):
		t.Fatal("service did not start")
	}
	return ch, cancel
}

func waitResult(t *testing.T, ch <-chan result) Status {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.st
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	return Status{}
}

func procState(pid int) byte {
	_, st, _ := statOf(pid)
	return st
}

// TestSupervisor_Exec runs many hooks while the service keeps producing
// orphans that the reaper collects: every hook must get its own exit status.
func TestSupervisor_Exec(t *testing.T) {
	s := newSup(t, "sh", "-c", "while :; do ( sh -c 'exit 7' & ); sleep 0.005; done")
	ch, term := runAsync(t, s)

	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var out bytes.Buffer
			code := i % 50
			st, err := s.Exec(context.Background(), []string{"sh", "-c", fmt.Sprintf("echo hook %d; exit %d", i, code)}, nil, &out)
			if err != nil {
				errs <- err
				return
			}
			if st.Code() != code {
				errs <- fmt.Errorf("hook %d: status %v, want exit %d", i, st, code)
			}
			if !strings.Contains(out.String(), fmt.Sprintf("hook %d", i)) {
				errs <- fmt.Errorf("hook %d: output %q not captured", i, out.String())
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s.OrphansReaped() == 0 {
		t.Error("no orphans were reaped while hooks ran")
	}
	if err := s.Pause(); err != nil { // must not disturb the final exit below
		t.Fatal(err)
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	term()
	if st := waitResult(t, ch); st.Code() != 128+15 {
		t.Errorf("service status %v, want killed by TERM", st)
	}

	t.Run("timeout kills the hook's group", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		r := newReaper(zap.NewNop())
		stop := make(chan struct{})
		defer close(stop)
		go func() { // stand-in for the SIGCHLD loop
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
					r.reap()
				}
			}
		}()
		start := time.Now()
		st, err := execHelper(ctx, r, []string{"sh", "-c", "sleep 30 & sleep 30"}, nil, nil)
		if err == nil || !st.Signaled() {
			t.Fatalf("got %v, %v; want a killed hook and a deadline error", st, err)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("hook was not stopped at its deadline")
		}
	})
}

func TestSupervisor_ExecAfterRun(t *testing.T) {
	// A post-hook may run after the service (and Run's reaping loop) ended.
	s := newSup(t, "sleep", "30")
	ch, term := runAsync(t, s)
	term()
	waitResult(t, ch)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.Exec(ctx, []string{"sh", "-c", "exit 3"}, nil, nil)
	if err != nil || st.Code() != 3 {
		t.Fatalf("Exec after Run: %v, %v; want exit 3 and no error", st, err)
	}
}

func TestSupervisor_JobControl(t *testing.T) {
	t.Run("other signals leave a paused service paused", func(t *testing.T) {
		ready := t.TempDir() + "/ready" // the traps are set: a HUP can no longer kill it
		s := newSup(t, "sh", "-c", "trap '' HUP USR1; touch "+ready+"; sleep 30 & wait")
		ch, term := runAsync(t, s)
		waitFile(t, ready)
		pid := s.PID()
		if err := s.Pause(); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, "service stopped (T)", func() bool { return procState(pid) == 'T' })
		s.onSignal(syscall.SIGHUP)
		s.onSignal(syscall.SIGUSR1)
		time.Sleep(50 * time.Millisecond) // give a wrong SIGCONT time to act
		if s.State() != StatePaused || procState(pid) != 'T' {
			t.Fatalf("after HUP/USR1: state %s, proc %c; want still paused", s.State(), procState(pid))
		}
		term() // a stop signal does resume it
		if st := waitResult(t, ch); st.Code() != 128+15 {
			t.Errorf("status %v, want killed by TERM", st)
		}
	})
	t.Run("TERM reaches a service stopped by TSTP", func(t *testing.T) {
		s := newSup(t, "sleep", "30")
		ch, _ := runAsync(t, s)
		pid := s.PID()
		s.onSignal(syscall.SIGTSTP)
		testutil.Eventually(t, 5*time.Second, "service stopped by TSTP", func() bool { return procState(pid) == 'T' })
		start := time.Now()
		s.onSignal(syscall.SIGTERM)
		st := waitResult(t, ch)
		if st.Code() != 128+15 {
			t.Errorf("status %v, want killed by TERM (not KILL after the stop timeout)", st)
		}
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("TERM took %v: the stopped service was not continued", d)
		}
	})
}

func TestSupervisor_PauseResume(t *testing.T) {
	s := newSup(t, "sh", "-c", "sleep 30 & wait")
	ch, term := runAsync(t, s)
	pid := s.PID()
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "service stopped (T)", func() bool { return procState(pid) == 'T' })
	if s.State() != StatePaused {
		t.Errorf("state %s, want paused", s.State())
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "service running again", func() bool { st := procState(pid); return st == 'S' || st == 'R' })
	// A stop signal to a paused service resumes it so it can act on TERM.
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	term()
	if st := waitResult(t, ch); st.Code() != 128+15 {
		t.Errorf("status %v, want killed by TERM", st)
	}
}

func TestSupervisor_StopStart(t *testing.T) {
	ready := t.TempDir() + "/ready"
	s := newSup(t, "sh", "-c", "trap 'exit 0' TERM; touch "+ready+"; while :; do sleep 0.05; done")
	ch, term := runAsync(t, s)
	waitFile(t, ready)
	first := s.PID()
	st, err := s.Stop(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Code() != 0 {
		t.Errorf("stop status %v, want exit 0", st)
	}
	if s.State() != StateStopped {
		t.Errorf("state %s, want stopped", s.State())
	}
	select {
	case r := <-ch:
		t.Fatalf("Run returned after a planned stop: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	if err := os.Remove(ready); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, ready)
	if s.PID() == first || s.State() != StateRunning || s.Restarts() != 1 {
		t.Fatalf("after Start: pid %d (first %d), state %s, restarts %d", s.PID(), first, s.State(), s.Restarts())
	}
	term()
	if st := waitResult(t, ch); st.Code() != 0 {
		t.Errorf("final status %v, want exit 0", st)
	}
	if _, err := s.Stop(context.Background()); err != ErrShuttingDown {
		t.Errorf("Stop after exit: %v, want ErrShuttingDown", err)
	}

	t.Run("stop signal while stopped ends Run", func(t *testing.T) {
		ready := t.TempDir() + "/ready"
		s := newSup(t, "sh", "-c", "trap 'exit 0' TERM; touch "+ready+"; while :; do sleep 0.05; done")
		ch, term := runAsync(t, s)
		waitFile(t, ready)
		if _, err := s.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		term()
		if st := waitResult(t, ch); st.Code() != 0 {
			t.Errorf("status %v, want the stopped service's exit 0", st)
		}
		if err := s.Start(); err != ErrShuttingDown {
			t.Errorf("Start after shutdown: %v, want ErrShuttingDown", err)
		}
	})

	t.Run("failed restart ends Run with the start error", func(t *testing.T) {
		dir := t.TempDir()
		ready, script := dir+"/ready", dir+"/service.sh"
		if err := os.WriteFile(script, []byte("#!/bin/sh\ntrap 'exit 0' TERM; touch "+ready+"; while :; do sleep 0.05; done\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		s := newSup(t, script)
		ch, _ := runAsync(t, s)
		waitFile(t, ready)
		if _, err := s.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(script); err != nil { // the image lost its binary, say
			t.Fatal(err)
		}
		if err := s.Start(); err == nil {
			t.Fatal("Start of a missing program succeeded")
		}
		select {
		case r := <-ch:
			var se *StartError
			if !errors.As(r.err, &se) || se.Code != 127 {
				t.Errorf("Run returned %v, %v; want a StartError with code 127", r.st, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after a failed restart: the container would hang without its service")
		}
	})
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, path+" exists", func() bool { _, err := os.Stat(path); return err == nil })
}
