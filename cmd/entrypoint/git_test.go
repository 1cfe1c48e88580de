//go:build !initonly

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapvisor/gitsnap"
	"snapvisor/internal/testutil"
	"snapvisor/jobs"
	"snapvisor/store/storetest"
)

// The git format end to end (SNAPVISOR_FORMAT=git): the entrypoint binary
// standalone and as PID 1, with the bare repository in SNAPVISOR_DIR and
// remotes over git+file, git+ssh (the project's sshd) and git+https (git
// http-backend); the git CLI checks what we wrote.

// gitTestName is SNAPVISOR_NAME of these tests.
const gitTestName = "svc"

// gitBranch is the branch the tests' snapshots go to (the default one).
var gitBranch = gitsnap.Settings{}.BranchOr(gitTestName)

// gitSetup makes a source (testutil.RichTree) and returns the environment
// of a git-format entrypoint snapshotting it into SNAPVISOR_DIR (dir), the
// source and dir; extra is appended to the environment.
func gitSetup(t *testing.T, extra ...string) (env []string, data, dir string) {
	t.Helper()
	root := t.TempDir()
	data, dir = filepath.Join(root, "src", "data"), filepath.Join(root, "repo")
	testutil.RichTree(t, data)
	env = append([]string{"SNAPVISOR_FORMAT=git", "SNAPVISOR_NAME=" + gitTestName, "SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + dir,
		"SNAPVISOR_CONTROL_SOCKET=" + filepath.Join(root, "ctl.sock"), "SNAPVISOR_LOG_FORMAT=console"}, extra...)
	return env, data, dir
}

// gitSnapshot is a standalone `entrypoint snapshot` that must succeed; it
// returns what it printed (the head's short hash) and its stderr.
func gitSnapshot(t *testing.T, env []string) (short, stderr string) {
	t.Helper()
	code, out, errOut := entrypointWithin(t, 2*time.Minute, env, "snapshot")
	if code != 0 {
		t.Fatalf("snapshot: exit %d: %s %s", code, out, errOut)
	}
	short = strings.TrimSpace(out)
	if len(short) != 7 || strings.Trim(short, "0123456789abcdef") != "" {
		t.Fatalf("snapshot printed %q, want a short commit hash", out)
	}
	return short, errOut
}

