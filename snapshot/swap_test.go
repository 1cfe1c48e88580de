package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"snapvisor/internal/testutil"
)

// mountExt4 mounts a fresh loop ext4 file system (with its lost+found) at
// dir until the test ends; it skips (fails when CI=true) without root.
func mountExt4(t *testing.T, dir string) {
	t.Helper()
	testutil.RequireTool(t, "mkfs.ext4")
	must(t, os.MkdirAll(dir, 0o755))
	img := filepath.Join(t.TempDir(), "vol.img")
	must(t, os.WriteFile(img, nil, 0o600))
	must(t, os.Truncate(img, 32<<20))
	run(t, "", "mkfs.ext4", "-q", "-F", img)
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		testutil.Unavailable(t, "cannot mount a loop ext4 (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
}

// content describes the tree at root for comparison by content: each
// entry's type, mode and, for files, a content hash (for symlinks the
// target); times are left out. Restore's work files and lost+found at the
// root are left out too (they are not data).
func content(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel != "." && !strings.Contains(rel, "/") && skippedAtRoot(rel, d.IsDir()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += " " + hex.EncodeToString(sum[:8])
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		}
		out[rel] = desc
		return nil
	}))
	return out
}

func sameContent(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func describe(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s %s\n", k, m[k])
	}
	return b.String()
}

// fillTree writes a small tree whose every file says which version it is.
func fillTree(t *testing.T, root, version string, names ...string) {
	t.Helper()
	for _, n := range names {
		writeFile(t, filepath.Join(root, n), []byte(version+" "+n+"\n"), 0o640)
	}
	must(t, os.Symlink(names[0], filepath.Join(root, "link-"+version)))
}

// crashMode is what the test does at the chosen rename of a swap.
type crashMode int

const (
	failRename crashMode = iota // the rename fails (EIO): restore must roll back
	stopBefore                  // the process "dies" just before the rename
	stopAfter                   // ... just after it
)

func (m crashMode) String() string { return [...]string{"Fail", "StopBefore", "StopAfter"}[m] }

var errCrash = errors.New("simulated crash")

// renames counts the renames of a restore (through the hooks) and fails or
// stops at number at (1-based; 0: never).
type renames struct {
	n, at      int
	mode       crashMode
	noExchange bool // the file system cannot RENAME_EXCHANGE (EINVAL, like NFS)
}

func (r *renames) hooks() hooks {
	return hooks{renameat2: func(oldPath, newPath string, flags uint) error {
		if r.noExchange && flags&unix.RENAME_EXCHANGE != 0 {
			return unix.EINVAL
		}
		r.n++
		if r.n == r.at {
			switch r.mode {
			case failRename:
				return unix.EIO
			case stopBefore:
				panic(errCrash)
			}
		}
		err := unix.Renameat2(unix.AT_FDCWD, oldPath, unix.AT_FDCWD, newPath, flags)
		if r.n == r.at && r.mode == stopAfter {
			panic(errCrash)
		}
		return err
	}}
}

// restoreUntilCrash runs restore with r's hooks; crashed reports a simulated crash.
func restoreUntilCrash(t *testing.T, cfg Config, archive string, opts RestoreOptions, r *renames) (crashed bool, err error) {
	t.Helper()
	defer func() {
		if v := recover(); v != nil {
			if v != errCrash {
				panic(v)
			}
			crashed = true
		}
	}()
	return false, restore(context.Background(), cfg, archive, opts, testLogger(t), r.hooks())
}

// swapTarget is one kind of restore target.
type swapTarget struct {
	name  string
	base  string
	setup func(t *testing.T, dir string) // makes dir, an empty directory or mount point
}

var (
	plainTarget = swapTarget{"PlainDir", "data", func(t *testing.T, dir string) { must(t, os.MkdirAll(dir, 0o755)) }}
	tmpfsTarget = swapTarget{"Tmpfs", "data", func(t *testing.T, dir string) { mountTmpfs(t, dir, "16m") }}
	ext4Target  = swapTarget{"Ext4", "data", mountExt4}
)

