package restic

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapvisor/internal/testutil"
	"snapvisor/store"
	"snapvisor/store/storetest"
)

// cliRepo is a repository as the restic CLI reaches it: its repository
// string, the environment it reads credentials from, and its -o options.
type cliRepo struct {
	Repo string
	Env  []string
	Opts []string // each "key=value", passed as -o
}

// run runs the restic CLI on the repository and fails the test unless it
// exits 0; it returns stdout and stderr together.
func (c cliRepo) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.try(t, args...)
	if err != nil {
		t.Fatalf("restic -r %s %s: %v\n%s", c.Repo, strings.Join(args, " "), err, out)
	}
	return out
}

// try runs the restic CLI on the repository and returns its output
// (stdout and stderr) and exit error.
func (c cliRepo) try(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := c.cmd(ctx, t, args...).CombinedOutput()
	return string(out), err
}

// stdout runs the restic CLI and returns its stdout alone (JSON), and its
// exit error with stderr.
func (c cliRepo) stdout(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := c.cmd(ctx, t, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, stderr.String())
	}
	return string(out), err
}

func (c cliRepo) cmd(ctx context.Context, t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	testutil.RequireTool(t, "restic")
	argv := []string{"-r", c.Repo, "--no-cache"}
	for _, o := range c.Opts {
		argv = append(argv, "-o", o)
	}
	cmd := exec.CommandContext(ctx, "restic", append(argv, args...)...)
	cmd.Env = append(append(os.Environ(), "RESTIC_PASSWORD="+testPassword), c.Env...)
	return cmd
}

