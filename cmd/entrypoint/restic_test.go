//go:build !initonly

package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"snapvisor/internal/testutil"
	"snapvisor/store/storetest"
)

// The restic format end to end (SNAPVISOR_FORMAT=restic): the entrypoint
// binary standalone and as PID 1, with the repository in SNAPVISOR_DIR.

const resticTestPassword = "correct horse battery staple"

// resticSetup makes a source (testutil.RichTree) in its own directory and
// returns the environment of a restic-format entrypoint snapshotting it
// into SNAPVISOR_DIR, the source and the repository's directory.
func resticSetup(t *testing.T) (env []string, data, repo string) {
	t.Helper()
	root := t.TempDir()
	data, repo = filepath.Join(root, "src", "data"), filepath.Join(root, "repo")
	testutil.RichTree(t, data)
	env = []string{"SNAPVISOR_FORMAT=restic", "RESTIC_PASSWORD=" + resticTestPassword, "SNAPVISOR_NAME=svc",
		"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + repo, "SNAPVISOR_CONTROL_SOCKET=" + filepath.Join(root, "ctl.sock"),
		"SNAPVISOR_LOG_FORMAT=console"}
	return env, data, repo
}

// resticList is `entrypoint list --json` in the restic format.
func resticList(t *testing.T, env []string) []resticRow {
	t.Helper()
	code, out, errOut := entrypointWithin(t, time.Minute, env, "list", "--json")
	if code != 0 {
		t.Fatalf("list --json: exit %d: %s", code, errOut)
	}
	var rows []resticRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("list --json: %v: %q", err, out)
	}
	return rows
}

// packs lists the pack files of the repository in dir.
func packs(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "data", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// emptyDir removes everything inside dir.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	for _, e := range entriesOf(dir) {
		must(t, os.RemoveAll(filepath.Join(dir, e)))
	}
}

// TestCmdRestic_Standalone: with no entrypoint running, `entrypoint
// snapshot` twice writes two restic snapshots; `list` and `list --json`
// show them newest first; `verify --read-data` passes; `restore latest`
// into the emptied source gives the tree back identical (ownership
// included: as root); a byte flipped in each pack the second snapshot
// added makes `verify` fail naming that snapshot and not the first, and
// `restore latest` then restores the newest one that is whole, the first.
func TestCmdRestic_Standalone(t *testing.T) {
	testutil.RequireRoot(t, "restoring ownership")
	env, data, repo := resticSetup(t)
	snap := func() {
		t.Helper()
		if code, out, errOut := entrypointWithin(t, 2*time.Minute, env, "snapshot"); code != 0 {
			t.Fatalf("snapshot: exit %d: %s %s", code, out, errOut)
		}
	}
	snap()
	first := testutil.TreeState(t, data)
	packsBefore := packs(t, repo)
	must(t, os.WriteFile(filepath.Join(data, "new.txt"), []byte("added on day two"), 0o640))
	snap()
	second := testutil.TreeState(t, data)
	var added []string
	for _, p := range packs(t, repo) {
		if !slices.Contains(packsBefore, p) {
			added = append(added, p)
		}
	}

	rows := resticList(t, env)
	if len(rows) != 2 {
		t.Fatalf("list --json: %d snapshots, want 2: %+v", len(rows), rows)
	}
	newest, oldest := rows[0], rows[1]
	if !newest.Time.After(oldest.Time) || newest.Host != "svc" || len(newest.Paths) != 1 || newest.Paths[0] != data ||
		newest.Size == 0 || oldest.Added == 0 || newest.Added >= oldest.Added || newest.ShortID == "" {
		t.Errorf("list --json: %+v; want newest first, host svc (SNAPVISOR_NAME), the source's path, a size, bytes added", rows)
	}
	code, out, errOut := entrypointWithin(t, time.Minute, env, "list")
	if code != 0 || !strings.Contains(out, newest.ShortID) || !strings.Contains(out, oldest.ShortID) || strings.Index(out, newest.ShortID) > strings.Index(out, oldest.ShortID) {
		t.Errorf("list: exit %d, printed:\n%s%s\nwant both snapshots, newest first", code, out, errOut)
	}
	if code, out, errOut := entrypointWithin(t, 2*time.Minute, env, "verify", "--read-data"); code != 0 || !strings.HasPrefix(out, "OK") {
		t.Fatalf("verify --read-data: exit %d: %s %s", code, out, errOut)
	}

	t.Run("RestoreLatest", func(t *testing.T) {
		emptyDir(t, data)
		code, out, errOut := entrypointWithin(t, 2*time.Minute, env, "restore", "--discard-current", "latest")
		if code != 0 || strings.TrimSpace(out) != newest.ShortID {
			t.Fatalf("restore latest: exit %d, printed %q: %s", code, out, errOut)
		}
		testutil.SameState(t, second, testutil.TreeState(t, data))
	})

	t.Run("FlippedByte", func(t *testing.T) {
		if len(added) == 0 {
			t.Fatal("the second snapshot added no pack")
		}
		for _, p := range added {
			b, err := os.ReadFile(p)
			must(t, err)
			b[len(b)/3] ^= 0x40
			must(t, os.WriteFile(p, b, 0o600))
		}
		code, out, errOut := entrypointWithin(t, 2*time.Minute, env, "verify", "--read-data")
		if code != exitFailure || !strings.Contains(out, "DAMAGED snapshot "+newest.ShortID) || strings.Contains(out, oldest.ShortID) {
			t.Fatalf("verify --read-data after a flipped byte: exit %d, printed:\n%s%s\nwant exit 1 naming %s damaged and not %s", code, out, errOut, newest.ShortID, oldest.ShortID)
		}
		code, out, errOut = entrypointWithin(t, 2*time.Minute, env, "restore", "--discard-current", "latest")
		if code != 0 || strings.TrimSpace(out) != oldest.ShortID {
			t.Fatalf("restore latest with the newest damaged: exit %d, printed %q: %s; want the first snapshot", code, out, errOut)
		}
		testutil.SameState(t, first, testutil.TreeState(t, data))
	})
}

