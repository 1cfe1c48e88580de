package supervisor

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"snapvisor/config"
	"snapvisor/internal/testutil"
)

func TestStatus_String(t *testing.T) {
	for _, tc := range []struct {
		ws   unix.WaitStatus
		want string
	}{
		{unix.WaitStatus(9), "killed by SIGKILL"},
		{unix.WaitStatus(15), "killed by SIGTERM"},
		{unix.WaitStatus(11 | 0x80), "killed by SIGSEGV"}, // with a core dump
		{unix.WaitStatus(40), "killed by signal 40"},
		{unix.WaitStatus(3 << 8), "exit code 3"},
		{unix.WaitStatus(0), "exit code 0"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := (Status{tc.ws}).String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want syscall.Signal
		bad  bool
	}{
		{in: "15", want: unix.SIGTERM},
		{in: "TERM", want: unix.SIGTERM},
		{in: "SIGTERM", want: unix.SIGTERM},
		{in: " quit ", want: unix.SIGQUIT},
		{in: "0", want: 0},
		{in: "64", want: 64},
		{in: "65", bad: true},
		{in: "-1", bad: true},
		{in: "FOO", bad: true},
		{in: "", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSignal(tc.in)
			if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
				t.Errorf("parseSignal(%q) = %v, %v; want %v (error: %v)", tc.in, got, err, tc.want, tc.bad)
			}
		})
	}
}

func TestParseSignalRewrite(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[syscall.Signal]syscall.Signal
		bad  string // part of the error
	}{
		{in: "", want: map[syscall.Signal]syscall.Signal{}},
		{in: "15:3,2:3", want: map[syscall.Signal]syscall.Signal{15: 3, 2: 3}},
		{in: "TERM:QUIT, sigint:3 ,", want: map[syscall.Signal]syscall.Signal{15: 3, 2: 3}},
		{in: "HUP:0", want: map[syscall.Signal]syscall.Signal{1: 0}},
		{in: "SEGV:TERM,40:9", want: map[syscall.Signal]syscall.Signal{11: 15, 40: 9}},
		{in: "15", bad: "FROM:TO"},
		{in: "15:99", bad: "out of range"},
		{in: "FOO:3", bad: "unknown signal"},
		{in: "9:3", bad: "never forwarded"},
		{in: "CHLD:3", bad: "never forwarded"},
		{in: "URG:3", bad: "never forwarded"},
		{in: "0:3", bad: "never forwarded"},
		{in: "34:3", bad: "never forwarded"},
		{in: "15:3,TERM:2", bad: "twice"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSignalRewrite(tc.in)
			if tc.bad != "" {
				if err == nil || !strings.Contains(err.Error(), tc.bad) {
					t.Fatalf("parseSignalRewrite(%q) error %v, want one saying %q", tc.in, err, tc.bad)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("parseSignalRewrite(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%v rewritten to %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

func TestParseSuccessCodes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		bad  bool
	}{
		{in: "", want: nil},
		{in: "143", want: []int{143}},
		{in: "130, 143,0", want: []int{130, 143, 0}},
		{in: "255", want: []int{255}},
		{in: "256", bad: true},
		{in: "-1", bad: true},
		{in: "abc", bad: true},
		{in: "1.5", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSuccessCodes(tc.in)
			if (err != nil) != tc.bad || len(got) != len(tc.want) {
				t.Fatalf("parseSuccessCodes(%q) = %v, %v; want %v (error: %v)", tc.in, got, err, tc.want, tc.bad)
			}
			for _, c := range tc.want {
				if !got[c] {
					t.Errorf("%d missing", c)
				}
			}
		})
	}
}

func TestConfig_Validate(t *testing.T) {
	ok := Config{StopTimeout: time.Second}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		v    string
	}{
		{"stop timeout", Config{}, "SNAPVISOR_STOP_TIMEOUT"},
		{"rewrite", Config{StopTimeout: time.Second, SignalRewrite: "15:x"}, "SNAPVISOR_SIGNAL_REWRITE"},
		{"success codes", Config{StopTimeout: time.Second, SuccessCodes: "300"}, "SNAPVISOR_SUCCESS_CODES"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ce *config.Error
			if err := tc.cfg.Validate(); !errors.As(err, &ce) || ce.Var != tc.v {
				t.Fatalf("Validate() = %v, want a config error naming %s", err, tc.v)
			}
		})
	}
}

