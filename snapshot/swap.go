package snapshot

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"snapvisor/internal/fsx"
)

// Restore's own work files. Inside a target that is a mount point (and so at
// the root of every source) they carry these names; beside a target that is
// not one (in its parent) besideNames gives theirs. isWorkFile is the one
// test of "ours" that snapshots (walk.go), IsEmpty and the swap use.
const (
	stagingPrefix    = ".snapvisor-restore-"        // staging directory of a restore in progress
	preRestorePrefix = ".snapvisor-pre-restore-"    // previous contents kept by a restore
	journalName      = ".snapvisor-restore.journal" // the plan of a swap in progress
	journalTemp      = ".tmp-"                      // after a journal's name: a journal being written
	lostFound        = "lost+found"                 // the file system's own directory at a volume root (fsck)

	maxJournal = 16 << 10 // bytes read of a journal at most
)

// isWorkFile reports whether name, an entry at the root of a source, is one
// of restore's work files: a staging directory, a kept previous copy, the
// journal or a journal being written.
func isWorkFile(name string) bool {
	return strings.HasPrefix(name, stagingPrefix) || strings.HasPrefix(name, preRestorePrefix) ||
		name == journalName || strings.HasPrefix(name, journalName+journalTemp)
}

// skippedAtRoot reports whether an entry at the root of a source is left
// alone by snapshots, by IsEmpty and by the swap: restore's work files, and
// a lost+found directory, which belongs to the file system, not to the data.
func skippedAtRoot(name string, dir bool) bool {
	return isWorkFile(name) || (dir && name == lostFound)
}

// besideNames are the work files of a restore into a target that is not a
// mount point, kept in its parent: the staging directories (a glob), the
// journal and the first choice of name for the previous contents.
func besideNames(target, stamp string) (stagingGlob, journal, previous string) {
	dir, base := filepath.Split(target)
	return filepath.Join(dir, "."+base+".restore-*"), filepath.Join(dir, "."+base+".restore.journal"),
		filepath.Join(dir, base+".pre-restore-"+stamp)
}

// IsEmpty reports whether dir holds no data: it is missing, or it has no
// entry but a lost+found directory (a fresh ext4 volume) and restore's own
// work files. Run Recover first, so that an interrupted swap is finished
// before its work files are looked past.
func IsEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	for {
		entries, err := f.ReadDir(64)
		for _, e := range entries {
			if !skippedAtRoot(e.Name(), e.IsDir()) {
				return false, nil
			}
		}
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// A journal records one planned swap. It is written atomically before the
// swap begins (the staged data is complete, verified and synced by then),
// updated durably between the two phases of an entry swap and removed when
// the swap is complete; Recover completes the swap of every journal it
// finds. Its names are base names in the directory that holds it: the
// target for a mount point (kindEntries), the target's parent otherwise
// (kindExchange).
type journal struct {
	Kind     string   `json:"kind"`
	Target   string   `json:"target,omitempty"` // exchange: the target's base name
	Staging  string   `json:"staging"`
	Previous string   `json:"previous"` // where the previous contents go
	Discard  bool     `json:"discard"`  // remove them when the swap is complete
	Phase    string   `json:"phase,omitempty"`
	Staged   uint64   `json:"staged,omitempty"` // exchange: inode of the staging directory (same device as the journal)
	Root     rootMeta `json:"root"`             // entries: owner, mode and times the target root gets
	Old      rootMeta `json:"old"`              // entries: the target root's own, for a rollback
}

const (
	kindEntries  = "entries"  // a mount point: its entries move out to Previous, then the staged ones in
	kindExchange = "exchange" // a directory: renameat2(RENAME_EXCHANGE) with the staging directory
	kindRename   = "rename"   // no target yet: one rename, no journal

	phaseOut = "out" // entries: moving the current entries into Previous
	phaseIn  = "in"  // entries: every current entry is in Previous; moving the staged ones in
)

// rootMeta is a directory's owner, mode and times.
type rootMeta struct {
	Mode  uint32 `json:"mode"` // fs.FileMode permission and special bits
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
	Atime int64  `json:"atime"` // ns since the epoch
	Mtime int64  `json:"mtime"`
}

func metaOf(fi fs.FileInfo) rootMeta {
	st := fi.Sys().(*syscall.Stat_t)
	return rootMeta{Mode: uint32(fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)),
		UID: st.Uid, GID: st.Gid, Atime: st.Atim.Nano(), Mtime: st.Mtim.Nano()}
}

