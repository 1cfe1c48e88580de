//go:build !initonly

package main

import (
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"snapvisor/internal/testutil"
	"snapvisor/store/storetest"
)

func sockPath(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "ctl.sock")
}

func redisCLI(port int, args ...string) (string, error) {
	out, err := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(port)}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// snapshots lists the complete snapshot archives in dir, sorted.
func snapshots(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "snapshot-*.tar.gz"))
	var out []string
	for _, f := range m {
		if _, err := os.Stat(f + ".sha256"); err == nil {
			out = append(out, filepath.Base(f))
		}
	}
	sort.Strings(out)
	return out
}

// redisArgv is the entrypoint's command line for a redis-server on port with
// its data in data (created), no saves of its own (the hook's BGSAVE only).
func redisArgv(t *testing.T, port int, data string) []string {
	t.Helper()
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{"--", "redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", data, "--save", "", "--appendonly", "no"}
}

// writeKeys waits until redis answers and writes key:0..99 = value-0..99,
// the data requireRestoredFirst looks for.
func writeKeys(t *testing.T, port int) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "redis answers", func() bool { out, _ := redisCLI(port, "PING"); return out == "PONG" })
	for i := 0; i < 100; i++ {
		if out, err := redisCLI(port, "SET", fmt.Sprintf("key:%d", i), fmt.Sprintf("value-%d", i)); err != nil || out != "OK" {
			t.Fatalf("SET: %q %v", out, err)
		}
	}
}

// requireRestoredFirst checks that redis's very first answer already holds the
// restored data (key:42 of the 100 keys the tests write): the restore finished
// before redis started.
func requireRestoredFirst(t *testing.T, port int, within time.Duration) {
	t.Helper()
	var first string
	testutil.Eventually(t, within, "redis answers", func() bool {
		out, err := redisCLI(port, "GET", "key:42")
		if err != nil || strings.Contains(out, "Connection refused") || strings.Contains(out, "LOADING") {
			return false
		}
		first = out
		return true
	})
	if first != "value-42" {
		t.Fatalf("first answer of redis was %q, want value-42: it started before the restore finished", first)
	}
	if out, _ := redisCLI(port, "DBSIZE"); out != "100" {
		t.Errorf("DBSIZE %s, want 100", out)
	}
}

// redisBGSAVE is the framework document's consistency hook: BGSAVE, then
// wait until LASTSAVE changes. LASTSAVE counts whole seconds, so the hook
// first lets the clock leave the second of the previous save.
func redisBGSAVE(port int) string {
	return fmt.Sprintf(`b=$(redis-cli -p %[1]d LASTSAVE); while [ "$(date +%%s)" -le "$b" ]; do sleep 0.05; done; redis-cli -p %[1]d BGSAVE; while [ "$(redis-cli -p %[1]d LASTSAVE)" = "$b" ]; do sleep 0.05; done`, port)
}

// TestEntrypoint_RedisSnapshots: PID 1 wrapping redis-server, @every 2s with
// the BGSAVE hook; snapshots appear, rotation keeps exactly KEEP, redis
// answers throughout; then the data directory is wiped and the keys are back
// before redis accepts connections.
func TestEntrypoint_RedisSnapshots(t *testing.T) {
	requireRoot(t)
	testutil.RequireTool(t, "redis-server")
	testutil.RequireTool(t, "redis-cli")
	root := t.TempDir()
	data, backups := filepath.Join(root, "data"), filepath.Join(root, "backups")
	port := storetest.FreePort(t)
	env := []string{
		"SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@every 2s", "SNAPVISOR_KEEP=2",
		"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + backups, "SNAPVISOR_CONTROL_SOCKET=" + sockPath(t),
		"SNAPVISOR_PRE_COMMAND=" + redisBGSAVE(port),
	}
	redis := redisArgv(t, port, data)
	p := startPID1(t, env, redis...)
	pid1 := p.pid1(t)
	writeKeys(t, port)
	// Watch redis while snapshots are taken: every PING must answer.
	seen := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(seen) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d snapshots within 30s; stderr:\n%s", len(seen), p.stderr)
		}
		if out, err := redisCLI(port, "PING"); out != "PONG" {
			t.Fatalf("redis did not answer during snapshots: %q %v", out, err)
		}
		for _, s := range snapshots(t, backups) {
			seen[s] = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	testutil.Eventually(t, 5*time.Second, "rotation keeps exactly KEEP=2", func() bool { return len(snapshots(t, backups)) == 2 })
	_ = syscall.Kill(pid1, syscall.SIGTERM)
	if got := p.wait(t, 15*time.Second); got != 0 {
		t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
	}
	if n := len(snapshots(t, backups)); n != 2 {
		t.Errorf("%d snapshots after stop, want 2", n)
	}

	t.Run("wiped data is restored before redis accepts connections", func(t *testing.T) {
		if err := os.RemoveAll(data); err != nil {
			t.Fatal(err)
		}
		p := startPID1(t, env, redis...)
		pid1 := p.pid1(t)
		requireRestoredFirst(t, port, 15*time.Second)
		_ = syscall.Kill(pid1, syscall.SIGTERM)
		if got := p.wait(t, 15*time.Second); got != 0 {
			t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
		}
	})
}

