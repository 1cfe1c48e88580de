//go:build !initonly

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapvisor/internal/testutil"
)

// otherUID is the unprivileged user of the tests that need two users.
const otherUID = 2171

// entrypointAs runs the binary as uid (0: as the test) and returns its exit code and combined output.
func entrypointAs(t *testing.T, uid int, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	code := 0
	if err != nil {
		if cmd.ProcessState == nil {
			t.Fatalf("%v: %v", args, err)
		}
		code = cmd.ProcessState.ExitCode()
	}
	return code, out.String()
}

// sharedDir returns a fresh directory that otherUID can reach (mode 0755,
// like everything on the way to the binary), for tests with two users.
func sharedDir(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	d, err := os.MkdirTemp("", "sv-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	for _, p := range []string{d, filepath.Dir(binPath)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// mkdirOwned creates dir with mode, owned by uid.
func mkdirOwned(t *testing.T, dir string, mode os.FileMode, uid int) string {
	t.Helper()
	if err := os.MkdirAll(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestEntrypoint_ConfigChecks: values that pass a syntax check but cannot
// work on this host are configuration errors (exit 78 naming the variable)
// before the service starts, and nothing at the paths involved is touched.
func TestEntrypoint_ConfigChecks(t *testing.T) {
	requireRoot(t) // bind and tmpfs mounts
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, root string) []string // extra environment
		code    int
		mention string
		after   func(t *testing.T, root string) // checks that nothing was touched
	}{
		{"DIR through a symlink into the source", func(t *testing.T, root string) []string {
			must(t, os.Symlink(filepath.Join(root, "data"), filepath.Join(root, "datalink")))
			return []string{"SNAPVISOR_DIR=" + filepath.Join(root, "datalink", "backups")}
		}, exitConfig, "SNAPVISOR_DIR", nothingIn("data", "backups")},
		{"DIR through a bind mount of the source", func(t *testing.T, root string) []string {
			mnt := filepath.Join(root, "mnt")
			must(t, os.Mkdir(mnt, 0o755))
			must(t, syscall.Mount(filepath.Join(root, "data"), mnt, "", syscall.MS_BIND, ""))
			t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
			return []string{"SNAPVISOR_DIR=" + filepath.Join(mnt, "backups")}
		}, exitConfig, "SNAPVISOR_DIR", nothingIn("data", "backups")},
		{"file:// remote inside the source", func(t *testing.T, root string) []string {
			return []string{"SNAPVISOR_REMOTES=file://" + filepath.Join(root, "data", "offsite")}
		}, exitConfig, "SNAPVISOR_REMOTES", nothingIn("data", "offsite")},
		{"file:// remote through a symlink into the source", func(t *testing.T, root string) []string {
			must(t, os.Symlink(filepath.Join(root, "data"), filepath.Join(root, "datalink")))
			return []string{"SNAPVISOR_REMOTES=file://" + filepath.Join(root, "datalink", "offsite")}
		}, exitConfig, "SNAPVISOR_REMOTES", nothingIn("data", "offsite")},
		{"SOURCE a regular file", func(t *testing.T, root string) []string {
			must(t, os.WriteFile(filepath.Join(root, "file"), []byte("x"), 0o644))
			return []string{"SNAPVISOR_SOURCE=" + filepath.Join(root, "file")}
		}, exitConfig, "SNAPVISOR_SOURCE", nil},
		{"SOURCE a symlink loop", func(t *testing.T, root string) []string {
			must(t, os.Symlink("loop", filepath.Join(root, "loop")))
			return []string{"SNAPVISOR_SOURCE=" + filepath.Join(root, "loop")}
		}, exitConfig, "SNAPVISOR_SOURCE", nil},
		{"DIR a regular file", func(t *testing.T, root string) []string {
			must(t, os.WriteFile(filepath.Join(root, "file"), []byte("x"), 0o644))
			return []string{"SNAPVISOR_DIR=" + filepath.Join(root, "file")}
		}, exitConfig, "SNAPVISOR_DIR", nil},
		{"DIR under /proc", func(t *testing.T, root string) []string {
			return []string{"SNAPVISOR_DIR=/proc/snapvisor-backups"}
		}, exitConfig, "SNAPVISOR_DIR", nil},
		{"DIR on a read-only file system", func(t *testing.T, root string) []string {
			ro := filepath.Join(root, "ro")
			must(t, os.Mkdir(ro, 0o755))
			must(t, syscall.Mount("tmpfs", ro, "tmpfs", syscall.MS_RDONLY, "size=1m"))
			t.Cleanup(func() { syscall.Unmount(ro, syscall.MNT_DETACH) })
			return []string{"SNAPVISOR_DIR=" + filepath.Join(ro, "backups")}
		}, exitConfig, "SNAPVISOR_DIR", nil},
		{"NAME too long for a file name", func(t *testing.T, root string) []string {
			return []string{"SNAPVISOR_NAME=" + strings.Repeat("n", 300)}
		}, exitConfig, "SNAPVISOR_NAME", nil},
		{"s3 endpoint port 0", remotes("s3://b/p?endpoint=127.0.0.1:0&tls=false"), exitConfig, "SNAPVISOR_REMOTES", nil},
		{"s3 endpoint port 99999", remotes("s3://b/p?endpoint=127.0.0.1:99999&tls=false"), exitConfig, "SNAPVISOR_REMOTES", nil},
		{"s3 endpoint without a host", remotes("s3://b/p?endpoint=:9000&tls=false"), exitConfig, "SNAPVISOR_REMOTES", nil},
		{"sftp port 0", remotes("sftp://u@127.0.0.1:0/p"), exitConfig, "SNAPVISOR_REMOTES", nil},
		{"azure endpoint port 0", remotes("azure://c/p?endpoint=http://127.0.0.1:0/devstoreaccount1"), exitConfig, "SNAPVISOR_REMOTES", nil},
		{"METRICS_ADDR 256.1.1.1", withEnv("SNAPVISOR_METRICS_ADDR=256.1.1.1:9"), exitConfig, "SNAPVISOR_METRICS_ADDR", nil},
		{"METRICS_ADDR not of this host", withEnv("SNAPVISOR_METRICS_ADDR=192.0.2.1:9150"), exitConfig, "SNAPVISOR_METRICS_ADDR", nil},
		{"METRICS_ADDR busy is not a configuration error", withEnv("SNAPVISOR_METRICS_ADDR=" + busy.Addr().String()), exitFailure, "SNAPVISOR_METRICS_ADDR", nil},
		{"CONTROL_SOCKET too long", func(t *testing.T, root string) []string {
			return []string{"SNAPVISOR_CONTROL_SOCKET=" + filepath.Join(root, strings.Repeat("s", 120))}
		}, exitConfig, "SNAPVISOR_CONTROL_SOCKET", nil},
		{"CONTROL_SOCKET a directory", func(t *testing.T, root string) []string {
			must(t, os.MkdirAll(filepath.Join(root, "sockdir", "keep"), 0o755))
			return []string{"SNAPVISOR_CONTROL_SOCKET=" + filepath.Join(root, "sockdir")}
		}, exitConfig, "SNAPVISOR_CONTROL_SOCKET", func(t *testing.T, root string) {
			if _, err := os.Stat(filepath.Join(root, "sockdir", "keep")); err != nil {
				t.Errorf("the directory at the socket path was touched: %v", err)
			}
		}},
		{"CONTROL_SOCKET a regular file", func(t *testing.T, root string) []string {
			must(t, os.WriteFile(filepath.Join(root, "precious.txt"), []byte("precious"), 0o644))
			return []string{"SNAPVISOR_CONTROL_SOCKET=" + filepath.Join(root, "precious.txt")}
		}, exitConfig, "SNAPVISOR_CONTROL_SOCKET", func(t *testing.T, root string) {
			if b, err := os.ReadFile(filepath.Join(root, "precious.txt")); err != nil || string(b) != "precious" {
				t.Errorf("the file at the socket path: %q, %v", b, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			must(t, os.MkdirAll(filepath.Join(root, "data"), 0o755))
			must(t, os.WriteFile(filepath.Join(root, "data", "f"), []byte("v1"), 0o644))
			marker := filepath.Join(root, "started")
			env := append([]string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_SOURCE=" + filepath.Join(root, "data"),
				"SNAPVISOR_DIR=" + filepath.Join(root, "backups"), "SNAPVISOR_CONTROL_SOCKET=" + filepath.Join(root, "ctl.sock")},
				tc.setup(t, root)...)
			p := start(t, env, binPath, "--", "touch", marker)
			if got := p.wait(t, 30*time.Second); got != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", got, tc.code, p.stderr)
			}
			if !strings.Contains(p.stderr.String(), tc.mention) {
				t.Errorf("error does not name %s:\n%s", tc.mention, p.stderr)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the service was started")
			}
			if tc.after != nil {
				tc.after(t, root)
			}
		})
	}
}

func withEnv(kv ...string) func(*testing.T, string) []string {
	return func(*testing.T, string) []string { return kv }
}

func remotes(url string) func(*testing.T, string) []string {
	return withEnv("SNAPVISOR_REMOTES=" + url)
}

// nothingIn returns a check that root/dir/name was not created.
func nothingIn(dir, name string) func(t *testing.T, root string) {
	return func(t *testing.T, root string) {
		if _, err := os.Lstat(filepath.Join(root, dir, name)); err == nil {
			t.Errorf("%s was created inside %s", name, dir)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestEntrypoint_ConfigErrorsKept: bad values that gave exit 78 before the
// checks above (a sample of the hostile test's ~100) still do.
func TestEntrypoint_ConfigErrorsKept(t *testing.T) {
	for _, kv := range []string{
		"SNAPVISOR_KEEP=-1", "SNAPVISOR_KEEP=99999999999999999999", "SNAPVISOR_KEEP=١٢", "SNAPVISOR_KEEP= 3",
		"SNAPVISOR_STOP_TIMEOUT=10", "SNAPVISOR_STOP_TIMEOUT=-1s", "SNAPVISOR_EXIT_TIMEOUT=0s", "SNAPVISOR_JITTER=1 h",
		"SNAPVISOR_SCHEDULE=*/0 * * * *", "SNAPVISOR_SCHEDULE=@reboot", "SNAPVISOR_SCHEDULE=CRON_TZ=Mars/Base 0 * * * *",
		"SNAPVISOR_SCHEDULE=@every 10ms", "SNAPVISOR_FREEZE=yes", "SNAPVISOR_RESTORE=always", "SNAPVISOR_BACKUP=maybe",
		"SNAPVISOR_COMPRESSION=bzip2", "SNAPVISOR_COMPRESSION_LEVEL=10", "SNAPVISOR_NAME=../x", "SNAPVISOR_NAME=",
		"SNAPVISOR_EXCLUDE=[x", "SNAPVISOR_SOURCE=/", "SNAPVISOR_SOURCE=/a/data,/b/data", "SNAPVISOR_DIR=/data/backups",
		"SNAPVISOR_DIR= ", "SNAPVISOR_REMOTES=ftp://h/p", "SNAPVISOR_REMOTES=s3://b/p?tls=maybe",
		"SNAPVISOR_REMOTES=sftp://u:pw@h/p", "SNAPVISOR_REMOTES=file:///", "SNAPVISOR_REMOTES=s3://key:pw@b/p",
		"SNAPVISOR_METRICS_ADDR=127.0.0.1", "SNAPVISOR_METRICS_ADDR=:http", "SNAPVISOR_METRICS_ADDR=:70000",
		"SNAPVISOR_LOG_LEVEL=loud", "SNAPVISOR_ENCRYPTION=rot13", "SNAPVISOR_HEALTH_MAX_AGE=-1m",
		"SNAPVISOR_PROGRESS_INTERVAL=100ms", "SNAPVISOR_PROGRESS_INTERVAL=-30s", "SNAPVISOR_PROGRESS_INTERVAL=soon",
	} {
		name, _, _ := strings.Cut(kv, "=")
		t.Run(kv, func(t *testing.T) {
			root := t.TempDir()
			marker := filepath.Join(root, "started")
			env := []string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_SOURCE=/data", "SNAPVISOR_DIR=" + filepath.Join(root, "backups"),
				"SNAPVISOR_CONTROL_SOCKET=" + filepath.Join(root, "ctl.sock"), kv}
			code, out := entrypointAs(t, 0, env, "--", "touch", marker)
			if code != exitConfig || !strings.Contains(out, name) {
				t.Fatalf("exit %d, want %d naming %s:\n%s", code, exitConfig, name, out)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the service was started")
			}
		})
	}
}

// TestEntrypoint_RestoreDirThroughSymlink is finding 5: SNAPVISOR_DIR reached
// through a symlink into the source. `restore --discard-current` used to
// delete every snapshot with the old data; now every command refuses the
// configuration before it writes or deletes anything.
func TestEntrypoint_RestoreDirThroughSymlink(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	must(t, os.MkdirAll(data, 0o755))
	must(t, os.WriteFile(filepath.Join(data, "f"), []byte("v1"), 0o644))
	must(t, os.Symlink(data, filepath.Join(root, "datalink")))
	env := []string{"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + filepath.Join(root, "datalink", "backups"),
		"SNAPVISOR_CONTROL_SOCKET=" + filepath.Join(root, "ctl.sock")}
	for _, args := range [][]string{{"snapshot"}, {"restore", "--discard-current", "latest"}, {"list"}} {
		if code, out := entrypointAs(t, 0, env, args...); code != exitConfig || !strings.Contains(out, "SNAPVISOR_DIR") {
			t.Errorf("%v: exit %d, want %d naming SNAPVISOR_DIR:\n%s", args, code, exitConfig, out)
		}
	}
	if b, err := os.ReadFile(filepath.Join(data, "f")); err != nil || string(b) != "v1" {
		t.Errorf("data: %q, %v", b, err)
	}
	if ents := entriesOf(data); len(ents) != 1 {
		t.Errorf("the source holds %v, want only f", ents)
	}
}

// TestEntrypoint_DirNotWritable: as a non-root user, a SNAPVISOR_DIR owned
// by root (and one that would be created in a root-owned directory) is a
// configuration error naming the variable and the uid, before the service starts.
func TestEntrypoint_DirNotWritable(t *testing.T) {
	shared := sharedDir(t)
	data := mkdirOwned(t, filepath.Join(shared, "data"), 0o755, otherUID)
	sock := mkdirOwned(t, filepath.Join(shared, "sock"), 0o700, otherUID)
	rootOwned := mkdirOwned(t, filepath.Join(shared, "backups"), 0o755, 0)
	for _, dir := range []string{rootOwned, filepath.Join(rootOwned, "sub")} {
		t.Run(dir, func(t *testing.T) {
			marker := filepath.Join(sock, "started")
			env := []string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + dir,
				"SNAPVISOR_CONTROL_SOCKET=" + filepath.Join(sock, "ctl.sock")}
			code, out := entrypointAs(t, otherUID, env, "--", "touch", marker)
			if code != exitConfig || !strings.Contains(out, "SNAPVISOR_DIR") || !strings.Contains(out, fmt.Sprintf("uid %d", otherUID)) {
				t.Fatalf("exit %d, want %d naming SNAPVISOR_DIR and uid %d:\n%s", code, exitConfig, otherUID, out)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the service was started")
			}
		})
	}
}

// startServer starts a backing-up entrypoint as uid around `sleep 60` and
// waits until its control socket answers.
func startServer(t *testing.T, uid int, env []string, sock string) *proc {
	t.Helper()
	cmd := exec.Command(binPath, "--", "sleep", "60")
	cmd.Env = append(os.Environ(), env...)
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	p := startCmd(t, cmd)
	t.Cleanup(func() { stopGently(t, p) })
	testutil.Eventually(t, 20*time.Second, "the control socket appears", func() bool {
		fi, err := os.Lstat(sock)
		return err == nil && fi.Mode().Type() == os.ModeSocket
	})
	return p
}

// TestEntrypoint_ControlSocketPeers is finding 17 and the status cosmetic:
// a server of another uid pre-bound in a shared directory is refused by the
// client (it talks only to root or its own uid, by SO_PEERCRED), a user who
// cannot reach a root server's socket is told so, and the owner's uid works.
func TestEntrypoint_ControlSocketPeers(t *testing.T) {
	shared := sharedDir(t)
	data := mkdirOwned(t, filepath.Join(shared, "data"), 0o755, otherUID)
	backups := mkdirOwned(t, filepath.Join(shared, "backups"), 0o700, otherUID)
	public := mkdirOwned(t, filepath.Join(shared, "public"), 0o1777, 0)
	base := []string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + backups, "SNAPVISOR_LOG_FORMAT=console"}

	t.Run("impostor of another uid", func(t *testing.T) {
		sock := filepath.Join(public, "snapvisor.sock")
		env := append(base, "SNAPVISOR_CONTROL_SOCKET="+sock)
		startServer(t, otherUID, env, sock)
		for _, cmd := range []string{"status", "health", "snapshot"} {
			code, out := entrypointAs(t, 0, env, cmd)
			if code == 0 || !strings.Contains(out, "refusing the control socket") || !strings.Contains(out, fmt.Sprintf("uid %d", otherUID)) {
				t.Errorf("root's %s against uid %d's socket: exit %d, want a refusal naming the uid:\n%s", cmd, otherUID, code, out)
			}
		}
		if code, out := entrypointAs(t, otherUID, env, "status"); code != 0 {
			t.Errorf("the server's own uid: status exit %d:\n%s", code, out)
		}
	})
	t.Run("no access to root's socket", func(t *testing.T) {
		private := mkdirOwned(t, filepath.Join(shared, "private"), 0o700, 0)
		sock := filepath.Join(private, "ctl.sock")
		env := append(base, "SNAPVISOR_CONTROL_SOCKET="+sock)
		startServer(t, 0, env, sock)
		code, out := entrypointAs(t, otherUID, env, "status")
		if code == 0 || !strings.Contains(out, "a snapvisor is running") || !strings.Contains(out, "permission denied") ||
			!strings.Contains(out, "run as root") || strings.Contains(out, "no running snapvisor") {
			t.Errorf("uid %d's status against root's socket: exit %d, want 'running but cannot reach (permission denied): run as root':\n%s", otherUID, code, out)
		}
		if code, out := entrypointAs(t, 0, env, "status"); code != 0 {
			t.Errorf("root's status: exit %d:\n%s", code, out)
		}
	})
}

// TestEntrypoint_ControlSocketDefault: without SNAPVISOR_CONTROL_SOCKET the
// socket is /run/snapvisor/control.sock in a 0700 directory, and the client
// finds it there. Run in a mount namespace with its own /run.
func TestEntrypoint_ControlSocketDefault(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	data := filepath.Join(root, "data")
	must(t, os.MkdirAll(data, 0o755))
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SNAPVISOR_CONTROL_SOCKET=") && !strings.HasPrefix(kv, "XDG_RUNTIME_DIR=") {
			environ = append(environ, kv)
		}
	}
	env := append(environ, "SNAPVISOR_BACKUP=true", "SNAPVISOR_SOURCE="+data, "SNAPVISOR_DIR="+filepath.Join(root, "backups"))
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o mode=0755 snapvisor-test-run /run && exec "$0" -- sleep 60`, binPath)
	cmd.Env = env
	p := startCmd(t, cmd)
	t.Cleanup(func() { stopGently(t, p) })
	pid := p.cmd.Process.Pid // unshare and sh exec: the entrypoint keeps the pid
	sock := fmt.Sprintf("/proc/%d/root/run/snapvisor/control.sock", pid)
	testutil.Eventually(t, 20*time.Second, "the default control socket appears", func() bool {
		fi, err := os.Lstat(sock)
		return err == nil && fi.Mode().Type() == os.ModeSocket
	})
	if fi, err := os.Stat(filepath.Dir(sock)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("/run/snapvisor: %v, %v; want mode 0700", fi.Mode(), err)
	}
	if _, err := os.Lstat("/run/snapvisor/control.sock"); err == nil {
		t.Log("note: a /run/snapvisor/control.sock exists outside the test's namespace")
	}
	status := exec.Command("nsenter", "--mount", "--target", fmt.Sprint(pid), binPath, "status")
	status.Env = env
	if out, err := status.CombinedOutput(); err != nil || !strings.Contains(string(out), "schedule") {
		t.Fatalf("status in the namespace: %v\n%s", err, out)
	}
}

// stopGently stops an entrypoint with TERM (forwarded to its service) and
// waits for it, so that no service outlives the test.
func stopGently(t *testing.T, p *proc) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Errorf("entrypoint did not stop on TERM")
	}
}
