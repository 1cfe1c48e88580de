package restic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"snapvisor/internal/testutil"
	"snapvisor/store"
)

// The crash child: TestBackup_Crash re-executes the test binary with these
// set, and the child takes one snapshot of SRC into the file repository at
// REPO the way the entrypoint does (OpenAll creating it, then Take).
const (
	crashSrcEnv  = "SNAPVISOR_TEST_CRASH_SRC"
	crashRepoEnv = "SNAPVISOR_TEST_CRASH_REPO"
)

// crashChild is the snapshot the parent kills.
func crashChild(t *testing.T, src, repo string) {
	takeSnapshot(t, openFileStore(t, repo), src)
}

// takeSnapshot opens (creating) the repository on st as the entrypoint
// does and takes one complete snapshot of src into it.
func takeSnapshot(t *testing.T, st store.Store, src string) *Snapshot {
	t.Helper()
	ctx := context.Background()
	repos, errs := OpenAll(ctx, []store.Store{st}, Password(testPassword), true, 0)
	if errs[0] != nil {
		t.Fatalf("open %s: %v", st.Name(), errs[0])
	}
	res, err := Take(ctx, repos, time.Minute, BackupOptions{Sources: []string{src}, Host: "crash-host", Time: time.Now(), Log: zaptest.NewLogger(t)})
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		t.Fatalf("snapshot of %s into %s: %v", src, st.Name(), err)
	}
	return res[0].Snapshot
}

// genTree fills dir with a few hundred files of pseudo-random (so
// incompressible) content from seed, some MiB in all, in nested
// directories, with a symlink and an empty directory.
func genTree(t *testing.T, dir string, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	data := rand.NewChaCha8(s)
	for i := range 300 {
		size := 1 + rng.IntN(8<<10)
		switch {
		case i%100 == 0:
			size = 2<<20 + rng.IntN(1<<20)
		case i%20 == 0:
			size = 128<<10 + rng.IntN(256<<10)
		}
		p := filepath.Join(dir, fmt.Sprintf("d%d", i%7), fmt.Sprintf("e%d", i%3), fmt.Sprintf("f%03d", i))
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		b := make([]byte, size)
		_, _ = data.Read(b)
		must(t, os.WriteFile(p, b, 0o644))
	}
	must(t, os.Symlink("d1/e1/f001", filepath.Join(dir, "link")))
	must(t, os.Mkdir(filepath.Join(dir, "empty"), 0o750))
}