// writeSlowData fills dir with n MiB of random words: text that gzip level 9
// works hard on (about 30 MiB/s on 2 cores), so a snapshot of enough of it
// lasts long enough to be observed and to outlast a short freeze timeout.
func writeSlowData(t *testing.T, dir string, mib int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	words := strings.Fields("alpha beta gamma delta redis snapshot key: value 0 1 2 3 4 5 6 7 8 9")
	buf := make([]byte, 0, 1<<20)
	for i := 0; i < mib; i++ {
		buf = buf[:0]
		for len(buf) < 1<<20 {
			buf = append(buf, words[mrand.IntN(len(words))]...)
			buf = append(buf, " \n"[mrand.IntN(2)])
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("text-%03d", i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// serviceChild is the host PID of the service: PID 1's only child.
func serviceChild(t *testing.T, pid1 int) int {
	t.Helper()
	var pid int
	testutil.Eventually(t, 5*time.Second, "service process appears", func() bool {
		// Any thread of the Go runtime may have forked it: read every task's
		// children. The runtime's own short-lived children (the pidfd check
		// before the first exec forks the entrypoint's image and exits) are
		// not the service: a child still running the entrypoint, or already
		// a zombie, is passed over.
		self, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid1))
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid1))
		for _, tf := range tasks {
			b, _ := os.ReadFile(tf)
			for _, f := range strings.Fields(string(b)) {
				child, _ := strconv.Atoi(f)
				exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", child))
				if st := procStateOf(child); err != nil || exe == self || st == "Z" || st == "" {
					continue
				}
				pid = child
				return true
			}
		}
		return false
	})
	return pid
}

func procStateOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

type snapResult struct {
	code   int
	out    string
	stderr string
}

// clientSnapshot runs `entrypoint snapshot` against the running supervisor.
func clientSnapshot(t *testing.T, env []string, args ...string) snapResult {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"snapshot"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if err != nil {
		code = cmd.ProcessState.ExitCode()
	}
	return snapResult{code, so.String(), se.String()}
}

