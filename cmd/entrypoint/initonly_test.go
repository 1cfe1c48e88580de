//go:build !initonly

package main

import (
	"debug/buildinfo"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapvisor/internal/testutil"
)

// buildInitOnly builds the init-only entrypoint (go build -tags initonly, as
// make build-init, but with its symbols, for go tool nm) into dir.
func buildInitOnly(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "entrypoint-init")
	build := exec.Command("go", "build", "-tags", "initonly", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags initonly: %v\n%s", err, out)
	}
	return bin
}

// TestInitOnly_PID1: the init-only binary as PID 1 does the supervisor's
// whole job (exit codes, signals, reaping, the supervisor's variables) and
// refuses, before the service starts, what only the full build does.
func TestInitOnly_PID1(t *testing.T) {
	bin := buildInitOnly(t, t.TempDir())

	t.Run("exit codes", func(t *testing.T) {
		cases := append(exitCases(),
			exitCase{"success code", []string{"SNAPVISOR_SUCCESS_CODES=143"}, []string{"--", "sh", "-c", "exit 143"}, 0},
			exitCase{"bad supervisor variable", []string{"SNAPVISOR_STOP_TIMEOUT=soon"}, []string{"--", "true"}, exitConfig},
			exitCase{"snapshots off explicitly", []string{"SNAPVISOR_BACKUP=false"}, []string{"--", "true"}, 0})
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				p := startPID1Bin(t, bin, tc.env, tc.args...)
				if got := p.wait(t, 10*time.Second); got != tc.want {
					t.Fatalf("exit code %d, want %d; stderr:\n%s", got, tc.want, p.stderr)
				}
			})
		}
	})

	t.Run("signals forwarded", func(t *testing.T) {
		rec := filepath.Join(t.TempDir(), "signals")
		p := startPID1Bin(t, bin, []string{"SVTEST_HELPER=record", "SNAPVISOR_SIGNAL_REWRITE=USR2:WINCH"}, "--", os.Args[0], rec)
		pid1 := p.pid1(t)
		testutil.Eventually(t, 10*time.Second, "service ready", func() bool { return fileHas(rec, "ready") })
		for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2} {
			if err := syscall.Kill(pid1, sig); err != nil {
				t.Fatal(err)
			}
		}
		testutil.Eventually(t, 5*time.Second, "HUP, USR1 and USR2 (as WINCH) recorded", func() bool {
			return fileHas(rec, syscall.SIGHUP.String()) && fileHas(rec, syscall.SIGUSR1.String()) && fileHas(rec, syscall.SIGWINCH.String())
		})
		if err := syscall.Kill(pid1, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if got := p.wait(t, 10*time.Second); got != 0 {
			t.Fatalf("exit code %d, want 0; stderr:\n%s", got, p.stderr)
		}
		if !fileHas(rec, syscall.SIGTERM.String()) {
			t.Error("service did not record SIGTERM")
		}
	})

	t.Run("reaps orphans", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "zombies")
		p := startPID1Bin(t, bin, []string{"OUT=" + out}, "--", "sh", "-c", orphansScript(200))
		if got := p.wait(t, 60*time.Second); got != 0 {
			b, _ := os.ReadFile(out)
			t.Fatalf("exit code %d (zombies left: %s); stderr:\n%s", got, b, p.stderr)
		}
	})

	t.Run("full-build variables exit 78 before the start", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			env     []string
			mention []string
		}{
			{"backup on", []string{"SNAPVISOR_BACKUP=true"}, []string{"SNAPVISOR_BACKUP"}},
			{"remotes", []string{"SNAPVISOR_REMOTES=s3://bucket/x"}, []string{"SNAPVISOR_REMOTES"}},
			{"several, secret hidden", []string{"SNAPVISOR_ENCRYPTION_KEY=hunter2", "SNAPVISOR_BACKUP=1"}, []string{"SNAPVISOR_BACKUP", "SNAPVISOR_ENCRYPTION_KEY"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				marker := filepath.Join(t.TempDir(), "started")
				p := startPID1Bin(t, bin, tc.env, "--", "touch", marker)
				if got := p.wait(t, 10*time.Second); got != exitConfig {
					t.Fatalf("exit code %d, want %d; stderr:\n%s", got, exitConfig, p.stderr)
				}
				msg := p.stderr.String()
				for _, want := range append(tc.mention, "full `entrypoint` binary") {
					if !strings.Contains(msg, want) {
						t.Errorf("message lacks %q:\n%s", want, msg)
					}
				}
				if strings.Contains(msg, "hunter2") {
					t.Errorf("message shows a value:\n%s", msg)
				}
				if _, err := os.Stat(marker); err == nil {
					t.Error("the service was started")
				}
			})
		}
	})
}

