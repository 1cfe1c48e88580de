package snapshot

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Names used inside a target that is a mount point. Create leaves top-level
// entries with these prefixes out of snapshots.
const (
	stagingPrefix    = ".snapvisor-restore-"
	preRestorePrefix = ".snapvisor-pre-restore-"
)

// swapRename puts staging in place of target by renames: target becomes
// <target>.pre-restore-<stamp> ("" when there was no target). undo reverts
// and reports whether staging is back at its path.
func swapRename(target, staging, stamp string, log *zap.Logger) (string, func() bool, error) {
	if fi, err := os.Lstat(target); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		// Restore resolves symlinks first: one appearing now is not replaced by a directory.
		return "", nil, fmt.Errorf("%s is a symlink now: not replacing it with a directory", target)
	}
	previous, err := moveAside(target, stamp)
	if err != nil {
		return "", nil, err
	}
	if err := renameNoReplace(staging, target); err != nil {
		if previous != "" {
			os.Rename(previous, target)
		}
		return "", nil, err
	}
	if err := syncDir(filepath.Dir(target)); err != nil {
		log.Warn("restore: cannot sync directory", zap.Error(err))
	}
	undo := func() bool {
		if err := os.Rename(target, staging); err != nil {
			log.Error("restore: rollback failed", zap.String("target", target), zap.Error(err))
			return false
		}
		if previous != "" {
			if err := os.Rename(previous, target); err != nil {
				log.Error("restore: rollback failed", zap.String("target", target), zap.Error(err))
			}
		}
		return true
	}
	return previous, undo, nil
}

// moveAside renames target to <target>.pre-restore-<stamp>; "" when target does not exist.
func moveAside(target, stamp string) (string, error) {
	if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	for i := 0; i < 100; i++ {
		previous := target + ".pre-restore-" + stamp
		if i > 0 {
			previous += fmt.Sprintf("-%d", i)
		}
		err := renameNoReplace(target, previous)
		if err == nil {
			return previous, nil
		}
		if !errors.Is(err, unix.EEXIST) && !strings.Contains(err.Error(), "already exists") {
			return "", fmt.Errorf("move the current %s aside: %w", target, err)
		}
	}
	return "", fmt.Errorf("move the current %s aside: too many earlier pre-restore copies", target)
}

// swapEntries swaps the contents of a target that is a mount point with those
// of staging, a directory inside it: the current entries move into
// <target>/.snapvisor-pre-restore-<stamp>, the staged ones into target, and
// target takes the staged root's owner, mode and times. It is not atomic; undo
// moves everything back.
func swapEntries(target, staging, stamp string, log *zap.Logger) (string, func() bool, error) {
	root, err := os.Lstat(staging) // before moving entries changes its times
	if err != nil {
		return "", nil, err
	}
	entries, err := os.ReadDir(target)
	if err != nil {
		return "", nil, err
	}
	var previous string
	var aside, placed []string
	undo := func() bool {
		ok := true
		for _, n := range placed {
			if err := os.Rename(filepath.Join(target, n), filepath.Join(staging, n)); err != nil {
				log.Error("restore: rollback failed", zap.String("entry", n), zap.Error(err))
				ok = false
			}
		}
		for _, n := range aside {
			if err := os.Rename(filepath.Join(previous, n), filepath.Join(target, n)); err != nil {
				log.Error("restore: rollback failed", zap.String("entry", n), zap.Error(err))
				ok = false
			}
		}
		if previous != "" && ok {
			os.Remove(previous)
		}
		return ok
	}
	for _, e := range entries {
		n := e.Name()
		if filepath.Join(target, n) == staging || strings.HasPrefix(n, preRestorePrefix) || strings.HasPrefix(n, stagingPrefix) {
			continue
		}
		if previous == "" {
			previous, err = os.MkdirTemp(target, preRestorePrefix+stamp+"-*")
			if err != nil {
				return "", nil, err
			}
		}
		if err := os.Rename(filepath.Join(target, n), filepath.Join(previous, n)); err != nil {
			undo()
			return "", nil, err
		}
		aside = append(aside, n)
	}
	staged, err := os.ReadDir(staging)
	if err != nil {
		undo()
		return "", nil, err
	}
	for _, e := range staged {
		n := e.Name()
		if err := renameNoReplace(filepath.Join(staging, n), filepath.Join(target, n)); err != nil {
			undo()
			return "", nil, err
		}
		placed = append(placed, n)
	}
	if err := os.Remove(staging); err != nil {
		log.Warn("restore: cannot remove the empty staging directory", zap.String("path", staging), zap.Error(err))
	}
	if err := copyRootMeta(root, target); err != nil {
		undo()
		return "", nil, err
	}
	if err := syncDir(target); err != nil {
		log.Warn("restore: cannot sync directory", zap.Error(err))
	}
	undoAll := func() bool {
		if err := os.Mkdir(staging, 0o700); err != nil {
			return false
		}
		return undo()
	}
	return previous, undoAll, nil
}

// copyRootMeta gives dst the owner (as root), mode and times of fi.
func copyRootMeta(fi fs.FileInfo, dst string) error {
	st := fi.Sys().(*syscall.Stat_t)
	if os.Geteuid() == 0 {
		if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if err := os.Chmod(dst, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// isMountPoint reports whether path (symlinks resolved) is a mount point, from /proc/self/mountinfo.
func isMountPoint(path string) (bool, error) {
	real, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMount(fields[4]) == real {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMount decodes the octal escapes (\040 for a space) of mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, ok := octal(s[i+1 : i+4]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal(s string) (byte, bool) {
	if len(s) != 3 {
		return 0, false
	}
	var v int
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v*8 + int(c-'0')
	}
	return byte(v), v < 256
}

// removeStaleStaging deletes staging directories of interrupted restores matching pattern in dir.
func removeStaleStaging(dir, pattern string, log *zap.Logger) {
	matches, _ := filepath.Glob(filepath.Join(dir, pattern))
	for _, m := range matches {
		if fi, err := os.Lstat(m); err != nil || !fi.IsDir() {
			continue
		}
		makeRemovable(m)
		if err := os.RemoveAll(m); err != nil {
			log.Warn("restore: cannot remove a staging directory left by an interrupted restore", zap.String("path", m), zap.Error(err))
			continue
		}
		log.Info("restore: removed a staging directory left by an interrupted restore", zap.String("path", m))
	}
}

// makeRemovable gives every directory under root an owner-writable mode.
func makeRemovable(root string) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
}