// TestEntrypoint_FreezePause: the service is stopped (T) during the archive
// phase and running afterwards, also when the job fails (freeze timeout).
func TestEntrypoint_FreezePause(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	data, backups := filepath.Join(root, "data"), filepath.Join(root, "backups")
	// Enough that the archive phase outlasts the 300 ms freeze timeout of
	// the failing case by far (about 2 s here): gzip level 9 takes the
	// cheapest encoder level that reaches zlib -9's size, so it is not
	// slow by itself.
	writeSlowData(t, data, 64)
	sock := sockPath(t)
	for _, tc := range []struct {
		name    string
		extra   []string
		wantErr bool
	}{
		{"success", nil, false},
		{"job fails while paused", []string{"SNAPVISOR_FREEZE_TIMEOUT=300ms"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string{
				"SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@yearly", "SNAPVISOR_FREEZE=pause", "SNAPVISOR_COMPRESSION_LEVEL=9",
				"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + backups, "SNAPVISOR_CONTROL_SOCKET=" + sock,
			}, tc.extra...)
			p := startPID1(t, env, "--", "sleep", "1000")
			pid1 := p.pid1(t)
			svc := serviceChild(t, pid1)
			testutil.Eventually(t, 5*time.Second, "control socket", func() bool { _, err := os.Stat(sock); return err == nil })
			before := len(snapshots(t, backups))

			var mu sync.Mutex
			states := map[string]int{}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					states[procStateOf(svc)]++
					mu.Unlock()
					time.Sleep(2 * time.Millisecond)
				}
			}()
			res := clientSnapshot(t, env)
			close(stop)
			wg.Wait()
			if states["T"] == 0 {
				t.Errorf("service never seen stopped during the snapshot: states %v", states)
			}
			if st := procStateOf(svc); st != "S" && st != "R" {
				t.Errorf("service state after the snapshot: %q, want running or sleeping", st)
			}
			after := len(snapshots(t, backups))
			if tc.wantErr {
				if res.code == 0 || after != before {
					t.Errorf("want a failed snapshot and no new file; code %d, %d -> %d snapshots; %s", res.code, before, after, res.stderr)
				}
			} else if res.code != 0 || after != before+1 {
				t.Errorf("want one new snapshot; code %d, %d -> %d snapshots; %s", res.code, before, after, res.stderr)
			}
			_ = syscall.Kill(pid1, syscall.SIGTERM)
			if got := p.wait(t, 15*time.Second); got != 128+15 {
				t.Fatalf("exit %d, want 143 (sleep killed by TERM); stderr:\n%s", got, p.stderr)
			}
		})
	}
}

// TestEntrypoint_Hooks covers a failing pre-hook, a timed-out pre-hook (the
// post-hook still runs), and a storm of triggers during one run.
func TestEntrypoint_Hooks(t *testing.T) {
	requireRoot(t)
	base := func(t *testing.T, extra ...string) (env []string, data, backups string) {
		root := t.TempDir()
		data, backups = filepath.Join(root, "data"), filepath.Join(root, "backups")
		if err := os.MkdirAll(data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		env = append([]string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@yearly",
			"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + backups, "SNAPVISOR_CONTROL_SOCKET=" + sockPath(t)}, extra...)
		return env, data, backups
	}
	startSvc := func(t *testing.T, env []string) (*proc, int) {
		p := startPID1(t, env, "--", "sleep", "1000")
		pid1 := p.pid1(t)
		sock := ""
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "SNAPVISOR_CONTROL_SOCKET="); ok {
				sock = v
			}
		}
		testutil.Eventually(t, 5*time.Second, "control socket", func() bool { _, err := os.Stat(sock); return err == nil })
		return p, pid1
	}
	stopSvc := func(t *testing.T, p *proc, pid1 int) {
		_ = syscall.Kill(pid1, syscall.SIGTERM)
		p.wait(t, 15*time.Second)
	}

	t.Run("failing pre-hook aborts the snapshot", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "post")
		env, _, backups := base(t, "SNAPVISOR_PRE_COMMAND=echo not ready; exit 3", "SNAPVISOR_POST_COMMAND=touch "+marker)
		p, pid1 := startSvc(t, env)
		res := clientSnapshot(t, env)
		if res.code == 0 || len(snapshots(t, backups)) != 0 {
			t.Fatalf("code %d, snapshots %v; want failure and none", res.code, snapshots(t, backups))
		}
		if _, err := os.Stat(marker); err != nil {
			t.Error("post-hook did not run after the failed pre-hook")
		}
		stopSvc(t, p, pid1)
	})
	t.Run("timed-out pre-hook aborts, post-hook runs", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "post")
		env, _, backups := base(t, "SNAPVISOR_PRE_COMMAND=sleep 30", "SNAPVISOR_HOOK_TIMEOUT=300ms", "SNAPVISOR_POST_COMMAND=touch "+marker)
		p, pid1 := startSvc(t, env)
		start := time.Now()
		res := clientSnapshot(t, env)
		if res.code == 0 || len(snapshots(t, backups)) != 0 {
			t.Fatalf("code %d, snapshots %v; want failure and none", res.code, snapshots(t, backups))
		}
		if time.Since(start) > 20*time.Second {
			t.Error("hook timeout not enforced")
		}
		if _, err := os.Stat(marker); err != nil {
			t.Error("post-hook did not run after the timed-out pre-hook")
		}
		stopSvc(t, p, pid1)
	})
	t.Run("trigger storm during a run is coalesced", func(t *testing.T) {
		env, _, backups := base(t, "SNAPVISOR_PRE_COMMAND=sleep 1")
		p, pid1 := startSvc(t, env)
		const n = 12
		results := make([]snapResult, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				results[i] = clientSnapshot(t, env, "--json")
			}(i)
		}
		wg.Wait()
		names := map[string]bool{}
		for i, r := range results {
			if r.code != 0 {
				t.Fatalf("trigger %d: exit %d: %s", i, r.code, r.stderr)
			}
			var res struct{ Snapshot string }
			if err := json.Unmarshal([]byte(r.out), &res); err != nil {
				t.Fatalf("trigger %d: %v: %q", i, err, r.out)
			}
			names[res.Snapshot] = true
		}
		// All triggers land in the first run, or (if a client was slow to
		// connect) in at most one more: never one snapshot per trigger.
		if len(names) > 2 || len(snapshots(t, backups)) > 2 {
			t.Errorf("%d distinct results, %d snapshots for %d triggers", len(names), len(snapshots(t, backups)), n)
		}
		stopSvc(t, p, pid1)
	})
}