// apply gives dst m's owner (as root), mode and times.
func (m rootMeta) apply(dst string) error {
	if os.Geteuid() == 0 {
		if err := os.Lchown(dst, int(m.UID), int(m.GID)); err != nil {
			return err
		}
	}
	if err := os.Chmod(dst, fs.FileMode(m.Mode)); err != nil {
		return err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(m.Atime), unix.NsecToTimespec(m.Mtime)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// swap puts one staging directory in place of its target; its journal makes
// it complete after a crash. forward brings the target to the staged data
// (from any state a crash leaves), back returns the previous contents (in
// process, when another part of the restore fails) and finish cleans up.
type swap struct {
	j      journal
	dir    string // holds the journal and every name in it
	target string
	path   string // the journal ("" for kindRename)
	h      hooks
	log    *zap.Logger
}

func (s *swap) at(name string) string { return filepath.Join(s.dir, name) }

// planSwap plans putting staging in place of target. inside says target is
// a mount point (and staging a directory in it), whose entries are swapped.
func planSwap(target, staging, stamp string, inside, discard bool, h hooks, log *zap.Logger) (*swap, error) {
	s := &swap{target: target, h: h, log: log.With(zap.String("target", target))}
	st, err := os.Lstat(staging)
	if err != nil {
		return nil, err
	}
	if inside {
		old, err := os.Lstat(target)
		if err != nil {
			return nil, err
		}
		s.dir, s.path = target, filepath.Join(target, journalName)
		prev, err := freeName(target, preRestorePrefix+stamp+"-"+strconv.FormatUint(uint64(rand.Uint32()), 36))
		if err != nil {
			return nil, err
		}
		s.j = journal{Kind: kindEntries, Staging: filepath.Base(staging), Previous: prev, Discard: discard, Phase: phaseOut,
			Root: metaOf(st), Old: metaOf(old)}
		return s, nil
	}
	s.dir = filepath.Dir(target)
	s.j = journal{Kind: kindRename, Target: filepath.Base(target), Staging: filepath.Base(staging), Discard: discard}
	if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	_, jpath, prev := besideNames(target, stamp)
	if prev, err = freeName(s.dir, filepath.Base(prev)); err != nil {
		return nil, err
	}
	s.path, s.j.Kind, s.j.Previous, s.j.Staged = jpath, kindExchange, prev, statKey(st).ino
	return s, nil
}

// freeName returns name, or name-1, name-2 ... : the first that does not exist in dir.
func freeName(dir, name string) (string, error) {
	for i := 0; i < 100; i++ {
		n := name
		if i > 0 {
			n += "-" + strconv.Itoa(i)
		}
		if _, err := os.Lstat(filepath.Join(dir, n)); errors.Is(err, fs.ErrNotExist) {
			return n, nil
		} else if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("no free name for %s in %s: too many earlier pre-restore copies", name, dir)
}

// save writes the journal atomically and durably: a temporary file, fsynced,
// renamed over the journal, and the directory fsynced. Not fsx.WriteFile:
// a journal's temporary is named by isWorkFile's rule (journalTemp after the
// journal's name), and its rename is one of the swap's, through the hooks.
func (s *swap) save() error {
	b, err := json.Marshal(s.j)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(s.dir, filepath.Base(s.path)+journalTemp+"*")
	if err != nil {
		return fmt.Errorf("write restore journal: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.h.rename(f.Name(), s.path, 0)
	}
	if err == nil {
		err = fsx.SyncDir(s.dir)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write restore journal %s: %w", s.path, err)
	}
	return nil
}

// commit writes the journal: from here on the swap is completed, by forward
// or, after a crash, by Recover.
func (s *swap) commit() error {
	if s.path == "" {
		return nil
	}
	return s.save()
}

// done removes the journal: the swap is complete (or undone).
func (s *swap) done() error {
	if s.path == "" {
		return nil
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove restore journal: %w", err)
	}
	return fsx.SyncDir(s.dir)
}

func (s *swap) forward() error {
	switch s.j.Kind {
	case kindEntries:
		return s.forwardEntries()
	case kindExchange:
		return s.forwardExchange()
	}
	if err := s.h.renameNoReplace(s.at(s.j.Staging), s.target); err != nil {
		return err
	}
	return fsx.SyncDir(s.dir)
}

func (s *swap) back() error {
	switch s.j.Kind {
	case kindEntries:
		return s.backEntries()
	case kindExchange:
		return s.backExchange()
	}
	if _, err := os.Lstat(s.target); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return s.h.renameNoReplace(s.target, s.at(s.j.Staging))
}

// finish removes or keeps the previous contents and the journal; it returns
// the path of the kept previous contents ("" when none). Its faults are
// logged: the target holds the restored data whatever happens here.
func (s *swap) finish() string {
	prev := ""
	if s.j.Previous != "" {
		prev = s.at(s.j.Previous)
	}
	if s.j.Kind == kindEntries {
		staging := s.at(s.j.Staging) // empty but for a staged lost+found
		makeRemovable(staging)
		if err := os.RemoveAll(staging); err != nil {
			s.log.Warn("restore: cannot remove the staging directory", zap.String("path", staging), zap.Error(err))
		}
		if !s.j.Discard && os.Remove(prev) == nil {
			prev = "" // nothing was there before
		}
	}
	if _, err := os.Lstat(prev); prev != "" && err != nil {
		prev = ""
	}
	if prev != "" && s.j.Discard {
		makeRemovable(prev)
		if err := os.RemoveAll(prev); err != nil {
			s.log.Warn("restore: cannot remove the previous contents", zap.String("path", prev), zap.Error(err))
		}
		prev = ""
	}
	if err := s.done(); err != nil {
		s.log.Warn("restore: swap complete, but its journal stays (the next start completes it again)", zap.Error(err))
	}
	if s.j.Kind == kindEntries {
		// Removing work files changed the root's times: give it the restored ones.
		if err := s.j.Root.apply(s.target); err != nil {
			s.log.Warn("restore: cannot set the restored owner, mode and times of the target", zap.Error(err))
		}
	}
	return prev
}

// forwardEntries moves the target's entries into Previous (phase out), then
// the staged ones in (phase in), and gives the target the staged root's
// owner, mode and times. lost+found and work files stay where they are.
func (s *swap) forwardEntries() error {
	staging, prev := s.at(s.j.Staging), s.at(s.j.Previous)
	if s.j.Phase == phaseOut {
		if _, err := os.Lstat(staging); errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("restore: the staging directory of an interrupted swap is gone: returning the previous contents", zap.String("staging", staging))
			if err := s.backEntries(); err != nil {
				return err
			}
			return errStagingGone
		}
		if err := os.Mkdir(prev, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", prev, err)
		}
		if err := s.moveEntries(s.target, prev); err != nil {
			return err
		}
		if err := syncDirs(prev, s.target); err != nil {
			return err
		}
		s.j.Phase = phaseIn
		if err := s.save(); err != nil {
			return err
		}
	}
	if _, err := os.Lstat(staging); err == nil {
		if err := s.moveEntries(staging, s.target); err != nil {
			return err
		}
	} // else: a crash after every staged entry was moved in and staging removed
	if err := s.j.Root.apply(s.target); err != nil {
		return fmt.Errorf("set the restored owner, mode and times of %s: %w", s.target, err)
	}
	return syncDirs(staging, s.target)
}

// backEntries returns the staged entries to staging and the previous ones
// to the target, with the target root's own owner, mode and times.
func (s *swap) backEntries() error {
	staging, prev := s.at(s.j.Staging), s.at(s.j.Previous)
	if s.j.Phase == phaseIn {
		if err := os.Mkdir(staging, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := s.moveEntries(s.target, staging); err != nil {
			return err
		}
		if err := syncDirs(staging, s.target); err != nil {
			return err
		}
		s.j.Phase = phaseOut // as at the start: the current entries are in Previous
		if err := s.save(); err != nil {
			return err
		}
	}
	if _, err := os.Lstat(prev); err == nil {
		if err := s.moveEntries(prev, s.target); err != nil {
			return err
		}
		if err := os.Remove(prev); err != nil {
			s.log.Warn("restore: cannot remove the emptied previous-contents directory", zap.String("path", prev), zap.Error(err))
		}
	}
	if err := s.j.Old.apply(s.target); err != nil {
		return err
	}
	if err := fsx.SyncDir(s.target); err != nil {
		return err
	}
	if err := s.done(); err != nil {
		return err
	}
	return s.j.Old.apply(s.target) // the journal's removal changed the times
}

// moveEntries moves every entry of from into to (which must not have it),
// but those skippedAtRoot.
func (s *swap) moveEntries(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if skippedAtRoot(e.Name(), e.IsDir()) {
			continue
		}
		if err := s.h.renameNoReplace(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// locate returns which of target, staging and previous holds the staged
// directory (by inode on the journal's device), "" when none does.
func (s *swap) locate() (string, error) {
	d, err := os.Lstat(s.dir)
	if err != nil {
		return "", err
	}
	for _, p := range []string{s.target, s.at(s.j.Staging), s.at(s.j.Previous)} {
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		if k := statKey(fi); k.ino == s.j.Staged && k.dev == statKey(d).dev && fi.IsDir() {
			return p, nil
		}
	}
	return "", nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

var errStagingGone = errors.New("the staged data of the interrupted restore is gone; the previous contents were kept")

// place puts the directory at from in place of target, which gets the
// staged data, with a RENAME_EXCHANGE, so that target always holds a
// complete directory; what target held goes to from. Where the file system
// cannot exchange (EINVAL: NFS, older overlayfs) target is renamed to spare
// first, and then what target held is at spare.
func (s *swap) place(from, spare string) error {
	if !exists(s.target) {
		return s.h.renameNoReplace(from, s.target)
	}
	err := s.h.rename(from, s.target, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		s.log.Debug("restore: the file system cannot exchange directories: two renames instead", zap.Error(err))
		if err := s.h.renameNoReplace(s.target, spare); err != nil {
			return err
		}
		if err := fsx.SyncDir(s.dir); err != nil {
			return err
		}
		return s.h.renameNoReplace(from, s.target)
	}
	return err
}

// forwardExchange brings the staged directory to the target, from wherever a
// crash left it, and the previous contents to Previous.
func (s *swap) forwardExchange() error {
	staging, prev := s.at(s.j.Staging), s.at(s.j.Previous)
	where, err := s.locate()
	if err != nil {
		return err
	}
	switch where {
	case "":
		if !exists(s.target) && exists(prev) {
			if err := s.h.renameNoReplace(prev, s.target); err != nil {
				return err
			}
		}
		s.log.Warn("restore: the staging directory of an interrupted swap is gone: the previous contents stay")
		if err := s.done(); err != nil {
			return err
		}
		return errStagingGone
	case staging:
		if err := s.place(staging, prev); err != nil {
			return err
		}
	case prev:
		if exists(staging) {
			return fmt.Errorf("both %s and %s exist: cannot tell the previous contents", staging, prev)
		}
		if err := s.place(prev, staging); err != nil {
			return err
		}
	}
	if err := fsx.SyncDir(s.dir); err != nil {
		return err
	}
	// The target holds the staged data; the previous contents are at staging or Previous.
	if !exists(staging) {
		return nil
	}
	if exists(prev) {
		n, err := freeName(s.dir, s.j.Previous)
		if err != nil {
			return err
		}
		s.j.Previous, prev = n, s.at(n)
		if err := s.save(); err != nil {
			return err
		}
	}
	if err := s.h.renameNoReplace(staging, prev); err != nil {
		return err
	}
	return fsx.SyncDir(s.dir)
}

// backExchange returns the previous contents to the target and the staged
// directory to staging.
func (s *swap) backExchange() error {
	staging, prev := s.at(s.j.Staging), s.at(s.j.Previous)
	where, err := s.locate()
	if err != nil {
		return err
	}
	switch where {
	case s.target:
		old, spare := prev, staging
		if !exists(prev) {
			old, spare = staging, prev
		}
		if err := s.place(old, spare); err != nil {
			return err
		}
		if err := fsx.SyncDir(s.dir); err != nil {
			return err
		}
		if where, err = s.locate(); err != nil {
			return err
		}
		if where == prev {
			if err := s.h.renameNoReplace(prev, staging); err != nil {
				return err
			}
		}
	case staging:
		if !exists(s.target) && exists(prev) {
			if err := s.h.renameNoReplace(prev, s.target); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("cannot return the previous contents: the staged directory is at %q", where)
	}
	if err := fsx.SyncDir(s.dir); err != nil {
		return err
	}
	return s.done()
}

// syncDirs fsyncs the directories that exist among dirs.
func syncDirs(dirs ...string) error {
	for _, d := range dirs {
		if err := fsx.SyncDir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// rename is renameat2(2) with flags (fsx.Renameat2), through the test hook when set.
func (h hooks) rename(oldPath, newPath string, flags uint) error {
	if h.renameat2 == nil {
		return fsx.Renameat2(oldPath, newPath, flags)
	}
	if err := h.renameat2(oldPath, newPath, flags); err != nil {
		return &os.LinkError{Op: "rename", Old: oldPath, New: newPath, Err: err}
	}
	return nil
}

// renameNoReplace is fsx.RenameNoReplace through the test hook when set.
func (h hooks) renameNoReplace(oldPath, newPath string) error {
	return fsx.RenameNoReplaceVia(h.rename, oldPath, newPath)
}

// Recover completes every restore swap that a crash or a kill interrupted
// in the source directories of cfg: a journal records a swap whose staged
// data was complete, so it is finished (rolled forward; rolled back only
// when its staged data is gone), and leftovers without a journal (staging
// directories, journals being written) are removed. Afterwards each target
// holds entirely its previous or entirely the restored contents. It must run
// before a source is judged empty and before every restore (Restore and
// jobs.RestoreIfEmpty call it). An error means a swap could not be
// completed: the service must not start on that directory.
func Recover(cfg Config, log *zap.Logger) error {
	unlock, err := lockSources(cfg, false, log)
	if err != nil {
		return err
	}
	defer unlock()
	return recoverSwaps(cfg, log, hooks{})
}

// lockSources takes the restore lock of every source of cfg, so that two
// restores (or a restore and a starting entrypoint's Recover) never work on
// one target at once: an flock on the target when it is a mount point
// (shared by every container that mounts the volume), else on its parent
// (whose entries the swap changes), created when create is set. One held
// elsewhere fails at once; one the file system cannot take is warned about.
func lockSources(cfg Config, create bool, log *zap.Logger) (unlock func(), err error) {
	var unlocks []func()
	unlock = func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
	locked := map[string]bool{} // flocks are per open file: one per directory
	for _, src := range cfg.Sources {
		target, err := filepath.Abs(src)
		if err == nil {
			target, err = resolveTarget(target, zap.NewNop())
		}
		if err != nil {
			unlock()
			return nil, fmt.Errorf("restore: source %s: %w", src, err)
		}
		dir := filepath.Dir(target)
		if create {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				unlock()
				return nil, fmt.Errorf("restore: %w", err)
			}
		}
		if inside, _ := isMountPoint(target); inside {
			dir = target
		}
		if locked[dir] {
			continue
		}
		u, err := flockDir(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !create:
			continue // nothing there to recover
		case errors.Is(err, unix.EWOULDBLOCK):
			unlock()
			return nil, fmt.Errorf("restore: %s is locked by another restore in progress (entrypoint restore, or an entrypoint starting on the same volume); try again when it has finished", dir)
		case err != nil:
			// A file system without flock (some network ones): the lock only
			// guards against a second restore at the same time; go on without.
			log.Warn("restore: cannot lock the target against a concurrent restore", zap.String("dir", dir), zap.Error(err))
			continue
		}
		locked[dir] = true
		unlocks = append(unlocks, u)
	}
	return unlock, nil
}

func recoverSwaps(cfg Config, log *zap.Logger, h hooks) error {
	var errs []error
	for _, src := range cfg.Sources {
		target, err := filepath.Abs(src)
		if err == nil {
			target, err = resolveTarget(target, zap.NewNop())
		}
		if err == nil {
			err = recoverTarget(target, log, h)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("recover source %s: %w", src, err))
		}
	}
	return errors.Join(errs...)
}

// recoverTarget completes the swaps recorded for target (in it, and beside it) and removes leftovers.
func recoverTarget(target string, log *zap.Logger, h hooks) error {
	stagingGlob, besideJournal, _ := besideNames(target, "")
	journals := []string{besideJournal}
	if fi, err := os.Lstat(target); err == nil && fi.IsDir() {
		journals = append(journals, filepath.Join(target, journalName))
	}
	for _, p := range journals {
		s, err := loadSwap(p, target, h, log)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("restore journal %s: %w (it records an interrupted restore that cannot be completed: check %s and its work files by hand, then remove the journal)", p, err, target)
		}
		log.Warn("restore: completing a swap interrupted by a crash or a kill", zap.String("target", target), zap.String("journal", p))
		if err := s.forward(); errors.Is(err, errStagingGone) {
			continue
		} else if err != nil {
			return fmt.Errorf("complete the interrupted restore recorded in %s: %w (the service is not started on a half-swapped directory: fix the cause and start again)", p, err)
		}
		kept := s.finish()
		log.Info("restore: interrupted swap completed: the target holds the restored data", zap.String("target", target), zap.String("previous", kept))
	}
	removeStaleStaging(filepath.Dir(stagingGlob), filepath.Base(stagingGlob), log)
	removeStaleTemps(filepath.Dir(besideJournal), filepath.Base(besideJournal)+journalTemp+"*")
	if fi, err := os.Lstat(target); err == nil && fi.IsDir() {
		removeStaleStaging(target, stagingPrefix+"*", log)
		removeStaleTemps(target, journalName+journalTemp+"*")
	}
	return nil
}

// loadSwap reads the journal at p for target and checks that its names are ours.
func loadSwap(p, target string, h hooks, log *zap.Logger) (*swap, error) {
	b, err := readSmallFile(p, maxJournal)
	if err != nil {
		return nil, err
	}
	s := &swap{dir: filepath.Dir(p), target: target, path: p, h: h, log: log.With(zap.String("target", target))}
	if err := json.Unmarshal(b, &s.j); err != nil {
		return nil, fmt.Errorf("damaged: %w", err)
	}
	j := s.j
	for _, n := range []string{j.Staging, j.Previous} {
		if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00") {
			return nil, fmt.Errorf("damaged: bad name %q", n)
		}
	}
	switch {
	case j.Kind == kindEntries && s.dir == target && strings.HasPrefix(j.Staging, stagingPrefix) &&
		strings.HasPrefix(j.Previous, preRestorePrefix) && (j.Phase == phaseOut || j.Phase == phaseIn):
	case j.Kind == kindExchange && s.dir == filepath.Dir(target) && j.Target == filepath.Base(target) &&
		strings.HasPrefix(j.Staging, "."+j.Target+".restore-") && strings.HasPrefix(j.Previous, j.Target+".pre-restore-"):
	default:
		return nil, fmt.Errorf("damaged: not a plan for %s", target)
	}
	return s, nil
}

// removeStaleTemps removes the files matching pattern in dir: journals whose writing was interrupted.
func removeStaleTemps(dir, pattern string) {
	matches, _ := filepath.Glob(filepath.Join(dir, pattern))
	for _, m := range matches {
		if fi, err := os.Lstat(m); err == nil && fi.Mode().IsRegular() {
			os.Remove(m)
		}
	}
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