// TestBackup_Crash kills (SIGKILL) a process taking a snapshot at a random
// point, 20 times: half on a new repository (initialisation, packs, index
// and snapshot file all ahead), half on the previous one, holding a
// snapshot, with a second source (new data on top of an index). After each
// kill `restic check --read-data` exits 0 (packs no index names are
// allowed), `restic unlock` leaves no lock, every snapshot it lists
// restores through `restic restore` identical to its source (the sources
// do not change), and a complete snapshot by us then succeeds, passes
// `restic check` and restores in turn.
func TestBackup_Crash(t *testing.T) {
	if src := os.Getenv(crashSrcEnv); src != "" {
		crashChild(t, src, os.Getenv(crashRepoEnv))
		return
	}
	testutil.RequireTool(t, "restic")
	tmp := t.TempDir()
	sources := []string{filepath.Join(tmp, "a"), filepath.Join(tmp, "b")}
	for i, s := range sources {
		genTree(t, s, uint64(i+1))
	}
	// The usual duration of each kind of run, measured on a scratch repository.
	scratch := filepath.Join(tmp, "scratch")
	usual := []time.Duration{runChild(t, sources[0], scratch, killAt{delay: -1}), runChild(t, sources[1], scratch, killAt{delay: -1})}
	t.Logf("usual durations: new repository %v, next source %v", usual[0], usual[1])

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 13))
	t.Logf("seed %d", seed)
	// 20 kills at random times; then three at the riskiest points, as soon
	// as the file that starts them appears: a key file (a repository
	// without its config yet), a pack (data no index names), an index
	// file (data no snapshot names).
	type run struct {
		fresh bool // a new repository (source a), else the previous one (source b)
		kill  killAt
	}
	var runs []run
	for i := range 20 {
		kind := i % 2
		runs = append(runs, run{kind == 0, killAt{delay: time.Duration(rng.Int64N(int64(usual[kind]) + 1))}})
	}
	runs = append(runs, run{true, killAt{delay: -1, on: "keys"}}, run{false, killAt{delay: -1, on: "data"}}, run{true, killAt{delay: -1, on: "index"}},
		// A lock file half written (seen in CI: its temporary was taken for a lock).
		run{false, killAt{delay: -1, on: "locks", temp: true}})
	var repo string
	for i, rn := range runs {
		kind := 1
		if rn.fresh {
			kind = 0
			repo = filepath.Join(tmp, fmt.Sprintf("repo%02d", i))
		}
		src := sources[kind]
		took := runChild(t, src, repo, rn.kill)
		what := fmt.Sprintf("run %d (%s, killed %s)", i, filepath.Base(src), rn.kill)
		if took >= 0 {
			what = fmt.Sprintf("run %d (%s, finished in %v before the kill %s)", i, filepath.Base(src), took, rn.kill)
		}
		cli := cliRepo{Repo: repo}
		if _, err := os.Stat(filepath.Join(repo, "config")); err != nil {
			// Killed before the repository existed: nothing to check yet.
			if _, err := Open(context.Background(), openFileStore(t, repo), Password(testPassword)); !errors.Is(err, ErrNoRepository) {
				t.Fatalf("%s: no config file, yet Open says %v", what, err)
			}
			t.Logf("%s: no repository yet", what)
		} else {
			cli.run(t, "unlock")
			if n := files(filepath.Join(repo, "locks"), false); n > 0 {
				t.Errorf("%s: restic unlock left %d locks: the killed snapshot's lock is not stale to restic", what, n)
			}
			out := cli.run(t, "check", "--read-data")
			snaps := cliSnapshots(t, cli)
			t.Logf("%s: restic check exit 0, %d unreferenced packs, %d snapshots", what, strings.Count(out, "not referenced in any index"), len(snaps))
			for _, sn := range snaps {
				restoreAndCompare(t, cli, sn.ID, sn.Paths[0])
			}
		}
		sn := takeSnapshot(t, openFileStore(t, repo), src)
		cli.run(t, "check")
		if left := files(repo, true); left > 0 {
			// Half-written files of the killed writer: the next prune (under
			// its exclusive lock) removes them.
			r, err := Open(context.Background(), openFileStore(t, repo), Password(testPassword))
			if err != nil {
				t.Fatal(err)
			}
			ps, err := Prune(context.Background(), r, PruneOptions{Log: zaptest.NewLogger(t)})
			if err != nil {
				t.Fatalf("%s: prune: %v", what, err)
			}
			if n := files(repo, true); n > 0 || ps.UploadsAborted != left {
				t.Errorf("%s: %d upload temporaries, prune removed %d, %d left", what, left, ps.UploadsAborted, n)
			}
			cli.run(t, "check")
			t.Logf("%s: prune removed %d upload temporaries", what, ps.UploadsAborted)
		}
		if kind == 1 || i == len(runs)-1 {
			// The repository's last snapshot (the next kill restores the others).
			restoreAndCompare(t, cli, sn.ID.String(), src)
		}
		if t.Failed() {
			t.Fatalf("%s: failed", what)
		}
	}
}

// killAt says when the crash child is killed: after delay, or (delay < 0)
// as soon as a new file appears in the repository's directory on (never
// when on is empty too).
type killAt struct {
	delay time.Duration
	on    string
	temp  bool // on: an upload temporary appears (the file half written), not a file
}

func (k killAt) String() string {
	if k.on != "" && k.temp {
		return "as a file was being written in " + k.on + "/"
	}
	if k.on != "" {
		return "as a file appeared in " + k.on + "/"
	}
	return fmt.Sprintf("after %v", k.delay)
}

// files counts the repository files below dir, or (temp) the upload
// temporaries (".<name>.tmp-*") a killed writer leaves.
func files(dir string, temp bool) int {
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.HasPrefix(d.Name(), ".") == temp {
			n++
		}
		return nil
	})
	return n
}