// gitRev is the git CLI's `rev-parse --short=7 REF` in the bare repository
// at path, "" when it has no such ref.
func gitRev(t *testing.T, path, ref string) string {
	t.Helper()
	out, err := storetest.GitCLIErr(t, path, "rev-parse", "--verify", "-q", "--short=7", ref)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// gitCount is the number of commits of the branch in the bare repository at path (git CLI).
func gitCount(t *testing.T, path string) string {
	t.Helper()
	return strings.TrimSpace(storetest.GitCLI(t, path, "rev-list", "--count", gitBranch))
}

// gitList is `entrypoint list --json` in the git format.
func gitList(t *testing.T, env []string) []gitsnap.Commit {
	t.Helper()
	code, out, errOut := entrypointWithin(t, time.Minute, env, "list", "--json")
	if code != 0 {
		t.Fatalf("list --json: exit %d: %s", code, errOut)
	}
	var log []gitsnap.Commit
	if err := json.Unmarshal([]byte(out), &log); err != nil {
		t.Fatalf("list --json: %v: %q", err, out)
	}
	return log
}

// gitPacks lists the pack files of the bare repository at path.
func gitPacks(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(path, "objects", "pack", "*.pack"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestEntrypoint_GitConfigErrors: bad git-format configuration exits 78
// before the service starts, naming the variable; a password in a remote's
// URL is not echoed back. `entrypoint env` lists every SNAPVISOR_GIT_*
// variable, and SNAPVISOR_GIT_PASSWORD(_FILE) never reaches the service.
func TestEntrypoint_GitConfigErrors(t *testing.T) {
	requireRoot(t)
	const password = "hunter2-Qx81z"
	keyless := filepath.Join(t.TempDir(), "no-such-key")
	for _, tc := range []struct {
		name, mention string
		env           []string
	}{
		{"DirEmpty", "SNAPVISOR_DIR", []string{"SNAPVISOR_DIR="}},
		{"ArchiveRemotes", "SNAPVISOR_REMOTES", []string{"SNAPVISOR_REMOTES=file:///tmp/elsewhere"}},
		{"Encryption", "SNAPVISOR_ENCRYPTION", []string{"SNAPVISOR_ENCRYPTION=aes256-gcm", "SNAPVISOR_ENCRYPTION_KEY=" + testKey(t)}},
		{"UnknownScheme", "SNAPVISOR_GIT_REMOTES", []string{"SNAPVISOR_GIT_REMOTES=s3://bucket/repo.git"}},
		{"PasswordInURL", "SNAPVISOR_GIT_REMOTES", []string{"SNAPVISOR_GIT_REMOTES=git+https://user:" + password + "@127.0.0.1:1/repo.git"}},
		{"PasswordInBadURL", "SNAPVISOR_GIT_REMOTES", []string{"SNAPVISOR_GIT_REMOTES=git+file:///tmp/ok.git,git+https://user:" + password + "@127.0.0.1:bad/repo.git"}},
		{"RelativeFilePath", "SNAPVISOR_GIT_REMOTES", []string{"SNAPVISOR_GIT_REMOTES=git+file:relative/repo.git"}},
		{"Branch", "SNAPVISOR_GIT_BRANCH", []string{"SNAPVISOR_GIT_BRANCH=a..b"}},
		{"Author", "SNAPVISOR_GIT_AUTHOR", []string{"SNAPVISOR_GIT_AUTHOR=nobody"}},
		{"MaxFileSize", "SNAPVISOR_GIT_MAX_FILE_SIZE", []string{"SNAPVISOR_GIT_MAX_FILE_SIZE=ten"}},
		{"SquashAfter", "SNAPVISOR_GIT_SQUASH_AFTER", []string{"SNAPVISOR_GIT_SQUASH_AFTER=soon"}},
		{"SSHKeyFileMissing", "SNAPVISOR_GIT_SSH_KEY_FILE", []string{"SNAPVISOR_GIT_SSH_KEY_FILE=" + keyless}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, data, dir := gitSetup(t, "SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@yearly")
			marker := filepath.Join(t.TempDir(), "started")
			p := startPID1(t, append(env, tc.env...), "--", "touch", marker)
			if got := p.wait(t, 30*time.Second); got != exitConfig {
				t.Fatalf("exit %d, want %d; stderr:\n%s", got, exitConfig, p.stderr)
			}
			if !strings.Contains(p.stderr.String(), tc.mention) {
				t.Errorf("the error does not name %s:\n%s", tc.mention, p.stderr)
			}
			if strings.Contains(p.stderr.String(), password) {
				t.Errorf("the error shows the password of the remote's URL:\n%s", p.stderr)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the service was started despite the configuration error")
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("SNAPVISOR_DIR %s was created despite the configuration error", dir)
			}
			if _, err := os.Stat(filepath.Join(data, "a.txt")); err != nil {
				t.Errorf("the data was touched: %v", err)
			}
		})
	}

	t.Run("PasswordInFromURL", func(t *testing.T) {
		env, _, _ := gitSetup(t)
		from := "git+https://user:" + password + "@127.0.0.1:1/repo.git"
		for _, args := range [][]string{{"restore", "--from", from}, {"list", "--remote", from}, {"verify", "--remote", from}} {
			code, out, errOut := entrypointWithin(t, 30*time.Second, env, args...)
			if code != exitUsage || strings.Contains(out+errOut, password) || !strings.Contains(errOut, "SNAPVISOR_GIT_PASSWORD") {
				t.Errorf("%v: exit %d, printed:\n%s%s\nwant exit %d pointing to SNAPVISOR_GIT_PASSWORD, without the password", args[:2], code, out, errOut, exitUsage)
			}
		}
	})

	t.Run("EnvListsGitVariables", func(t *testing.T) {
		code, out, errOut := entrypointWithin(t, 30*time.Second, nil, "env")
		if code != 0 {
			t.Fatalf("env: exit %d: %s", code, errOut)
		}
		listed := map[string]bool{}
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 0 {
				listed[f[0]] = true
			}
		}
		// The names (a contract) and every field of gitsnap.Settings.
		want := []string{"SNAPVISOR_GIT_REMOTES", "SNAPVISOR_GIT_BRANCH", "SNAPVISOR_GIT_AUTHOR", "SNAPVISOR_GIT_MAX_FILE_SIZE",
			"SNAPVISOR_GIT_STRICT", "SNAPVISOR_GIT_SSH_KEY_FILE", "SNAPVISOR_GIT_PASSWORD", "SNAPVISOR_GIT_SQUASH_AFTER"}
		st := reflect.TypeOf(gitsnap.Settings{})
		for i := range st.NumField() {
			if tag := st.Field(i).Tag.Get("envconfig"); tag != "" && !slices.Contains(want, tag) {
				want = append(want, tag)
			}
		}
		for _, v := range want {
			if !listed[v] {
				t.Errorf("entrypoint env does not list %s:\n%s", v, out)
			}
		}
		if !strings.Contains(out, "SNAPVISOR_GIT_PASSWORD_FILE") {
			t.Errorf("entrypoint env does not mention SNAPVISOR_GIT_PASSWORD_FILE:\n%s", out)
		}
	})

	t.Run("PasswordNotPassedToService", func(t *testing.T) {
		pwFile := filepath.Join(t.TempDir(), "git-password")
		must(t, os.WriteFile(pwFile, []byte(password+"\n"), 0o600))
		for _, v := range []string{"SNAPVISOR_GIT_PASSWORD=" + password, "SNAPVISOR_GIT_PASSWORD_FILE=" + pwFile} {
			name, _, _ := strings.Cut(v, "=")
			t.Run(name, func(t *testing.T) {
				env, _, _ := gitSetup(t, "SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@yearly", v)
				dir := t.TempDir()
				envOut, procEnv := filepath.Join(dir, "env"), filepath.Join(dir, "environ")
				p := startPID1(t, env, "--", "sh", "-c", "env > "+envOut+"; tr '\\0' '\\n' < /proc/1/environ > "+procEnv)
				if got := p.wait(t, time.Minute); got != 0 {
					t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
				}
				for _, f := range []string{envOut, procEnv} {
					b, err := os.ReadFile(f)
					must(t, err)
					if strings.Contains(string(b), password) || strings.Contains(string(b), pwFile) ||
						(f == envOut && strings.Contains(string(b), "SNAPVISOR_GIT_PASSWORD")) {
						t.Errorf("%s of the service holds %s or the password:\n%s", filepath.Base(f), name, b)
					}
					if !strings.Contains(string(b), "SNAPVISOR_FORMAT=git") {
						t.Errorf("%s of the service lacks the ordinary variables:\n%s", filepath.Base(f), b)
					}
				}
				if strings.Contains(p.stderr.String(), password) {
					t.Errorf("the log shows the password:\n%s", p.stderr)
				}
			})
		}
	})
}

// TestEntrypoint_GitStandalone: `entrypoint snapshot` with no entrypoint
// running, on a git+file remote: an unchanged tree makes no commit, a
// change one; list, verify (and a flipped byte), restore latest and HASH,
// restore --from into a new SNAPVISOR_DIR that then continues the remote's
// history, and a remote that a git CLI commit made diverge.
func TestEntrypoint_GitStandalone(t *testing.T) {
	testutil.RequireRoot(t, "restoring ownership")
	remoteRepo := filepath.Join(t.TempDir(), "remote.git")
	remoteURL := "git+file://" + remoteRepo
	env, data, dir := gitSetup(t, "SNAPVISOR_GIT_REMOTES="+remoteURL)
	local := gitsnap.RepoPath(dir, gitTestName)

	first, _ := gitSnapshot(t, env)
	state1 := testutil.TreeState(t, data)
	again, errOut := gitSnapshot(t, env)
	if again != first || !strings.Contains(errOut, "unchanged") {
		t.Errorf("snapshot of an unchanged tree printed %s (want %s) and did not report it unchanged: %s", again, first, errOut)
	}
	if n := gitCount(t, local); n != "1" {
		t.Errorf("git rev-list --count %s: %s commits after two snapshots of one tree, want 1", gitBranch, n)
	}
	packsBefore := gitPacks(t, local)
	must(t, os.WriteFile(filepath.Join(data, "new.txt"), []byte("added on day two"), 0o640))
	second, _ := gitSnapshot(t, env)
	state2 := testutil.TreeState(t, data)
	if second == first {
		t.Fatalf("a changed tree gave the same commit %s", first)
	}
	if n := gitCount(t, local); n != "2" {
		t.Errorf("git rev-list --count: %s commits, want 2", n)
	}
	if got := gitRev(t, remoteRepo, gitBranch); got != second {
		t.Errorf("the remote's branch is at %q, want %s", got, second)
	}
	var added []string
	for _, p := range gitPacks(t, local) {
		if !slices.Contains(packsBefore, p) {
			added = append(added, p)
		}
	}

	t.Run("List", func(t *testing.T) {
		log := gitList(t, env)
		if len(log) != 2 || log[0].Short != second || log[1].Short != first || log[0].Changed != 1 || log[1].Changed != 7 ||
			log[0].Time.Before(log[1].Time) {
			t.Errorf("list --json: %+v; want %s (1 file changed) then %s (RichTree's 7 files)", log, second, first)
		}
		code, out, errOut := entrypointWithin(t, time.Minute, env, "list")
		if code != 0 || !strings.HasPrefix(out, "COMMIT") || !strings.Contains(out, first) || strings.Index(out, second) > strings.Index(out, first) {
			t.Errorf("list: exit %d:\n%s%s\nwant both commits, newest first", code, out, errOut)
		}
	})

	t.Run("Verify", func(t *testing.T) {
		code, out, errOut := entrypointWithin(t, time.Minute, env, "verify")
		if code != 0 || !strings.HasPrefix(out, "OK") {
			t.Fatalf("verify: exit %d: %s %s", code, out, errOut)
		}
		// A byte flipped in the pack of the second snapshot, in a copy.
		if len(added) != 1 {
			t.Fatalf("the second snapshot added packs %v, want one", added)
		}
		damaged := filepath.Join(t.TempDir(), "repo")
		if out, err := exec.Command("cp", "-a", dir, damaged).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v: %s", err, out)
		}
		pack := filepath.Join(gitsnap.RepoPath(damaged, gitTestName), "objects", "pack", filepath.Base(added[0]))
		b, err := os.ReadFile(pack)
		must(t, err)
		b[len(b)/2] ^= 0x40
		must(t, os.Chmod(pack, 0o600))
		must(t, os.WriteFile(pack, b, 0o444))
		code, out, errOut = entrypointWithin(t, time.Minute, append(env, "SNAPVISOR_DIR="+damaged), "verify")
		if code != exitFailure || !strings.HasPrefix(out, "FAILED") || !strings.Contains(out, second) {
			t.Errorf("verify after a flipped byte: exit %d, printed:\n%s%s\nwant exit %d naming commit %s", code, out, errOut, exitFailure, second)
		}
	})

	t.Run("Restore", func(t *testing.T) {
		emptyDir(t, data)
		if code, out, errOut := entrypointWithin(t, 2*time.Minute, env, "restore", "--discard-current", "latest"); code != 0 {
			t.Fatalf("restore latest: exit %d: %s %s", code, out, errOut)
		}
		testutil.SameState(t, state2, testutil.TreeState(t, data))
		if code, out, errOut := entrypointWithin(t, 2*time.Minute, env, "restore", "--discard-current", first); code != 0 {
			t.Fatalf("restore %s: exit %d: %s %s", first, code, out, errOut)
		}
		testutil.SameState(t, state1, testutil.TreeState(t, data))
	})

	// A new node: a new volume and an empty SNAPVISOR_DIR.
	freshDir := filepath.Join(t.TempDir(), "fresh")
	fresh, freshRepo := append(slices.Clone(env), "SNAPVISOR_DIR="+freshDir), gitsnap.RepoPath(freshDir, gitTestName)
	if !t.Run("RestoreFrom", func(t *testing.T) {
		emptyDir(t, data)
		if code, out, errOut := entrypointWithin(t, 2*time.Minute, fresh, "restore", "--discard-current", "--from", remoteURL); code != 0 {
			t.Fatalf("restore --from %s: exit %d: %s %s", remoteURL, code, out, errOut)
		}
		testutil.SameState(t, state2, testutil.TreeState(t, data))
		if log := gitList(t, fresh); len(log) != 2 || log[0].Short != second || log[1].Short != first {
			t.Fatalf("list after restore --from: %+v, want the remote's %s and %s (the branch adopted)", log, second, first)
		}
		must(t, os.WriteFile(filepath.Join(data, "third.txt"), []byte("day three"), 0o644))
		third, _ := gitSnapshot(t, fresh)
		if got := gitRev(t, remoteRepo, gitBranch); got != third {
			t.Errorf("the remote's branch is at %q after the new node's snapshot, want %s", got, third)
		}
		if n := gitCount(t, remoteRepo); n != "3" {
			t.Errorf("the remote's branch has %s commits, want 3 (the history continued)", n)
		}
	}) {
		return
	}

	t.Run("Diverged", func(t *testing.T) {
		// A second writer: a commit made with the git CLI and pushed.
		clone := filepath.Join(t.TempDir(), "clone")
		storetest.GitCLI(t, "", "clone", "-q", "--branch", gitBranch, remoteRepo, clone)
		must(t, os.WriteFile(filepath.Join(clone, "by-hand.txt"), []byte("by hand\n"), 0o644))
		storetest.GitCLI(t, clone, "add", "-A")
		storetest.GitCLI(t, clone, "commit", "-q", "-m", "by hand")
		storetest.GitCLI(t, clone, "push", "-q", "origin", gitBranch)
		theirs := gitRev(t, remoteRepo, gitBranch)

		must(t, os.WriteFile(filepath.Join(data, "fourth.txt"), []byte("day four"), 0o644))
		code, out, errOut := entrypointWithin(t, 2*time.Minute, fresh, "snapshot")
		ours := strings.TrimSpace(out)
		// As the archive format: exit 1, the local snapshot kept and printed.
		if code != exitFailure || !strings.Contains(errOut, remoteURL) || !strings.Contains(errOut, "diverged") {
			t.Errorf("snapshot with a diverged remote: exit %d: %s\nwant exit %d naming the remote and the divergence", code, errOut, exitFailure)
		}
		if got := gitRev(t, freshRepo, gitBranch); got == "" || got != ours {
			t.Errorf("the local branch is at %q, printed %q: the snapshot must be committed locally and printed", got, ours)
		}
		if got := gitRev(t, remoteRepo, gitBranch); got != theirs {
			t.Errorf("the remote's branch moved to %s, want it left at %s (never overwritten)", got, theirs)
		}
	})
}