// TestRestore_SwapInterrupted fails or stops the restore at each rename of
// its swap, for targets that are plain directories (RENAME_EXCHANGE, and two
// renames where the file system cannot exchange) and mount points (tmpfs,
// ext4 with lost+found: the entry swap), then runs Recover: every target
// then holds entirely its previous or entirely the restored data (compared
// by content hashes), never a mix, and no work file is left.
func TestRestore_SwapInterrupted(t *testing.T) {
	cases := []struct {
		name       string
		targets    []swapTarget
		noExchange bool
	}{
		{"PlainDir", []swapTarget{plainTarget}, false},
		{"PlainDirNoExchange", []swapTarget{plainTarget}, true},
		{"Tmpfs", []swapTarget{tmpfsTarget}, false},
		{"Ext4", []swapTarget{ext4Target}, false},
		{"MountAndPlain", []swapTarget{tmpfsTarget, {"PlainDir", "other", plainTarget.setup}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The snapshot: new trees in directories of the same base names.
			srcParent := t.TempDir()
			var srcs []string
			for _, tg := range tc.targets {
				src := filepath.Join(srcParent, tg.base)
				fillTree(t, src, "new", "a", "b", "sub/c", "only-new/d")
				must(t, os.Chmod(src, 0o750))
				srcs = append(srcs, src)
			}
			cfg := testConfig(t, CompressionGzip, srcs...)
			info, err := Create(context.Background(), cfg, testLogger(t))
			must(t, err)
			var want []map[string]string
			for _, src := range srcs {
				want = append(want, content(t, src))
			}

			// fresh gives targets holding the old trees.
			fresh := func(t *testing.T) (Config, []string, []map[string]string) {
				parent := t.TempDir()
				c := cfg
				c.Sources = nil
				var old []map[string]string
				for _, tg := range tc.targets {
					dir := filepath.Join(parent, tg.base)
					tg.setup(t, dir)
					fillTree(t, dir, "old", "x", "sub/y", "sub/deeper/z")
					must(t, os.Chmod(dir, 0o700))
					c.Sources = append(c.Sources, dir)
					old = append(old, content(t, dir))
				}
				return c, c.Sources, old
			}

			// How many renames an uninterrupted restore makes.
			c, targets, _ := fresh(t)
			count := &renames{noExchange: tc.noExchange}
			if _, err := restoreUntilCrash(t, c, info.Path, RestoreOptions{}, count); err != nil {
				t.Fatal(err)
			}
			for i, target := range targets {
				if got := content(t, target); !sameContent(got, want[i]) {
					t.Fatalf("uninterrupted restore: %s holds\n%swant\n%s", target, describe(got), describe(want[i]))
				}
			}
			if count.n < 2 {
				t.Fatalf("only %d renames counted: the hook does not see the swap", count.n)
			}

			for _, mode := range []crashMode{failRename, stopBefore, stopAfter} {
				for _, discard := range []bool{false, true} {
					for n := 1; n <= count.n; n++ {
						t.Run(fmt.Sprintf("%v/discard=%v/rename%d", mode, discard, n), func(t *testing.T) {
							c, targets, old := fresh(t)
							r := &renames{at: n, mode: mode, noExchange: tc.noExchange}
							crashed, err := restoreUntilCrash(t, c, info.Path, RestoreOptions{DiscardCurrent: discard}, r)
							switch {
							case mode == failRename && err == nil:
								t.Fatal("restore succeeded although a rename of its swap failed")
							case mode != failRename && !crashed:
								t.Fatalf("no crash at rename %d (restore: %v)", n, err)
							}
							if crashed {
								if err := Recover(c, testLogger(t)); err != nil {
									t.Fatalf("Recover: %v", err)
								}
							}
							for i, target := range targets {
								got := content(t, target)
								switch {
								case sameContent(got, want[i]):
									if mode == failRename {
										t.Fatalf("%s holds the restored data although the restore failed", target)
									}
									checkPrevious(t, target, old[i], discard)
								case sameContent(got, old[i]):
									checkPrevious(t, target, nil, true)
								default:
									t.Fatalf("%s holds neither the old nor the new data:\n%sold:\n%snew:\n%s", target, describe(got), describe(old[i]), describe(want[i]))
								}
								checkNoWorkFiles(t, target)
								if tc.targets[i].name == "Ext4" {
									if fi, err := os.Lstat(filepath.Join(target, lostFound)); err != nil || !fi.IsDir() {
										t.Fatalf("lost+found of the ext4 root is gone: %v", err)
									}
								}
							}
							// Nothing is left to complete.
							if err := Recover(c, testLogger(t)); err != nil {
								t.Fatalf("second Recover: %v", err)
							}
						})
					}
				}
			}
		})
	}
}

// previousCopies lists the kept previous contents of target: beside it, or inside it (a mount point).
func previousCopies(t *testing.T, target string) []string {
	t.Helper()
	_, _, beside := besideNames(target, "")
	a, _ := filepath.Glob(beside + "*")
	b, _ := filepath.Glob(filepath.Join(target, preRestorePrefix+"*"))
	return append(a, b...)
}

