package restic

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"snapvisor/internal/testutil"
)

// The test binary re-executed as a helper process: it takes a lock and
// holds it, or runs a prune, so that it can be killed (kill -9) like a
// real client. It does nothing in a normal test run.
const (
	helperEnv     = "SNAPVISOR_RESTIC_TEST_HELPER" // "lock" or "prune"
	helperRepoEnv = "SNAPVISOR_RESTIC_TEST_REPO"
	helperArgEnv  = "SNAPVISOR_RESTIC_TEST_ARG" // lock: "exclusive" or ""; prune: MaxUnused
)

func TestHelperProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "lock":
		helperLock(t)
	case "prune":
		helperPrune(t)
	}
}

// helperLock takes a lock, prints "locked <file>", reports each SIGHUP as
// "SIGHUP" and holds the lock until its stdin closes.
func helperLock(t *testing.T) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	r := openOrInit(t, openFileStore(t, os.Getenv(helperRepoEnv)))
	l, err := r.Lock(context.Background(), os.Getenv(helperArgEnv) == "exclusive", 0)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	say := func(s string) { mu.Lock(); fmt.Println(s); mu.Unlock() }
	say("locked " + l.file.String())
	go func() {
		for range hup {
			say("SIGHUP")
		}
	}()
	io.Copy(io.Discard, os.Stdin)
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// helper is a running helper process.
type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // its stdout, line by line; closed at EOF
}

// startHelper re-executes the test binary as the helper kind on repoDir.
func startHelper(t *testing.T, kind, repoDir, arg string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v=false")
	cmd.Env = append(os.Environ(), helperEnv+"="+kind, helperRepoEnv+"="+repoDir, helperArgEnv+"="+arg)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &testWriter{t: t, prefix: kind + " helper: "}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, stdin: stdin, lines: make(chan string, 64)}
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { h.kill() })
	return h
}

// waitLine returns the first line starting with prefix, failing after within.
func (h *helper) waitLine(t *testing.T, prefix string, within time.Duration) string {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				t.Fatalf("helper exited before printing %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("helper printed no %q within %v", prefix, within)
		}
	}
}

// exit waits until the helper exits by itself, failing (and killing it)
// after within.
func (h *helper) exit(t *testing.T, within time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { h.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(within):
		h.cmd.Process.Signal(syscall.SIGKILL)
		<-done
		t.Fatalf("the helper did not exit within %v", within)
	}
}

// kill ends the helper with SIGKILL (once) and reaps it.
func (h *helper) kill() {
	if h.cmd.ProcessState == nil {
		h.cmd.Process.Signal(syscall.SIGKILL)
		h.cmd.Wait()
	}
}

// testWriter logs what a helper writes to stderr.
type testWriter struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	all    strings.Builder
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	return len(p), nil
}

