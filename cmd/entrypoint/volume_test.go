//go:build !initonly

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEntrypoint_FreshExt4Volume: the new-node story. A fresh ext4 volume
// (only lost+found) as the data directory, an empty local snapshot
// directory, and a file:// remote holding the good snapshots of the old
// node (same source base name): auto-restore restores them before the
// service starts, the service sees the data, and lost+found stays.
func TestEntrypoint_FreshExt4Volume(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	remote := filepath.Join(root, "remote")
	good := filepath.Join(root, "old-node", "data")
	if err := os.MkdirAll(good, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(good, "db.rdb"), []byte("precious customer data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The old node's snapshots, in the layout of a file:// remote.
	snap := exec.Command(binPath, "snapshot")
	snap.Env = append(os.Environ(), "SNAPVISOR_SOURCE="+good, "SNAPVISOR_DIR="+remote, "SNAPVISOR_CONTROL_SOCKET="+sockPath(t))
	if out, err := snap.CombinedOutput(); err != nil {
		t.Fatalf("snapshot: %v\n%s", err, out)
	}
	before, _ := filepath.Glob(filepath.Join(remote, "snapshot-*"))

	data := filepath.Join(root, "new-node", "data")
	mountExt4(t, data)
	bk := filepath.Join(root, "new-node", "backups")
	seen, ls := filepath.Join(root, "seen"), filepath.Join(root, "ls")
	p := startPID1(t, []string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + bk,
		"SNAPVISOR_REMOTES=file://" + remote, "SNAPVISOR_CONTROL_SOCKET=" + sockPath(t)},
		"--", "sh", "-c", `cat "$SNAPVISOR_SOURCE/db.rdb" > "$1"; ls -A "$SNAPVISOR_SOURCE" > "$2"`, "sh", seen, ls)
	if code := p.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr)
	}
	if b, err := os.ReadFile(seen); err != nil || string(b) != "precious customer data\n" {
		t.Fatalf("the service saw %q (%v), want the restored data; stderr:\n%s", b, err, p.stderr)
	}
	if b, _ := os.ReadFile(ls); string(b) != "db.rdb\nlost+found\n" {
		t.Errorf("the service saw the entries %q, want db.rdb and lost+found", b)
	}
	if fi, err := os.Lstat(filepath.Join(data, "lost+found")); err != nil || !fi.IsDir() {
		t.Errorf("lost+found is gone: %v", err)
	}
	if after, _ := filepath.Glob(filepath.Join(remote, "snapshot-*")); len(after) != len(before) {
		t.Errorf("the remote held %v, now %v", before, after)
	}
}