// TestInitOnly_Commands: help, version and env work; the full build's
// subcommands are usage errors (64) that point at the full binary.
func TestInitOnly_Commands(t *testing.T) {
	bin := buildInitOnly(t, t.TempDir())
	run := func(args ...string) (int, string, string) {
		cmd := exec.Command(bin, args...)
		var so, se strings.Builder
		cmd.Stdout, cmd.Stderr = &so, &se
		cmd.WaitDelay = 5 * time.Second
		_ = cmd.Run()
		return cmd.ProcessState.ExitCode(), so.String(), se.String()
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"version"}, {"--version"}, {"env"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errOut := run(args...)
			if code != 0 || out == "" {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
		})
	}
	t.Run("env lists the supervisor's variables only", func(t *testing.T) {
		_, out, _ := run("env")
		if !strings.Contains(out, "SNAPVISOR_STOP_TIMEOUT") || strings.Contains(out, "SNAPVISOR_SCHEDULE") {
			t.Errorf("env:\n%s", out)
		}
	})
	for _, sub := range subcommandNames() {
		if sub == "help" || sub == "version" || sub == "env" {
			continue
		}
		t.Run(sub, func(t *testing.T) {
			code, _, errOut := run(sub)
			if code != exitUsage || !strings.Contains(errOut, "full `entrypoint` binary") {
				t.Fatalf("exit %d, want %d with the hint; stderr:\n%s", code, exitUsage, errOut)
			}
		})
	}
}

// TestInitOnly_LogLines: the init-only build writes the full build's log
// lines, key for key, in both formats.
func TestInitOnly_LogLines(t *testing.T) {
	bin := buildInitOnly(t, t.TempDir())
	lines := func(b string, env ...string) []map[string]any {
		cmd := exec.Command(b, "--", "sh", "-c", "exit 3")
		cmd.Env = append(os.Environ(), env...)
		var se strings.Builder
		cmd.Stderr = &se
		_ = cmd.Run()
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(se.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("%s: not a JSON line: %q", filepath.Base(b), l)
			}
			for _, k := range []string{"ts", "pid"} { // differ from run to run
				delete(m, k)
			}
			out = append(out, m)
		}
		return out
	}
	full, init := lines(binPath, "SNAPVISOR_LOG_LEVEL=info"), lines(bin, "SNAPVISOR_LOG_LEVEL=info")
	fj, _ := json.Marshal(full)
	ij, _ := json.Marshal(init)
	// Two lines at least: service started and exited (a third comes first
	// when the test itself runs with a signal ignored, as under nohup).
	if string(fj) != string(ij) || !strings.Contains(string(fj), `"msg":"service started"`) || !strings.Contains(string(fj), `"msg":"service exited"`) {
		t.Fatalf("full build logged\n%s\ninit-only build logged\n%s", fj, ij)
	}
	t.Run("console", func(t *testing.T) {
		for _, b := range []string{binPath, bin} {
			cmd := exec.Command(b, "--", "true")
			cmd.Env = append(os.Environ(), "SNAPVISOR_LOG_LEVEL=info", "SNAPVISOR_LOG_FORMAT=console")
			out, _ := cmd.CombinedOutput()
			if !strings.Contains(string(out), "INFO snapvisor service started") {
				t.Errorf("%s console line: %q", filepath.Base(b), out)
			}
		}
	})
}

// TestInitOnly_Links: nothing of the full build is linked into the
// init-only binary: no store, encryption, scheduler, metrics, notification,
// restic or git module (go version -m), none of our packages beyond the
// supervisor's (go tool nm), and not package zap, which brings net/http.
func TestInitOnly_Links(t *testing.T) {
	bin := buildInitOnly(t, t.TempDir())
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(info.Settings, func(s debug.BuildSetting) bool { return s.Key == "-tags" && s.Value == "initonly" }) {
		t.Errorf("build settings lack -tags=initonly: %v", info.Settings)
	}
	for _, d := range info.Deps {
		for _, banned := range []string{"minio", "Azure", "go-co-op", "VictoriaMetrics", "klauspost", "filippo.io/age", "shoutrrr", "go-git", "restic", "pgx", "redis", "sqlite", "sftp", "ProtonMail", "progressbar"} {
			if strings.Contains(d.Path, banned) {
				t.Errorf("module %s is linked in", d.Path)
			}
		}
	}
	out, err := exec.Command("go", "tool", "nm", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool nm: %v\n%s", err, out)
	}
	for _, pkg := range []string{"snapvisor/snapshot.", "snapvisor/store.", "snapvisor/jobs.", "snapvisor/seal.", "snapvisor/remote.", "snapvisor/restic.", "snapvisor/gitsnap.", "snapvisor/rotation.", "go.uber.org/zap.", "net/http.", "crypto/tls."} {
		if strings.Contains(string(out), " "+pkg) {
			t.Errorf("symbols of %s are linked in", strings.TrimSuffix(pkg, "."))
		}
	}
}

// TestSubcommandNames: the names both builds know are exactly the full
// build's subcommands.
func TestSubcommandNames(t *testing.T) {
	names := slices.Sorted(maps.Keys(commands()))
	if want := slices.Sorted(slices.Values(subcommandNames())); !slices.Equal(names, want) {
		t.Fatalf("commands() has %v, subcommandNames() %v", names, want)
	}
}