// TestCmdRestic_MissingPack: a pack deleted behind our back makes the
// restore of its snapshot fail with an error naming the repository and the
// pack, and the target is left as it was, with nothing staged beside it.
func TestCmdRestic_MissingPack(t *testing.T) {
	env, data, repo := resticSetup(t)
	code, _, errOut := entrypointWithin(t, 2*time.Minute, env, "snapshot")
	if code != 0 {
		t.Fatalf("snapshot: exit %d: %s", code, errOut)
	}
	id := resticList(t, env)[0].ShortID
	// The largest pack holds the file data.
	var victim string
	var size int64
	for _, p := range packs(t, repo) {
		if fi, err := os.Stat(p); err == nil && fi.Size() > size {
			victim, size = p, fi.Size()
		}
	}
	must(t, os.Remove(victim))
	must(t, os.WriteFile(filepath.Join(data, "a.txt"), []byte("changed since"), 0o644))
	before := testutil.TreeState(t, data)

	code, out, errOut := entrypointWithin(t, 2*time.Minute, env, "restore", id)
	rel, _ := filepath.Rel(repo, victim)
	if code == 0 || !strings.Contains(errOut, repo) || !strings.Contains(errOut, filepath.ToSlash(rel)) {
		t.Fatalf("restore %s with a pack deleted: exit %d, printed %q: %s\nwant a failure naming %s and %s", id, code, out, errOut, repo, rel)
	}
	testutil.SameState(t, before, testutil.TreeState(t, data))
	if left := entriesOf(filepath.Dir(data)); len(left) != 1 {
		t.Errorf("beside the source after the failed restore: %v, want only %s", left, filepath.Base(data))
	}
}