// TestEntrypoint_HostileChecksumFile: a FIFO or a symlink to /dev/zero
// named like a snapshot's .sha256 in SNAPVISOR_DIR neither hangs `list`
// nor keeps PID 1 from starting the service (with data present, and with
// an empty data directory, where auto-restore lists the snapshots).
func TestEntrypoint_HostileChecksumFile(t *testing.T) {
	requireRoot(t)
	for _, plant := range []struct {
		name string
		f    func(p string) error
	}{
		{"FIFO", func(p string) error { return syscall.Mkfifo(p, 0o600) }},
		{"SymlinkToDevZero", func(p string) error { return os.Symlink("/dev/zero", p) }},
	} {
		for _, withData := range []bool{true, false} {
			name := plant.name + "/EmptyData"
			if withData {
				name = plant.name + "/DataPresent"
			}
			t.Run(name, func(t *testing.T) {
				root := t.TempDir()
				bk, data := filepath.Join(root, "bk"), filepath.Join(root, "data")
				if err := os.MkdirAll(bk, 0o700); err != nil {
					t.Fatal(err)
				}
				if withData {
					writeTree(t, data, "live", "f")
				}
				archive := filepath.Join(bk, "snapshot-20200101T000000Z.tar.gz")
				if err := os.WriteFile(archive, []byte("junk"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := plant.f(archive + ".sha256"); err != nil {
					t.Fatal(err)
				}
				env := []string{"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + bk, "SNAPVISOR_CONTROL_SOCKET=" + sockPath(t)}

				list := start(t, env, binPath, "list")
				if code := list.wait(t, 10*time.Second); code != 0 {
					t.Fatalf("list exited %d; stderr:\n%s", code, list.stderr)
				}
				ran := filepath.Join(root, "ran")
				p := startPID1(t, append(env, "SNAPVISOR_BACKUP=true"), "--", "sh", "-c", `echo ran > "$1"`, "sh", ran)
				if code := p.wait(t, 20*time.Second); code != 0 {
					t.Fatalf("exit %d; stderr:\n%s", code, p.stderr)
				}
				if !fileHas(ran, "ran") {
					t.Fatalf("the service did not run; stderr:\n%s", p.stderr)
				}
			})
		}
	}
}

// TestEntrypoint_NonRootSnapshot: a service running as a non-root uid on a
// volume root with a root-only 0700 lost+found can snapshot (lost+found is
// skipped); an unreadable entry elsewhere fails the snapshot with a message
// naming it and the SNAPVISOR_EXCLUDE value that leaves it out, which then works.
func TestEntrypoint_NonRootSnapshot(t *testing.T) {
	requireRoot(t)
	const uid = 2171
	// The binary and the test's directories must be reachable for that uid.
	for _, d := range []string{filepath.Dir(binPath)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, bk := filepath.Join(root, "data"), filepath.Join(root, "bk")
	writeTree(t, data, "live", "db", "sub/table")
	lf := filepath.Join(data, "lost+found")
	writeTree(t, lf, "fsck", "#12")
	if err := os.Chmod(lf, 0o700); err != nil { // root-owned, as mkfs.ext4 makes it
		t.Fatal(err)
	}
	if err := os.MkdirAll(bk, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{data, filepath.Join(data, "db"), filepath.Join(data, "sub"), filepath.Join(data, "sub", "table"), bk} {
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	// snapshotAs runs `entrypoint snapshot` as uid: its printed archive path, and its log.
	snapshotAs := func(t *testing.T, extra ...string) (string, string, error) {
		t.Helper()
		cmd := exec.Command(binPath, "snapshot")
		cmd.Env = append(os.Environ(), append([]string{"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + bk,
			"SNAPVISOR_CONTROL_SOCKET=" + filepath.Join(root, "ctl.sock")}, extra...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), stderr.String(), err
	}

	archive, log, err := snapshotAs(t)
	if err != nil {
		t.Fatalf("snapshot as uid %d with a root-only lost+found: %v\n%s", uid, err, log)
	}
	listing, lerr := exec.Command("tar", "-tzf", archive).CombinedOutput()
	if lerr != nil || strings.Contains(string(listing), "lost+found") || !strings.Contains(string(listing), "data/sub/table") {
		t.Fatalf("archive %s: %v\n%s", archive, lerr, listing)
	}

	secret := filepath.Join(data, "sub", "secret")
	writeTree(t, data, "root only", "sub/secret")
	if err := os.Chmod(secret, 0o600); err != nil {
		t.Fatal(err)
	}
	_, log, err = snapshotAs(t)
	want := "cannot read " + secret + " as uid 2171: make it readable for that user, or leave it out of snapshots with SNAPVISOR_EXCLUDE=sub/secret"
	if err == nil || !strings.Contains(log, want) {
		t.Fatalf("snapshot with an unreadable file: %v\n%s\nwant the message %q", err, log, want)
	}
	if _, log, err := snapshotAs(t, "SNAPVISOR_EXCLUDE=sub/secret"); err != nil {
		t.Fatalf("snapshot with the suggested SNAPVISOR_EXCLUDE: %v\n%s", err, log)
	}
}