// checkPrevious checks the kept previous contents of target: none when
// none is expected (discarded, or nothing was swapped), else one copy
// holding old (its root's own mode aside).
func checkPrevious(t *testing.T, target string, old map[string]string, none bool) {
	t.Helper()
	prev := previousCopies(t, target)
	if none {
		if len(prev) > 0 {
			t.Fatalf("previous contents kept in %v, want none", prev)
		}
		return
	}
	if len(prev) != 1 {
		t.Fatalf("previous contents kept in %v, want exactly one copy", prev)
	}
	got := content(t, prev[0])
	delete(got, ".")
	want := map[string]string{}
	for k, v := range old {
		want[k] = v
	}
	delete(want, ".")
	if !sameContent(got, want) {
		t.Fatalf("the kept previous contents %s hold\n%swant\n%s", prev[0], describe(got), describe(want))
	}
}

// checkNoWorkFiles fails when a journal, a journal being written or a staging directory is left.
func checkNoWorkFiles(t *testing.T, target string) {
	t.Helper()
	stagingGlob, journal, _ := besideNames(target, "")
	var left []string
	for _, g := range []string{stagingGlob, journal + "*", filepath.Join(target, stagingPrefix+"*"), filepath.Join(target, journalName+"*")} {
		m, _ := filepath.Glob(g)
		left = append(left, m...)
	}
	if len(left) > 0 {
		t.Fatalf("work files left: %v", left)
	}
}

// TestRestore_CanceledBeforeSwap: a ctx canceled by the time the archive is
// verified stops the restore before anything is swapped; staging is removed.
func TestRestore_CanceledBeforeSwap(t *testing.T) {
	f := newRestoreFixture(t)
	info, err := Create(context.Background(), f.cfg, testLogger(t))
	must(t, err)
	writeFile(t, filepath.Join(f.src, "precious.txt"), []byte("changed after the snapshot"), 0o644)
	f.want = model(t, f.src)
	ctx, cancel := context.WithCancel(context.Background())
	h := hooks{renameat2: func(o, n string, flags uint) error {
		t.Errorf("rename %s -> %s after the ctx was canceled", o, n)
		return unix.EPERM
	}}
	cancel()
	err = restore(ctx, f.cfg, info.Path, RestoreOptions{}, testLogger(t), h)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("restore = %v, want context.Canceled", err)
	}
	f.untouched(t)
}

// TestRestore_NeverAbandonsStartedSwap: a ctx canceled during the swap (a
// TERM) does not stop it: the restore completes.
func TestRestore_NeverAbandonsStartedSwap(t *testing.T) {
	for _, tg := range []swapTarget{plainTarget, tmpfsTarget} {
		t.Run(tg.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "data")
			fillTree(t, src, "new", "a", "b", "sub/c")
			cfg := testConfig(t, CompressionGzip, src)
			info, err := Create(context.Background(), cfg, testLogger(t))
			must(t, err)
			want := content(t, src)
			target := filepath.Join(t.TempDir(), "data")
			tg.setup(t, target)
			fillTree(t, target, "old", "x", "y")
			cfg.Sources = []string{target}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			h := hooks{renameat2: func(o, n string, flags uint) error {
				cancel() // a TERM arrives at the first rename (the journal's)
				return unix.Renameat2(unix.AT_FDCWD, o, unix.AT_FDCWD, n, flags)
			}}
			must(t, restore(ctx, cfg, info.Path, RestoreOptions{DiscardCurrent: true}, testLogger(t), h))
			if got := content(t, target); !sameContent(got, want) {
				t.Fatalf("target holds\n%swant\n%s", describe(got), describe(want))
			}
			checkNoWorkFiles(t, target)
		})
	}
}