// TestEntrypoint_ResticAutoRestore: as PID 1, a service whose data
// directory is empty, with a repository holding a snapshot of this host
// (SNAPVISOR_NAME), finds its data restored before it starts, identical;
// the password comes from RESTIC_PASSWORD_FILE, which the service does not
// see (in its environment or in /proc/1/environ). With a wrong password
// the service is not started and the exit is non-zero.
func TestEntrypoint_ResticAutoRestore(t *testing.T) {
	requireRoot(t)
	env, data, _ := resticSetup(t)
	if code, _, errOut := entrypointWithin(t, 2*time.Minute, env, "snapshot"); code != 0 {
		t.Fatalf("snapshot: exit %d: %s", code, errOut)
	}
	want := testutil.TreeState(t, data)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "restic-password")
	must(t, os.WriteFile(pwFile, []byte(resticTestPassword+"\n"), 0o600))
	var base []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "RESTIC_PASSWORD=") {
			base = append(base, kv)
		}
	}
	base = append(base, "SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@yearly")

	t.Run("PasswordFile", func(t *testing.T) {
		emptyDir(t, data)
		seen, envOut, procEnv := filepath.Join(dir, "seen"), filepath.Join(dir, "env"), filepath.Join(dir, "environ")
		p := startPID1(t, append(base, "RESTIC_PASSWORD_FILE="+pwFile), "--", "sh", "-c",
			"ls -A "+data+" > "+seen+"; env > "+envOut+"; tr '\\0' '\\n' < /proc/1/environ > "+procEnv)
		if got := p.wait(t, 2*time.Minute); got != 0 {
			t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
		}
		if b, _ := os.ReadFile(seen); !strings.Contains(string(b), "a.txt") {
			t.Errorf("the service saw %q in its data directory at start, want the restored data", b)
		}
		testutil.SameState(t, want, testutil.TreeState(t, data))
		// The service's environment lacks the variable; /proc/1/environ
		// keeps its name with the value overwritten (scrubEnviron).
		for _, f := range []string{envOut, procEnv} {
			b, err := os.ReadFile(f)
			must(t, err)
			if strings.Contains(string(b), pwFile) || strings.Contains(string(b), resticTestPassword) ||
				(f == envOut && strings.Contains(string(b), "RESTIC_PASSWORD")) {
				t.Errorf("%s of the service holds RESTIC_PASSWORD_FILE or the password:\n%s", filepath.Base(f), b)
			}
			if !strings.Contains(string(b), "SNAPVISOR_FORMAT=restic") {
				t.Errorf("%s of the service lacks the ordinary variables:\n%s", filepath.Base(f), b)
			}
		}
	})

	t.Run("WrongPassword", func(t *testing.T) {
		emptyDir(t, data)
		marker := filepath.Join(dir, "started")
		p := startPID1(t, append(base, "RESTIC_PASSWORD=not the password"), "--", "touch", marker)
		if got := p.wait(t, 2*time.Minute); got == 0 {
			t.Fatalf("exit 0 with a wrong RESTIC_PASSWORD; stderr:\n%s", p.stderr)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("the service was started on empty data with a wrong RESTIC_PASSWORD")
		}
		if !strings.Contains(p.stderr.String(), "RESTIC_PASSWORD") {
			t.Errorf("the failure does not name RESTIC_PASSWORD:\n%s", p.stderr)
		}
		if left := entriesOf(data); len(left) != 0 {
			t.Errorf("the data directory holds %v, want it untouched (empty)", left)
		}
	})
}

// TestEntrypoint_ResticConfigErrors: an unknown SNAPVISOR_FORMAT, the
// restic format without a password, or a password file that cannot be
// read exit 78 naming the variable, before the service starts.
func TestEntrypoint_ResticConfigErrors(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name    string
		env     []string
		mention string
	}{
		{"UnknownFormat", []string{"SNAPVISOR_FORMAT=bogus", "RESTIC_PASSWORD=x"}, "SNAPVISOR_FORMAT"},
		{"NoPassword", []string{"SNAPVISOR_FORMAT=restic", "RESTIC_PASSWORD="}, "RESTIC_PASSWORD"},
		{"PasswordFileMissing", []string{"SNAPVISOR_FORMAT=restic", "RESTIC_PASSWORD=", "RESTIC_PASSWORD_FILE=/nonexistent/pw"}, "RESTIC_PASSWORD_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _, _ := resticSetup(t)
			marker := filepath.Join(t.TempDir(), "started")
			p := startPID1(t, append(append(env, "SNAPVISOR_BACKUP=true"), tc.env...), "--", "touch", marker)
			if got := p.wait(t, 30*time.Second); got != exitConfig {
				t.Fatalf("exit %d, want %d; stderr:\n%s", got, exitConfig, p.stderr)
			}
			if !strings.Contains(p.stderr.String(), tc.mention) {
				t.Errorf("the error does not name %s:\n%s", tc.mention, p.stderr)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the service was started despite the configuration error")
			}
		})
	}
}

