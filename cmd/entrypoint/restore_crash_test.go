//go:build !initonly

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapvisor/internal/testutil"
)

// manifestScript prints, for the directory $1, every path (restore's work
// files and lost+found at the root left out) and a content hash of every
// file, sorted: what a service sees of its data.
const manifestScript = `cd "$1" || exit 1
find . \( -path './.snapvisor-*' -o -path ./lost+found \) -prune -o -print | LC_ALL=C sort | while IFS= read -r p; do
  if [ -f "$p" ] && [ ! -L "$p" ]; then echo "$p $(sha256sum < "$p" | cut -c1-16)"; else echo "$p"; fi
done`

// manifest runs manifestScript on dir directly.
func manifest(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", manifestScript, "sh", dir).Output()
	if err != nil {
		t.Fatalf("manifest of %s: %v", dir, err)
	}
	return string(out)
}

// writeTree writes files named by names under root, each saying version and its name.
func writeTree(t *testing.T, root, version string, names ...string) {
	t.Helper()
	for _, n := range names {
		p := filepath.Join(root, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(version+" "+n+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// mountTmpfs mounts a tmpfs at dir (created) until the test ends.
func mountTmpfs(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
}

// mountExt4 mounts a fresh loop ext4 file system (only lost+found in it) at dir until the test ends.
func mountExt4(t *testing.T, dir string) {
	t.Helper()
	testutil.RequireTool(t, "mkfs.ext4")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "vol.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a loop ext4: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
}

// renameSnapshot renames the snapshot archive p to base (beside it), with a
// .sha256 naming it, and returns its new path.
func renameSnapshot(t *testing.T, p, base string) string {
	t.Helper()
	sum, err := os.ReadFile(p + ".sha256")
	if err != nil {
		t.Fatal(err)
	}
	digest, _, _ := strings.Cut(string(sum), " ")
	np := filepath.Join(filepath.Dir(p), base)
	if err := os.Rename(p, np); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(np+".sha256", []byte(digest+"  "+base+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p + ".sha256"); err != nil {
		t.Fatal(err)
	}
	return np
}

// straced runs argv under strace, injecting sig at the nth rename
// (renameat2, renameat or rename) when n > 0; with n == 0 it counts the
// renames instead. It returns the count (n == 0) and how the run ended.
func straced(t *testing.T, env []string, n int, sig string, argv ...string) (int, string) {
	t.Helper()
	out := "/dev/null"
	if n == 0 {
		out = filepath.Join(t.TempDir(), "strace.out")
	}
	args := []string{"-f", "-qq", "-o", out, "-e", "trace=renameat2,rename,renameat"}
	if n > 0 {
		args = append(args, "-e", fmt.Sprintf("inject=renameat2,rename,renameat:signal=%s:when=%d", sig, n))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "strace", append(args, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	how := "exit 0"
	if err != nil {
		how = err.Error()
	}
	if n > 0 {
		return 0, how + "\n" + string(b)
	}
	if err != nil {
		t.Fatalf("uninterrupted run under strace: %v\n%s", err, b)
	}
	trace, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, l := range strings.Split(string(trace), "\n") {
		if strings.Contains(l, "rename") && !strings.Contains(l, "resumed>") {
			count++
		}
	}
	return count, ""
}

// TestEntrypoint_RestoreInterrupted: a KILL or a TERM at every rename of a
// restore (strace -e inject), then a normal start of the entrypoint as PID
// 1: the service sees entirely the old or entirely the new data, never a
// mix, for an auto-restore into an empty volume (a mount point: the entry
// swap) and for `entrypoint restore` over old data in a mount point and in
// a plain directory (RENAME_EXCHANGE).
func TestEntrypoint_RestoreInterrupted(t *testing.T) {
	requireRoot(t)
	testutil.RequireTool(t, "strace")
	root := t.TempDir()
	bk := filepath.Join(root, "bk")
	// Two snapshots: the restore command asks for the older one, so that a
	// start that auto-restores the newest instead (the target went missing)
	// is told apart; auto-restore takes the newest.
	asked := filepath.Join(root, "asked", "data")
	writeTree(t, asked, "asked", "a", "b", "c", "sub/d", "only-new/e")
	newest := filepath.Join(root, "newest", "data")
	writeTree(t, newest, "newest", "a", "b", "c", "sub/d", "only-new/e")
	oldRef := filepath.Join(root, "old", "data")
	oldNames := []string{"x", "y", "sub/z"}
	writeTree(t, oldRef, "old", oldNames...)
	var names []string
	for _, src := range []string{asked, newest} {
		snap := exec.Command(binPath, "snapshot")
		snap.Env = append(os.Environ(), "SNAPVISOR_SOURCE="+src, "SNAPVISOR_DIR="+bk, "SNAPVISOR_CONTROL_SOCKET="+sockPath(t))
		var stderr strings.Builder
		snap.Stderr = &stderr
		out, err := snap.Output()
		if err != nil {
			t.Fatalf("snapshot: %v\n%s", err, stderr.String())
		}
		p := strings.TrimSpace(string(out))
		if src == asked {
			// Older by name, whatever the clock says (one snapshot per second).
			p = renameSnapshot(t, p, "snapshot-20200101T000000Z.tar.gz")
		}
		names = append(names, filepath.Base(p))
	}
	if names[0] == names[1] {
		t.Fatalf("two snapshots named %s", names[0])
	}
	wantOld := manifest(t, oldRef)
	empty := manifest(t, t.TempDir())

	cases := []struct {
		name  string
		mount bool
		old   bool     // old data in the target (else an empty volume)
		want  string   // the snapshot's tree
		argv  []string // what runs under strace (binPath first)
		next  []string // more environment of the next start
	}{
		{"AutoRestoreIntoEmptyVolume", true, false, manifest(t, newest), []string{"unshare", "--pid", "--fork", "--kill-child", "--mount-proc", binPath, "--", "true"}, nil},
		{"RestoreCommandMountPoint", true, true, manifest(t, asked), []string{binPath, "restore", names[0]}, nil},
		{"RestoreCommandPlainDir", false, true, manifest(t, asked), []string{binPath, "restore", names[0]}, nil},
		// Without auto-restore the next start still finishes or rolls back the swap.
		{"RestoreCommandMountPointRestoreNever", true, true, manifest(t, asked), []string{binPath, "restore", names[0]}, []string{"SNAPVISOR_RESTORE=never"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// fresh makes the target and returns the entrypoint's environment.
			fresh := func(t *testing.T) (string, []string) {
				data := filepath.Join(t.TempDir(), "data")
				if tc.mount {
					mountTmpfs(t, data)
				}
				if tc.old {
					writeTree(t, data, "old", oldNames...)
				}
				return data, []string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + bk, "SNAPVISOR_CONTROL_SOCKET=" + sockPath(t)}
			}
			_, env := fresh(t)
			total, _ := straced(t, env, 0, "", tc.argv...)
			if total < 2 {
				t.Fatalf("only %d renames counted", total)
			}
			for _, sig := range []string{"KILL", "TERM"} {
				for n := 1; n <= total; n++ {
					t.Run(fmt.Sprintf("%s/rename%d", sig, n), func(t *testing.T) {
						data, env := fresh(t)
						_, how := straced(t, env, n, sig, tc.argv...)
						// A normal start: what does the service see?
						out := filepath.Join(t.TempDir(), "seen")
						p := startPID1(t, append(env, tc.next...), "--", "sh", "-c", manifestScript+` > "$2"`, "sh", data, out)
						if code := p.wait(t, time.Minute); code != 0 {
							t.Fatalf("the next start exited %d (interrupted run: %s); stderr:\n%s", code, how, p.stderr)
						}
						b, err := os.ReadFile(out)
						if err != nil {
							t.Fatal(err)
						}
						seen := string(b)
						wantNew := tc.want
						switch {
						case seen == wantNew:
						case seen == wantOld && tc.old:
						case seen == empty && !tc.old:
							t.Fatalf("the service started on an empty volume although a snapshot exists")
						default:
							t.Fatalf("the service saw neither the old nor the new data after %s at rename %d (interrupted run: %s):\n%s\nold:\n%s\nnew:\n%s", sig, n, how, seen, wantOld, wantNew)
						}
						left, _ := filepath.Glob(filepath.Join(filepath.Dir(data), ".data.restore*"))
						inside, _ := filepath.Glob(filepath.Join(data, ".snapvisor-restore*"))
						if l := append(left, inside...); len(l) > 0 {
							t.Errorf("work files left after the next start: %v", l)
						}
					})
				}
			}
		})
	}
}