// TestNew_ValidatedConfig: New uses what Validate parsed and does not parse
// SIGNAL_REWRITE and SUCCESS_CODES again (the texts changed after Validate
// are not looked at); an unvalidated Config is still validated by New.
func TestNew_ValidatedConfig(t *testing.T) {
	cfg := Config{StopTimeout: time.Second, SignalRewrite: "TERM:QUIT", SuccessCodes: "143"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.SignalRewrite, cfg.SuccessCodes = "not parsed again", "nor this"
	s, err := New(cfg, []string{"true"}, nil, zap.NewNop())
	if err != nil {
		t.Fatalf("New(validated) = %v, want the values Validate parsed", err)
	}
	if got := s.forwardAs(unix.SIGTERM); got != unix.SIGQUIT {
		t.Errorf("forwardAs(TERM) = %v, want QUIT (from Validate)", got)
	}
	if got := s.ExitCode(Status{unix.WaitStatus(143 << 8)}); got != 0 {
		t.Errorf("ExitCode(143) = %d, want 0 (from Validate)", got)
	}
	var ce *config.Error
	if _, err := New(Config{StopTimeout: time.Second, SuccessCodes: "300"}, []string{"true"}, nil, zap.NewNop()); !errors.As(err, &ce) || ce.Var != "SNAPVISOR_SUCCESS_CODES" {
		t.Errorf("New(unvalidated, bad) = %v, want a config error naming SNAPVISOR_SUCCESS_CODES", err)
	}
}

func TestSupervisor_ExitCode(t *testing.T) {
	s, err := New(Config{StopTimeout: time.Second, SuccessCodes: "143,3"}, []string{"true"}, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ws   unix.WaitStatus
		want int
	}{
		{unix.WaitStatus(15), 0},       // killed by TERM: 143
		{unix.WaitStatus(143 << 8), 0}, // exit 143
		{unix.WaitStatus(3 << 8), 0},
		{unix.WaitStatus(4 << 8), 4},
		{unix.WaitStatus(9), 137},
	} {
		if got := s.ExitCode(Status{tc.ws}); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", Status{tc.ws}, got, tc.want)
		}
	}
}