// TestEntrypoint_ResticPasswordFile: RESTIC_PASSWORD_FILE is read as the
// restic CLI reads it (white space around the password trimmed), so that
// the CLI given the same file opens the repository we wrote, and we open
// the one it wrote.
func TestEntrypoint_ResticPasswordFile(t *testing.T) {
	testutil.RequireTool(t, "restic")
	env, data, repo := resticSetup(t)
	pwFile := filepath.Join(t.TempDir(), "password")
	must(t, os.WriteFile(pwFile, []byte("  "+resticTestPassword+" \t\r\n"), 0o600))
	env = append(env, "RESTIC_PASSWORD=", "RESTIC_PASSWORD_FILE="+pwFile)
	restic := func(repo string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "restic", append([]string{"-r", repo, "--no-cache"}, args...)...)
		cmd.Env = append(os.Environ(), "RESTIC_PASSWORD_FILE="+pwFile)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("restic %v: %v\n%s", args, err, out)
		}
		return string(out)
	}

	if code, _, errOut := entrypointWithin(t, 2*time.Minute, env, "snapshot"); code != 0 {
		t.Fatalf("snapshot: exit %d: %s", code, errOut)
	}
	restic(repo, "check")

	theirs := filepath.Join(t.TempDir(), "theirs")
	restic(theirs, "init")
	restic(theirs, "backup", "--host", "svc", data)
	rows := resticList(t, append(env, "SNAPVISOR_DIR="+theirs))
	if len(rows) != 1 {
		t.Fatalf("list of the repository restic wrote: %+v, want its one snapshot", rows)
	}
}

// TestEntrypoint_ResticRemote: with SNAPVISOR_DIR empty the restic
// repository lives on the remote alone (MinIO): `entrypoint snapshot`
// writes it, the restic CLI checks it and restores it at the repository
// string the README gives for s3:// with endpoint and tls=false, `list
// --remote` shows the snapshot, and as PID 1 an emptied data directory is
// restored from it before the service starts.
func TestEntrypoint_ResticRemote(t *testing.T) {
	requireRoot(t)
	testutil.RequireTool(t, "restic")
	m := storetest.StartMinIO(t)
	m.MakeBucket(t, "snapvisor")
	env, data, _ := resticSetup(t)
	url := m.URL("snapvisor", "team/svc")
	env = append(append(env, m.Env()...), "SNAPVISOR_DIR=", "SNAPVISOR_REMOTES="+url, "SNAPVISOR_REMOTE_RETRIES=1", "SNAPVISOR_REMOTE_BACKOFF=10ms")
	if code, out, errOut := entrypointWithin(t, 2*time.Minute, env, "snapshot"); code != 0 {
		t.Fatalf("snapshot: exit %d: %s %s", code, out, errOut)
	}
	want := testutil.TreeState(t, data)

	restic := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "restic", append([]string{"-r", "s3:http://" + m.Addr + "/snapvisor/team/svc", "--no-cache"}, args...)...)
		cmd.Env = append(append(os.Environ(), m.Env()...), "RESTIC_PASSWORD="+resticTestPassword)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("restic %v: %v\n%s", args, err, out)
		}
	}
	restic("check", "--read-data")
	out := t.TempDir()
	restic("restore", "latest", "--target", out)
	testutil.SameState(t, want, testutil.TreeState(t, filepath.Join(out, data)))

	code, listed, errOut := entrypointWithin(t, time.Minute, env, "list", "--remote", url, "--json")
	var rows []resticRow
	if err := json.Unmarshal([]byte(listed), &rows); code != 0 || err != nil || len(rows) != 1 || rows[0].Host != "svc" {
		t.Fatalf("list --remote: exit %d, %v: %s %s; want the one snapshot", code, err, listed, errOut)
	}

	emptyDir(t, data)
	seen := filepath.Join(t.TempDir(), "seen")
	p := startPID1(t, append(env, "SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@yearly"), "--", "sh", "-c", "ls -A "+data+" > "+seen)
	if got := p.wait(t, 2*time.Minute); got != 0 {
		t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
	}
	if b, _ := os.ReadFile(seen); !strings.Contains(string(b), "a.txt") {
		t.Errorf("the service saw %q in its data directory at start, want the restored data", b)
	}
	testutil.SameState(t, want, testutil.TreeState(t, data))
}