// TestEntrypoint_GitAutoRestore: as PID 1 with an empty data directory the
// git format restores before the service starts: from the local
// repository, else from the first remote that has the branch (git+file,
// git+ssh), which becomes the local branch; with no repository anywhere
// the service starts on empty data; with an unreadable remote and no
// local repository it does not start.
func TestEntrypoint_GitAutoRestore(t *testing.T) {
	requireRoot(t)
	pid1Env := []string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@yearly"}
	// startSeeing starts the entrypoint whose service lists the data
	// directory into a file; it returns the exit code and that listing.
	startSeeing := func(t *testing.T, env []string, data string) (int, string, *proc) {
		t.Helper()
		seen := filepath.Join(t.TempDir(), "seen")
		p := startPID1(t, append(env, pid1Env...), "--", "sh", "-c", "ls -A "+data+" > "+seen)
		code := p.wait(t, 2*time.Minute)
		b, err := os.ReadFile(seen)
		if err != nil {
			return code, "(the service did not run)", p
		}
		return code, string(b), p
	}

	t.Run("LocalRepository", func(t *testing.T) {
		env, data, _ := gitSetup(t)
		gitSnapshot(t, env)
		want := testutil.TreeState(t, data)
		emptyDir(t, data)
		code, seen, p := startSeeing(t, env, data)
		if code != 0 || !strings.Contains(seen, "a.txt") {
			t.Fatalf("exit %d, the service saw %q at start; want the restored data; stderr:\n%s", code, seen, p.stderr)
		}
		testutil.SameState(t, want, testutil.TreeState(t, data))
	})

	// fromRemote snapshots into the bare repository at remotePath (through
	// git+file), deletes SNAPVISOR_DIR and the data, and starts with
	// remoteEnv: the data and the branch come back from the remote.
	fromRemote := func(t *testing.T, remotePath string, remoteEnv ...string) {
		env, data, dir := gitSetup(t)
		pushed, _ := gitSnapshot(t, append(env, "SNAPVISOR_GIT_REMOTES=git+file://"+remotePath))
		want := testutil.TreeState(t, data)
		must(t, os.RemoveAll(dir))
		emptyDir(t, data)
		code, seen, p := startSeeing(t, append(env, remoteEnv...), data)
		if code != 0 || !strings.Contains(seen, "a.txt") {
			t.Fatalf("exit %d, the service saw %q at start; want the data restored from the remote; stderr:\n%s", code, seen, p.stderr)
		}
		testutil.SameState(t, want, testutil.TreeState(t, data))
		if got := gitRev(t, gitsnap.RepoPath(dir, gitTestName), gitBranch); got != pushed {
			t.Errorf("the local repository's branch is at %q after the restore, want the remote's %s", got, pushed)
		}
	}
	t.Run("FileRemote", func(t *testing.T) {
		remote := filepath.Join(t.TempDir(), "remote.git")
		fromRemote(t, remote, "SNAPVISOR_GIT_REMOTES=git+file://"+remote)
	})
	t.Run("SSHRemote", func(t *testing.T) {
		s := storetest.StartSSHD(t)
		remote := filepath.Join(t.TempDir(), "remote.git")
		// An empty remote first: the first that has the branch counts.
		empty := filepath.Join(t.TempDir(), "empty.git")
		storetest.InitBare(t, empty)
		fromRemote(t, remote, "SNAPVISOR_GIT_REMOTES=git+file://"+empty+","+s.GitURL(remote),
			"SNAPVISOR_GIT_SSH_KEY_FILE="+s.KeyFile, "SNAPVISOR_GIT_KNOWN_HOSTS="+s.KnownHosts)
	})

	t.Run("NoRepositoryAnywhere", func(t *testing.T) {
		env, data, _ := gitSetup(t)
		emptyDir(t, data)
		code, seen, p := startSeeing(t, append(env, "SNAPVISOR_GIT_REMOTES=git+file://"+filepath.Join(t.TempDir(), "not-yet.git")), data)
		if code != 0 || seen != "" {
			t.Fatalf("exit %d, the service saw %q; want it started on empty data; stderr:\n%s", code, seen, p.stderr)
		}
	})

	t.Run("UnreachableRemote", func(t *testing.T) {
		keyDir := t.TempDir()
		key, knownHosts := filepath.Join(keyDir, "key"), filepath.Join(keyDir, "known_hosts")
		storetest.WriteKey(t, key)
		must(t, os.WriteFile(knownHosts, nil, 0o644))
		env, data, _ := gitSetup(t)
		emptyDir(t, data)
		url := "git+ssh://root@" + storetest.DeadAddr(t) + "/srv/repo.git"
		code, seen, p := startSeeing(t, append(env, "SNAPVISOR_GIT_REMOTES="+url, "SNAPVISOR_GIT_SSH_KEY_FILE="+key, "SNAPVISOR_GIT_KNOWN_HOSTS="+knownHosts), data)
		if code == 0 || seen != "(the service did not run)" {
			t.Errorf("exit %d, the service saw %q: want a refused start with an unreadable remote and no local repository", code, seen)
		}
		if msg := p.stderr.String(); !strings.Contains(msg, url) || !strings.Contains(msg, "not starting the service") {
			t.Errorf("the failure does not name the remote and say the service was not started:\n%s", msg)
		}
		if left := entriesOf(data); len(left) != 0 {
			t.Errorf("the data directory holds %v, want it untouched (empty)", left)
		}
	})
}