// TestRecover_RemovesLeftovers: staging directories and journals being
// written, left by a restore killed before its swap, are removed; a
// journal that is not ours (damaged) stops Recover with an error naming it.
func TestRecover_RemovesLeftovers(t *testing.T) {
	t.Run("Leftovers", func(t *testing.T) {
		parent := t.TempDir()
		target := filepath.Join(parent, "data")
		writeFile(t, filepath.Join(target, "keep"), []byte("data"), 0o644)
		writeFile(t, filepath.Join(parent, ".data.restore-123", "half"), []byte("staged"), 0o644)
		writeFile(t, filepath.Join(parent, ".data.restore.journal.tmp-9"), []byte("{"), 0o600)
		writeFile(t, filepath.Join(target, stagingPrefix+"77", "half"), []byte("staged"), 0o644)
		writeFile(t, filepath.Join(target, journalName+journalTemp+"1"), []byte("{"), 0o600)
		must(t, Recover(Config{Sources: []string{target}}, testLogger(t)))
		if got := entriesOf(t, parent); len(got) != 1 {
			t.Fatalf("parent holds %v, want only data", got)
		}
		if got := entriesOf(t, target); len(got) != 1 || got[0] != "keep" {
			t.Fatalf("target holds %v, want only keep", got)
		}
	})
	t.Run("DamagedJournal", func(t *testing.T) {
		parent := t.TempDir()
		target := filepath.Join(parent, "data")
		writeFile(t, filepath.Join(target, "keep"), []byte("data"), 0o644)
		j := filepath.Join(target, journalName)
		writeFile(t, j, []byte(`{"kind":"entries","staging":"../../etc","previous":".snapvisor-pre-restore-1","phase":"out"}`+"\n"), 0o600)
		err := Recover(Config{Sources: []string{target}}, testLogger(t))
		if err == nil || !strings.Contains(err.Error(), j) {
			t.Fatalf("Recover = %v, want an error naming %s", err, j)
		}
		if got := entriesOf(t, target); len(got) != 2 {
			t.Fatalf("target holds %v, want it untouched", got)
		}
	})
}

// TestIsEmpty: missing, empty, only lost+found and our work files are
// empty; data, a lost+found that is not a directory, or a symlink are not.
func TestIsEmpty(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  bool
	}{
		{"Missing", func(t *testing.T, dir string) { must(t, os.RemoveAll(dir)) }, true},
		{"Empty", func(t *testing.T, dir string) {}, true},
		{"LostFound", func(t *testing.T, dir string) { must(t, os.Mkdir(filepath.Join(dir, lostFound), 0o700)) }, true},
		{"LostFoundAndWorkFiles", func(t *testing.T, dir string) {
			must(t, os.Mkdir(filepath.Join(dir, lostFound), 0o700))
			must(t, os.Mkdir(filepath.Join(dir, stagingPrefix+"1"), 0o700))
			must(t, os.Mkdir(filepath.Join(dir, preRestorePrefix+"20250101T000000Z-1"), 0o700))
			writeFile(t, filepath.Join(dir, journalName+journalTemp+"1"), nil, 0o600)
		}, true},
		{"File", func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "f"), nil, 0o600) }, false},
		{"LostFoundFile", func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, lostFound), nil, 0o600) }, false},
		{"LostFoundSymlink", func(t *testing.T, dir string) { must(t, os.Symlink("/", filepath.Join(dir, lostFound))) }, false},
		{"LostFoundAndData", func(t *testing.T, dir string) {
			must(t, os.Mkdir(filepath.Join(dir, lostFound), 0o700))
			must(t, os.Mkdir(filepath.Join(dir, "db"), 0o700))
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			must(t, os.Mkdir(dir, 0o755))
			tc.setup(t, dir)
			got, err := IsEmpty(dir)
			must(t, err)
			if got != tc.want {
				t.Fatalf("IsEmpty = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("FreshExt4", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		mountExt4(t, dir)
		if got, err := IsEmpty(dir); err != nil || !got {
			t.Fatalf("IsEmpty(fresh ext4) = %v, %v; want true", got, err)
		}
	})
}

// TestRestore_Locked: a restore (or Recover) never works on a target that
// another restore holds: it fails at once, naming the lock, and changes nothing.
func TestRestore_Locked(t *testing.T) {
	for _, tg := range []swapTarget{plainTarget, tmpfsTarget} {
		t.Run(tg.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "data")
			fillTree(t, src, "new", "a")
			cfg := testConfig(t, CompressionGzip, src)
			info, err := Create(context.Background(), cfg, testLogger(t))
			must(t, err)
			target := filepath.Join(t.TempDir(), "data")
			tg.setup(t, target)
			fillTree(t, target, "old", "x")
			old := content(t, target)
			cfg.Sources = []string{target}
			lockDir := filepath.Dir(target)
			if tg.name == tmpfsTarget.name {
				lockDir = target
			}
			unlock, err := flockDir(lockDir)
			must(t, err)
			err = Restore(context.Background(), cfg, info.Path, RestoreOptions{}, testLogger(t))
			if err == nil || !strings.Contains(err.Error(), "locked by another restore") {
				t.Fatalf("Restore = %v, want a lock error", err)
			}
			if err := Recover(cfg, testLogger(t)); err == nil {
				t.Fatal("Recover succeeded while another restore holds the lock")
			}
			if got := content(t, target); !sameContent(got, old) {
				t.Fatalf("target changed:\n%s", describe(got))
			}
			unlock()
			must(t, Restore(context.Background(), cfg, info.Path, RestoreOptions{}, testLogger(t)))
		})
	}
}