// runChild runs the crash child on src and repo and kills it as kill says.
// It returns how long the child took when it finished by itself, else -1;
// a child that fails by itself fails the test.
func runChild(t *testing.T, src, repo string, kill killAt) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBackup_Crash$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), crashSrcEnv+"="+src, crashRepoEnv+"="+repo)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	var watched int
	if kill.on != "" {
		watched = files(filepath.Join(repo, kill.on), kill.temp)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var timer <-chan time.Time
	if kill.delay >= 0 {
		timer = time.After(kill.delay)
	}
	var poll <-chan time.Time
	if kill.on != "" {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		poll = tick.C
	}
wait:
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("the snapshot process failed by itself: %v\n%s", err, &out)
			}
			return time.Since(start)
		case <-timer:
			break wait
		case <-poll:
			if files(filepath.Join(repo, kill.on), kill.temp) > watched {
				break wait
			}
		}
	}
	_ = cmd.Process.Kill() // SIGKILL, by PID
	err := <-done
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -1
		}
		t.Fatalf("the snapshot process failed by itself: %v\n%s", err, &out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return time.Since(start) // it finished as the kill came
}

type cliSnapshot struct {
	ID    string   `json:"id"`
	Paths []string `json:"paths"`
}

// cliSnapshots lists the repository's snapshots as the restic CLI sees them.
func cliSnapshots(t *testing.T, cli cliRepo) []cliSnapshot {
	t.Helper()
	out, err := cli.stdout(t, "snapshots", "--json")
	if err != nil {
		t.Fatalf("restic snapshots: %v\n%s", err, out)
	}
	var snaps []cliSnapshot
	if err := json.Unmarshal([]byte(out), &snaps); err != nil {
		t.Fatalf("restic snapshots --json: %v: %q", err, out)
	}
	return snaps
}

// restoreAndCompare restores snapshot id with the restic CLI and compares
// the path src in it with src.
func restoreAndCompare(t *testing.T, cli cliRepo, id, src string) {
	t.Helper()
	out := t.TempDir()
	cli.run(t, "restore", id, "--target", out)
	sameTree(t, src, filepath.Join(out, src))
}

// TestInit_AfterCrashedInit: a snapshot killed while it initialised the
// repository leaves a key file and no config. The next snapshot initialises
// it for good, and both clients open it afterwards: ours, and the restic
// CLI, which takes the first key file that opens with the password (so a
// second key, of a master key the config is not sealed with, must not be
// there).
func TestInit_AfterCrashedInit(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	st := openFileStore(t, dir)
	_, err := Init(ctx, st, Password(testPassword), 0)
	must(t, err)
	must(t, os.Remove(filepath.Join(dir, "config"))) // killed before the config was written
	src := filepath.Join(t.TempDir(), "data")
	writeTree(t, src, map[string]string{"f": "precious"})
	takeSnapshot(t, st, src)
	if _, err := Open(ctx, st, Password(testPassword)); err != nil {
		t.Fatalf("open after the crashed init: %v", err)
	}
	if keys, _ := os.ReadDir(filepath.Join(dir, "keys")); len(keys) != 1 {
		t.Errorf("%d key files after the crashed init and the next one, want 1 (the one the config is sealed for)", len(keys))
	}
	cliRepo{Repo: dir}.run(t, "check", "--read-data")
}

// TestOpen_StaleKey: a repository holding a key file that opens with the
// password but wraps another master key (left by an init killed before its
// config, restic's own or an earlier one of ours) opens with the key the
// config is sealed for, whichever is listed first.
func TestOpen_StaleKey(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := Init(ctx, openFileStore(t, dir), Password(testPassword), 0)
	must(t, err)
	other := filepath.Join(t.TempDir(), "repo")
	o, err := Init(ctx, openFileStore(t, other), Password(testPassword), 0)
	must(t, err)
	// A stale key listed before the good one: of the two repositories, the
	// one whose key sorts last gets the other's key (no retry loop whose
	// every draw could sort after: 1 run in 51 did).
	if o.keyID.String() > r.keyID.String() {
		dir, other, r, o = other, dir, o, r
	}
	b, err := os.ReadFile(filepath.Join(other, "keys", o.keyID.String()))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "keys", o.keyID.String()), b, 0o600))
	if keys, _ := os.ReadDir(filepath.Join(dir, "keys")); len(keys) != 2 {
		t.Fatalf("setup: %d key files, want 2", len(keys))
	}
	if _, err := Open(ctx, openFileStore(t, dir), Password(testPassword)); err != nil {
		t.Fatalf("open with a stale key listed first: %v", err)
	}
}