// TestEntrypoint_GitRedisStory is TestEntrypoint_RemoteFullStory in the git
// format: PID 1 wrapping redis-server commits its RDB and pushes it to a
// git+https remote (git http-backend, token) and a git+file one; the data
// directory and SNAPVISOR_DIR are deleted; started again, the entrypoint
// restores the data from the first remote before redis starts.
func TestEntrypoint_GitRedisStory(t *testing.T) {
	requireRoot(t)
	testutil.RequireTool(t, "redis-server")
	testutil.RequireTool(t, "redis-cli")
	root := t.TempDir()
	data, backups := filepath.Join(root, "data"), filepath.Join(root, "backups")
	httpRoot, fileRemote := filepath.Join(root, "http"), filepath.Join(root, "file", "redis.git")
	storetest.InitBare(t, filepath.Join(httpRoot, "redis.git"))
	g := storetest.StartGitHTTP(t, httpRoot)
	port := storetest.FreePort(t)
	env := []string{"SNAPVISOR_FORMAT=git", "SNAPVISOR_GIT_REMOTES=" + g.GitURL("redis.git") + ",git+file://" + fileRemote,
		"SNAPVISOR_GIT_PASSWORD=" + g.Token, "SNAPVISOR_GIT_CA_FILE=" + g.CAFile,
		"SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@yearly", "SNAPVISOR_NAME=redis",
		"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + backups, "SNAPVISOR_CONTROL_SOCKET=" + sockPath(t),
		"SNAPVISOR_PRE_COMMAND=" + redisBGSAVE(port)}
	branch := gitsnap.Settings{}.BranchOr("redis")
	redis := redisArgv(t, port, data)
	p := startPID1(t, env, redis...)
	pid1 := p.pid1(t)
	writeKeys(t, port)
	res := clientSnapshot(t, env, "--json")
	var r jobs.Result
	if err := json.Unmarshal([]byte(res.out), &r); res.code != 0 || err != nil {
		t.Fatalf("snapshot: exit %d, %v: %s %s", res.code, err, res.out, res.stderr)
	}
	if len(r.Remotes) != 2 || r.Remotes[0].Error != "" || r.Remotes[1].Error != "" {
		t.Fatalf("push results %+v, want two successful remotes; git http-backend:\n%s", r.Remotes, g.Stderr)
	}
	// Without --json it prints the commit, as the standalone one does (here
	// within SNAPVISOR_MIN_INTERVAL: the same run's result, with a note).
	if res := clientSnapshot(t, env); res.code != 0 || !strings.HasPrefix(res.out, r.Snapshot+" ") {
		t.Errorf("snapshot: exit %d, printed %q: want the short hash %s first", res.code, res.out, r.Snapshot)
	}
	_ = syscall.Kill(pid1, syscall.SIGTERM)
	if got := p.wait(t, 15*time.Second); got != 0 {
		t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
	}
	if strings.Contains(p.stderr.String(), g.Token) {
		t.Error("the log shows SNAPVISOR_GIT_PASSWORD")
	}
	for _, repo := range []string{filepath.Join(httpRoot, "redis.git"), fileRemote} {
		if got := storetest.GitCLI(t, repo, "ls-tree", "--name-only", branch); gitRev(t, repo, branch) != r.Snapshot || !strings.Contains(got, "dump.rdb") {
			t.Fatalf("%s: branch %s at %q holding %q, want %s with dump.rdb", repo, branch, gitRev(t, repo, branch), got, r.Snapshot)
		}
	}

	// The node is gone: no data, no local repository.
	must(t, os.RemoveAll(data))
	must(t, os.RemoveAll(backups))
	requests := g.Requests()
	p = startPID1(t, env, redis...)
	pid1 = p.pid1(t)
	requireRestoredFirst(t, port, time.Minute)
	if g.Requests() == requests {
		t.Error("the restore did not read the git+https remote (the first one)")
	}
	if got := gitRev(t, gitsnap.RepoPath(backups, "redis"), branch); got != r.Snapshot {
		t.Errorf("the new local repository's branch is at %q, want %s (the remote's history adopted)", got, r.Snapshot)
	}
	_ = syscall.Kill(pid1, syscall.SIGTERM)
	if got := p.wait(t, 15*time.Second); got != 0 {
		t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
	}
}