func TestEntrypoint_InvalidJobsConfig(t *testing.T) {
	for _, tc := range []struct{ name, env, mention string }{
		{"invalid schedule", "SNAPVISOR_SCHEDULE=61 * * * *", "SNAPVISOR_SCHEDULE"},
		{"invalid freeze", "SNAPVISOR_FREEZE=sometimes", "SNAPVISOR_FREEZE"},
		{"invalid keep", "SNAPVISOR_KEEP=-1", "SNAPVISOR_KEEP"},
		{"invalid enable var value", "MY_BACKUP=perhaps", "MY_BACKUP"},
		{"invalid replication schedule", "SNAPVISOR_REPLICATE_SCHEDULE=every hour", "SNAPVISOR_REPLICATE_SCHEDULE"},
		{"replication without remotes", "SNAPVISOR_REPLICATE_SCHEDULE=@hourly", "SNAPVISOR_REMOTES"},
		{"invalid drill schedule", "SNAPVISOR_DRILL_SCHEDULE=weekly", "SNAPVISOR_DRILL_SCHEDULE"},
		{"invalid drill max age", "SNAPVISOR_HEALTH_DRILL_MAX_AGE=-1h", "SNAPVISOR_HEALTH_DRILL_MAX_AGE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "started")
			env := []string{"SNAPVISOR_ENABLE_VAR=MY_BACKUP", "MY_BACKUP=true", tc.env}
			p := start(t, env, binPath, "--", "touch", marker)
			if got := p.wait(t, 10*time.Second); got != exitConfig {
				t.Fatalf("exit %d, want 78; stderr:\n%s", got, p.stderr)
			}
			if !strings.Contains(p.stderr.String(), tc.mention) {
				t.Errorf("error does not name %s:\n%s", tc.mention, p.stderr)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("service started despite the configuration error")
			}
		})
	}
}

// TestEntrypoint_EnableVarAlias: SNAPVISOR_ENABLE_VAR's variable (an image's
// ZITI_CTRL_BACKUP, say) turns snapshots on for every part, as
// SNAPVISOR_BACKUP does: here `health`, which asks the (absent) entrypoint
// instead of answering "snapshots are off".
func TestEntrypoint_EnableVarAlias(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  int
	}{{"true", 1}, {"false", 0}} {
		t.Run("ZITI_CTRL_BACKUP="+tc.value, func(t *testing.T) {
			env := []string{"SNAPVISOR_BACKUP=false", "SNAPVISOR_ENABLE_VAR=ZITI_CTRL_BACKUP", "ZITI_CTRL_BACKUP=" + tc.value,
				"SNAPVISOR_SOURCE=" + filepath.Join(t.TempDir(), "data"), "SNAPVISOR_DIR=" + t.TempDir(), "SNAPVISOR_CONTROL_SOCKET=" + sockPath(t)}
			code, out, errOut := entrypoint(t, env, "health")
			if code != tc.want || (tc.want == 0) != strings.Contains(out, "snapshots are off") {
				t.Fatalf("health exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.want, out, errOut)
			}
		})
	}
}