func (w *testWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

// resticRun runs the restic CLI on repo and returns its output and error
// (resticCLI fails the test instead).
func resticRun(t *testing.T, repo string, args ...string) (string, error) {
	t.Helper()
	testutil.RequireTool(t, "restic")
	cmd := exec.Command("restic", append([]string{"-r", repo, "--no-cache"}, args...)...)
	cmd.Env = append(os.Environ(), "RESTIC_PASSWORD="+testPassword)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// resticLocks lists the lock files restic sees.
func resticLocks(t *testing.T, repo string) []string {
	t.Helper()
	return strings.Fields(resticCLI(t, repo, "list", "locks", "--no-lock"))
}

// lockFiles lists our view of locks/.
func lockFiles(t *testing.T, r *Repo) map[ID]int64 {
	t.Helper()
	ids, err := r.List(context.Background(), LockFile)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func newTestRepo(t *testing.T) (*Repo, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	return openOrInit(t, openFileStore(t, dir)), dir
}

func TestConflicts(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	alive := func(pid int) bool { return pid == 100 }
	mine := func(excl bool) lockFile { return lockFile{Exclusive: excl, Hostname: "here", PID: 1, Time: now} }
	other := func(excl bool, host string, pid int, age time.Duration) lockFile {
		return lockFile{Exclusive: excl, Hostname: host, PID: pid, Time: now.Add(-age)}
	}
	for _, tc := range []struct {
		name  string
		mine  lockFile
		other lockFile
		want  bool
	}{
		{"shared beside shared", mine(false), other(false, "there", 7, time.Minute), false},
		{"shared beside exclusive", mine(false), other(true, "there", 7, time.Minute), true},
		{"exclusive beside shared", mine(true), other(false, "there", 7, time.Minute), true},
		{"exclusive beside exclusive", mine(true), other(true, "there", 7, time.Minute), true},
		{"29 minutes old still holds", mine(true), other(false, "there", 7, 29*time.Minute), true},
		{"31 minutes old is stale", mine(true), other(false, "there", 7, 31*time.Minute), false},
		{"stale exclusive does not stop shared", mine(false), other(true, "there", 7, 31*time.Minute), false},
		{"this host, live pid", mine(true), other(false, "here", 100, time.Minute), true},
		{"this host, dead pid is stale", mine(true), other(false, "here", 101, time.Minute), false},
		{"other host, pid unknowable", mine(true), other(false, "there", 101, time.Minute), true},
		{"no pid recorded", mine(true), other(false, "here", 0, time.Minute), true},
		{"our host unknown", lockFile{Exclusive: true, Time: now}, other(false, "", 101, time.Minute), true},
		{"written in the future (clock skew)", mine(true), other(false, "there", 7, -time.Hour), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := conflicts(tc.mine, tc.other, now, alive); got != tc.want {
				t.Errorf("conflicts = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRepo_Lock(t *testing.T) {
	ctx := context.Background()
	host, _ := os.Hostname()

	t.Run("restic reads our lock", func(t *testing.T) {
		r, dir := newTestRepo(t)
		l, err := r.Lock(ctx, true, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := resticLocks(t, dir); len(got) != 1 || got[0] != l.file.String() {
			t.Fatalf("restic list locks = %v, want [%s]", got, l.file)
		}
		var lf lockFile
		if err := json.Unmarshal([]byte(resticCLI(t, dir, "cat", "lock", l.file.String(), "--no-lock")), &lf); err != nil {
			t.Fatal(err)
		}
		if !lf.Exclusive || lf.Hostname != host || lf.PID != os.Getpid() || lf.Username == "" || time.Since(lf.Time) > time.Minute {
			t.Errorf("restic cat lock = %+v, want exclusive, host %s, pid %d, a user and a time of now", lf, host, os.Getpid())
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		if got := resticLocks(t, dir); len(got) != 0 {
			t.Errorf("after Unlock restic lists %v", got)
		}
	})

	t.Run("shared locks coexist, exclusive ones conflict", func(t *testing.T) {
		r, _ := newTestRepo(t)
		a, err := r.Lock(ctx, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		b, err := r.Lock(ctx, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Lock(ctx, true, 0)
		var le *LockedError
		if !errors.As(err, &le) || le.Exclusive || le.PID != os.Getpid() || le.Host != host {
			t.Fatalf("exclusive beside two shared: %v, want a *LockedError naming a shared lock of pid %d on %s", err, os.Getpid(), host)
		}
		if n := len(lockFiles(t, r)); n != 2 {
			t.Errorf("%d lock files after the refused lock, want the 2 held (the refused one removes its own)", n)
		}
		a.Unlock()
		b.Unlock()
		x, err := r.Lock(ctx, true, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, excl := range []bool{false, true} {
			_, err = r.Lock(ctx, excl, 0)
			if !errors.As(err, &le) || !le.Exclusive || le.File != x.file {
				t.Errorf("lock (exclusive %v) beside an exclusive one: %v, want a *LockedError naming %s", excl, err, x.file.Str())
			}
		}
		x.Unlock()
		if n := len(lockFiles(t, r)); n != 0 {
			t.Errorf("%d lock files left", n)
		}
	})

	t.Run("stale lock of a dead process on this host", func(t *testing.T) {
		r, dir := newTestRepo(t)
		h := startHelper(t, "lock", dir, "exclusive")
		dead := strings.TrimPrefix(h.waitLine(t, "locked ", 30*time.Second), "locked ")
		h.kill()
		l, err := r.Lock(ctx, true, 0)
		if err != nil {
			t.Fatalf("the lock of a killed process is stale, yet: %v", err)
		}
		if got := resticLocks(t, dir); len(got) != 2 {
			t.Fatalf("restic lists %v, want the dead lock %s and ours", got, dead[:8])
		}
		l.Unlock() // restic unlock would signal our own (live) pid
		resticCLI(t, dir, "unlock")
		if got := resticLocks(t, dir); len(got) != 0 {
			t.Errorf("restic unlock kept %v: it does not take our lock of a dead pid for stale", got)
		}
	})

	t.Run("live lock on this host holds, restic unlock keeps it", func(t *testing.T) {
		r, dir := newTestRepo(t)
		h := startHelper(t, "lock", dir, "exclusive")
		held := strings.TrimPrefix(h.waitLine(t, "locked ", 30*time.Second), "locked ")
		_, err := r.Lock(ctx, false, 0)
		var le *LockedError
		if !errors.As(err, &le) || le.PID != h.cmd.Process.Pid || le.File.String() != held {
			t.Fatalf("beside a live exclusive lock: %v, want a *LockedError naming pid %d", err, h.cmd.Process.Pid)
		}
		resticCLI(t, dir, "unlock")
		if got := resticLocks(t, dir); len(got) != 1 || got[0] != held {
			t.Errorf("restic unlock left %v, want the live lock %s", got, held[:8])
		}
		// restic tests the holder with a SIGHUP: a process holding our lock
		// on the same host receives one whenever restic unlock runs there.
		h.waitLine(t, "SIGHUP", 10*time.Second)
		h.stdin.Close()
		if err := h.cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		if got := resticLocks(t, dir); len(got) != 0 {
			t.Errorf("the helper's Unlock left %v", got)
		}
	})

	t.Run("restic prune refuses while our shared lock is held", func(t *testing.T) {
		r, dir := newTestRepo(t)
		src := filepath.Join(t.TempDir(), "src")
		writeTree(t, src, map[string]string{"a": "one"})
		backupNow(t, src, r)
		l, err := r.Lock(ctx, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		out, err := resticRun(t, dir, "prune")
		if err == nil || !strings.Contains(out, "locked") {
			t.Errorf("restic prune beside our lock: %v\n%s", err, out)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		resticCLI(t, dir, "prune")
	})

	t.Run("locks of other hosts: young ones hold, old ones are stale", func(t *testing.T) {
		r, _ := newTestRepo(t)
		old, err := r.SaveJSON(ctx, LockFile, lockFile{Time: time.Now().Add(-31 * time.Minute), Exclusive: true, Hostname: "elsewhere", Username: "u", PID: 4242})
		if err != nil {
			t.Fatal(err)
		}
		l, err := r.Lock(ctx, true, 0)
		if err != nil {
			t.Fatalf("beside a lock 31 minutes old: %v", err)
		}
		l.Unlock()
		r.Remove(ctx, LockFile, old)
		young, err := r.SaveJSON(ctx, LockFile, lockFile{Time: time.Now().Add(-time.Minute), Exclusive: true, Hostname: "elsewhere", Username: "u", PID: 4242})
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Lock(ctx, false, 0)
		var le *LockedError
		if !errors.As(err, &le) || le.File != young || le.Host != "elsewhere" || le.PID != 4242 || le.User != "u" || !le.Exclusive ||
			le.Age < time.Minute || le.Age > 2*time.Minute {
			t.Fatalf("beside a lock a minute old: %v (%+v)", err, le)
		}
		msg := le.Error()
		for _, want := range []string{"exclusively", "PID 4242", "elsewhere", young.Str()} {
			if !strings.Contains(msg, want) {
				t.Errorf("%q does not name %q", msg, want)
			}
		}
		if strings.Contains(msg, testPassword) {
			t.Errorf("%q shows the password", msg)
		}
	})

	t.Run("waits until the holder unlocks", func(t *testing.T) {
		r, _ := newTestRepo(t)
		holder, err := r.Lock(ctx, true, 0)
		if err != nil {
			t.Fatal(err)
		}
		core, logs := observer.New(zap.InfoLevel)
		type result struct {
			l   *Lock
			err error
		}
		got := make(chan result, 1)
		go func() {
			l, err := r.LockWith(ctx, LockOptions{Wait: time.Minute, Log: zap.New(core)})
			got <- result{l, err}
		}()
		testutil.Eventually(t, 10*time.Second, "the second lock waits", func() bool {
			return logs.FilterMessageSnippet("waiting").Len() > 0
		})
		holder.Unlock()
		select {
		case res := <-got:
			if res.err != nil {
				t.Fatal(res.err)
			}
			res.l.Unlock()
		case <-time.After(30 * time.Second):
			t.Fatal("the waiting lock was not taken after the holder unlocked")
		}
	})

	t.Run("the context bounds the wait", func(t *testing.T) {
		r, _ := newTestRepo(t)
		holder, err := r.Lock(ctx, true, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer holder.Unlock()
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = r.Lock(cctx, false, time.Hour)
		var le *LockedError
		if !errors.As(err, &le) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want a *LockedError and the context's deadline", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("returned after %v", d)
		}
	})
}

func TestLock_Refresh(t *testing.T) {
	ctx := context.Background()
	r, dir := newTestRepo(t)
	l, err := r.LockWith(ctx, LockOptions{Exclusive: true, Refresh: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	first := l.file
	var firstTime time.Time
	{
		var lf lockFile
		if err := r.LoadJSON(ctx, LockFile, first, &lf); err != nil {
			t.Fatal(err)
		}
		firstTime = lf.Time
	}
	testutil.Eventually(t, 10*time.Second, "the lock file is replaced by a fresher one", func() bool {
		ids := lockFiles(t, r)
		if len(ids) != 1 {
			return false
		}
		for id := range ids {
			var lf lockFile
			if id == first || r.LoadJSON(ctx, LockFile, id, &lf) != nil {
				return false
			}
			return lf.Time.After(firstTime) && lf.Exclusive && lf.PID == os.Getpid()
		}
		return false
	})
	if err := l.Check(); err != nil {
		t.Errorf("Check of a refreshed lock: %v", err)
	}
	if got := resticLocks(t, dir); len(got) > 2 {
		t.Errorf("restic lists %v: refreshes leave old files", got)
	}
	start := time.Now()
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Unlock took %v", d)
	}
	if ids := lockFiles(t, r); len(ids) != 0 {
		t.Errorf("lock files after Unlock: %v", ids)
	}
	if err := l.Unlock(); err != nil {
		t.Errorf("second Unlock: %v", err)
	}
	if l.Check() == nil {
		t.Error("Check of a released lock is nil")
	}
}