func TestSupervisor_forwardAs(t *testing.T) {
	s, err := New(Config{StopTimeout: time.Second, SignalRewrite: "TERM:QUIT,HUP:0"}, []string{"true"}, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for from, want := range map[syscall.Signal]syscall.Signal{unix.SIGTERM: unix.SIGQUIT, unix.SIGHUP: 0, unix.SIGUSR1: unix.SIGUSR1} {
		if got := s.forwardAs(from); got != want {
			t.Errorf("forwardAs(%v) = %v, want %v", from, got, want)
		}
	}
}

// TestSupervisor_Before covers a stop signal before the service starts.
// Real signals go to this test process: Before registers for them first,
// and Run (which every subtest calls) unregisters them.
func TestSupervisor_Before(t *testing.T) {
	newS := func(t *testing.T, marker string) *Supervisor {
		s, err := New(Config{StopTimeout: 2 * time.Second}, []string{"touch", marker}, os.Environ(), zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("TERM during the work cancels it and the service is not started", func(t *testing.T) {
		marker := t.TempDir() + "/started"
		s := newS(t, marker)
		workErr := errors.New("cut short")
		err := s.Before(context.Background(), func(ctx context.Context) error {
			if err := unix.Kill(os.Getpid(), unix.SIGTERM); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return workErr
			case <-time.After(10 * time.Second):
				return errors.New("not cancelled")
			}
		})
		var se *StoppedError
		if !errors.As(err, &se) || se.Signal != unix.SIGTERM || se.Code() != 143 || !errors.Is(se.Err, workErr) {
			t.Fatalf("Before = %v, want a StoppedError for SIGTERM holding the work's error", err)
		}
		_, err = s.Run(context.Background())
		if !errors.As(err, &se) {
			t.Fatalf("Run after a stop = %v, want a StoppedError", err)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatal("the service was started")
		}
	})
	t.Run("INT after the work, before Run: the service is not started", func(t *testing.T) {
		marker := t.TempDir() + "/started"
		s := newS(t, marker)
		if err := s.Before(context.Background(), func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if err := unix.Kill(os.Getpid(), unix.SIGINT); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, "SIGINT queued for Run", func() bool { return len(s.sig.fwd) > 0 })
		_, err := s.Run(context.Background())
		var se *StoppedError
		if !errors.As(err, &se) || se.Signal != unix.SIGINT || se.Code() != 130 {
			t.Fatalf("Run = %v, want a StoppedError for SIGINT", err)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatal("the service was started")
		}
	})
	t.Run("other signals are dropped and the service starts", func(t *testing.T) {
		marker := t.TempDir() + "/started"
		core, logs := observer.New(zap.DebugLevel)
		s, err := New(Config{StopTimeout: 2 * time.Second}, []string{"touch", marker}, os.Environ(), zap.New(core))
		if err != nil {
			t.Fatal(err)
		}
		err = s.Before(context.Background(), func(context.Context) error {
			if err := unix.Kill(os.Getpid(), unix.SIGUSR1); err != nil {
				return err
			}
			// Sent during the work, it must be dropped, not queued for the service.
			testutil.Eventually(t, 5*time.Second, "SIGUSR1 dropped", func() bool {
				return logs.FilterField(zap.String("signal", "SIGUSR1")).Len() > 0
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		st, err := s.Run(context.Background())
		if err != nil || st.Code() != 0 {
			t.Fatalf("Run = %v, %v; want the service's exit 0", st, err)
		}
		if _, err := os.Stat(marker); err != nil {
			t.Fatal("the service was not started")
		}
	})
	t.Run("the work's error is returned", func(t *testing.T) {
		s := newS(t, t.TempDir()+"/started")
		boom := errors.New("boom")
		if err := s.Before(context.Background(), func(context.Context) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("Before = %v, want %v", err, boom)
		}
		_, _ = s.Run(context.Background()) // unregisters
	})
}

// TestSupervisor_StopRewritten: a planned stop (freeze=stop) sends what a
// TERM is rewritten to, so a service that stops gracefully on another signal
// gets that one.
func TestSupervisor_StopRewritten(t *testing.T) {
	for _, tc := range []struct {
		rewrite string
		want    int
	}{
		{"TERM:USR1", 0},     // the trap's clean exit
		{"TERM:0", 128 + 15}, // "do not forward" does not apply: TERM
	} {
		t.Run(tc.rewrite, func(t *testing.T) {
			ready := t.TempDir() + "/ready"
			s, err := New(Config{StopTimeout: 5 * time.Second, SignalRewrite: tc.rewrite},
				[]string{"sh", "-c", "trap 'exit 0' USR1; touch " + ready + "; while :; do sleep 0.05; done"},
				os.Environ(), zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
			if err != nil {
				t.Fatal(err)
			}
			ch, term := runAsync(t, s)
			waitFile(t, ready)
			st, err := s.Stop(context.Background())
			if err != nil || st.Code() != tc.want {
				t.Fatalf("Stop = %v, %v; want code %d", st, err, tc.want)
			}
			term()
			waitResult(t, ch)
		})
	}
}