// changeTree changes src as a day of use does: a file rewritten, one
// added, one deleted, the large one grown.
func changeTree(t *testing.T, src, tag string) {
	t.Helper()
	writeTree(t, src, map[string]string{"sub/b.txt": "world, " + tag, "new-" + tag + ".txt": "new " + tag})
	if err := os.Remove(filepath.Join(src, "exec.sh")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(src, "sub", "deep", "big"), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString(strings.Repeat(tag, 100_000))
	must(t, err)
	must(t, f.Close())
}

// ourRestore restores, through this package, the newest snapshot of repo
// r holding src into a new directory, and returns it.
func ourRestore(t *testing.T, r *Repo, src string) string {
	t.Helper()
	ctx := context.Background()
	x, err := r.LoadIndex(ctx)
	must(t, err)
	snaps, err := r.Snapshots(ctx)
	must(t, err)
	if len(snaps) == 0 {
		t.Fatalf("%s: no snapshot", r.Name())
	}
	n, err := r.FindPath(ctx, x, snaps[len(snaps)-1], src)
	must(t, err)
	out := filepath.Join(t.TempDir(), "ours")
	must(t, os.Mkdir(out, 0o700))
	if _, err := r.RestoreTree(ctx, x, n, out, RestoreOptions{Chown: os.Geteuid() == 0}); err != nil {
		t.Fatalf("%s: restore: %v", r.Name(), err)
	}
	return out
}

// ourCheck fails the test unless Check with ReadData finds r sound.
func ourCheck(t *testing.T, r *Repo) {
	t.Helper()
	rep, err := r.Check(context.Background(), CheckOptions{ReadData: true})
	must(t, err)
	if !rep.OK() {
		t.Fatalf("%s: check --read-data: errors %v, damaged %v", r.Name(), rep.Errors, rep.Damaged)
	}
}

// TestBackup_Stores: our repositories on every kind of store. On file, S3
// (MinIO) and SFTP (sshd) the restic CLI 0.14 is the oracle both ways: our
// snapshot passes `restic check --read-data` and `restic restore latest`
// gives the source back identical; a `restic backup` of the changed tree
// restores through ours identical; our next snapshot on top of restic's
// passes check and restores through restic. Azure (Azurite) and GCS
// (fake-gcs-server), which restic 0.14 cannot reach (no custom endpoint),
// go through ours only: two snapshots, Check ReadData, RestoreTree.
func TestBackup_Stores(t *testing.T) {
	type backend struct {
		name string
		// open starts the server and returns our store and the CLI's view
		// of the same place (Repo empty: the CLI cannot reach it), and
		// another repository string of it that the CLI accepts (or the same).
		open func(t *testing.T) (st store.Store, cli, alt cliRepo)
	}
	backends := []backend{
		{"file", func(t *testing.T) (store.Store, cliRepo, cliRepo) {
			dir := filepath.Join(t.TempDir(), "repo")
			return openFileStore(t, dir), cliRepo{Repo: dir}, cliRepo{Repo: "local:" + dir}
		}},
		{"s3", func(t *testing.T) (store.Store, cliRepo, cliRepo) {
			m := storetest.StartMinIO(t)
			m.MakeBucket(t, "snapvisor")
			st := storetest.Open(t, m.URL("snapvisor", "team/repo"), storetest.MinIOConfig())
			cli := cliRepo{Repo: fmt.Sprintf("s3:http://%s/snapvisor/team/repo", m.Addr), Env: m.Env()}
			return st, cli, cli
		}},
		{"sftp", func(t *testing.T) (store.Store, cliRepo, cliRepo) {
			testutil.RequireTool(t, "ssh")
			sv := storetest.StartSSHD(t)
			st := storetest.Open(t, sv.URL("repo"), sv.Config())
			// restic 0.14 runs ssh(1): the key and the host key are the
			// test server's, given through sftp.command.
			ssh := fmt.Sprintf("ssh -F /dev/null -p %s -i %s -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s %s@127.0.0.1 -s sftp",
				storetest.PortOf(sv.Addr), sv.KeyFile, sv.KnownHosts, sv.User)
			opts := []string{"sftp.command=" + ssh}
			dir := filepath.Join(sv.Root, "repo")
			return st, cliRepo{Repo: fmt.Sprintf("sftp:%s@127.0.0.1:%s", sv.User, dir), Opts: opts},
				cliRepo{Repo: fmt.Sprintf("sftp://%s@%s/%s", sv.User, sv.Addr, dir), Opts: opts} // sftp://user@host:port//absolute/path
		}},
		{"azure", func(t *testing.T) (store.Store, cliRepo, cliRepo) {
			return storetest.AzureBackend(t).Open(t, "team/repo"), cliRepo{}, cliRepo{}
		}},
		{"gs", func(t *testing.T) (store.Store, cliRepo, cliRepo) {
			return storetest.GCSBackend(t).Open(t, "team/repo"), cliRepo{}, cliRepo{}
		}},
		// The stores of the persistence document's external-storage and
		// database schemes: no restic CLI backend reaches them.
		{"redis", func(t *testing.T) (store.Store, cliRepo, cliRepo) {
			return storetest.RedisBackend(t).Open(t, "repo"), cliRepo{}, cliRepo{}
		}},
		{"postgres", func(t *testing.T) (store.Store, cliRepo, cliRepo) {
			return storetest.PostgresBackend(t).Open(t, "repo"), cliRepo{}, cliRepo{}
		}},
		{"sqlite", func(t *testing.T) (store.Store, cliRepo, cliRepo) {
			return storetest.SQLiteBackend(t).Open(t, "repo"), cliRepo{}, cliRepo{}
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			st, cli, alt := b.open(t)
			src := filepath.Join(t.TempDir(), "data")
			richTree(t, src)
			r := openOrInit(t, st)
			backupNow(t, src, r)
			ourCheck(t, r)
			if cli.Repo == "" {
				sameTree(t, src, ourRestore(t, r, src))
				changeTree(t, src, "day2")
				must(t, reload(r))
				res := backupNow(t, src, r)
				if res[0].Snapshot.Parent == nil {
					t.Error("the second snapshot names no parent")
				}
				ourCheck(t, r)
				sameTree(t, src, ourRestore(t, r, src))
				return
			}

			t.Run("OursThenTheirs", func(t *testing.T) {
				cli.run(t, "check", "--read-data")
				out := t.TempDir()
				cli.run(t, "restore", "latest", "--target", out)
				sameTree(t, src, filepath.Join(out, src))
			})
			t.Run("TheirsThenOurs", func(t *testing.T) {
				changeTree(t, src, "day2")
				alt.run(t, "backup", src)
				sameTree(t, src, ourRestore(t, r, src))
				ourCheck(t, r)
			})
			t.Run("OursAfterTheirs", func(t *testing.T) {
				changeTree(t, src, "day3")
				must(t, reload(r))
				backupNow(t, src, r)
				cli.run(t, "check", "--read-data")
				out := t.TempDir()
				cli.run(t, "restore", "latest", "--target", out)
				sameTree(t, src, filepath.Join(out, src))
			})
		})
	}
}

// reload loads r's index again (after another client wrote to it).
func reload(r *Repo) error {
	_, err := r.LoadIndex(context.Background())
	return err
}

// TestBackup_SourceBelowSymlink: a source whose path passes through a
// symlinked directory (/var/run, a volume mounted through a link) is
// recorded as the restic CLI records it, every component a directory:
// the snapshot is taken, passes restic check, and restores identical
// through restic and through ours.
func TestBackup_SourceBelowSymlink(t *testing.T) {
	tmp := t.TempDir()
	real := filepath.Join(tmp, "real", "data")
	richTree(t, real)
	must(t, os.Symlink("real", filepath.Join(tmp, "link")))
	src := filepath.Join(tmp, "link", "data")
	repoDir := filepath.Join(tmp, "repo")
	r := openOrInit(t, openFileStore(t, repoDir))
	backupNow(t, src, r)
	cli := cliRepo{Repo: repoDir}
	cli.run(t, "check", "--read-data")
	out := t.TempDir()
	cli.run(t, "restore", "latest", "--target", out)
	sameTree(t, real, filepath.Join(out, src))
	sameTree(t, real, ourRestore(t, r, src))
}

// TestBackup_Version1: a repository the restic CLI made in format version
// 1 (no compression) gets snapshots it can read: restic check
// --read-data passes and restic restores them identical.
func TestBackup_Version1(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "data")
	richTree(t, src)
	repoDir := filepath.Join(tmp, "repo")
	cli := cliRepo{Repo: repoDir}
	cli.run(t, "init", "--repository-version", "1")
	cli.run(t, "backup", src)
	r := openOrInit(t, openFileStore(t, repoDir))
	if v := r.Config().Version; v != 1 {
		t.Fatalf("repository version %d, want 1", v)
	}
	changeTree(t, src, "day2")
	backupNow(t, src, r)
	cli.run(t, "check", "--read-data")
	out := t.TempDir()
	cli.run(t, "restore", "latest", "--target", out)
	sameTree(t, src, filepath.Join(out, src))
	sameTree(t, src, ourRestore(t, r, src))
}
