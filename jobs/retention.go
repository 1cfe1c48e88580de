package jobs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap"

	"snapvisor/rotation"
	"snapvisor/snapshot"
)

// knownSnapshot is what only the runner that took a snapshot knows of it. It is kept
// in memory: after a restart, earlier on-demand snapshots count as scheduled
// and earlier empty ones are judged by their size.
type knownSnapshot struct {
	at       time.Time
	empty    bool // the run counted no file (snapshot.Info.Files == 0)
	onDemand bool // taken on request (ReasonRequest)
}

// remember records what rotation must know of the snapshot info, taken for reason.
func (r *Runner) remember(info snapshot.Info, reason string) {
	t := knownSnapshot{at: info.Time, empty: info.Files == 0, onDemand: reason == ReasonRequest}
	if !t.empty && !t.onDemand {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.known == nil {
		r.known = make(map[string]knownSnapshot)
	}
	r.known[info.Name] = t
}

// mark adds to s what this runner knows of it: Empty and OnDemand. It is
// the mark of remote.Rotate, called from the pushes' goroutines.
func (r *Runner) mark(s *rotation.Snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.known[s.Name]
	s.Empty, s.OnDemand = t.empty, t.onDemand
}

// noteRotation records what one rotation of this run (local, or on a
// remote) decided, for judgeShrink at the end of the run.
func (r *Runner) noteRotation(d rotation.Decision) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.suspects == nil {
		r.suspects = make(map[string]rotation.Suspect)
	}
	for _, s := range d.Suspect {
		if _, ok := r.suspects[s.Name]; !ok {
			r.suspects[s.Name] = s
		}
	}
	if n := len(d.Keep); n > 0 && (r.oldestKept.IsZero() || d.Keep[n-1].Time.Before(r.oldestKept)) {
		r.oldestKept = d.Keep[n-1].Time
	}
}

// judgeShrink ends the run's rotations: when one of them found the run's
// snapshot suspect (empty or shrunk source), res is flagged (Result.Shrunk,
// which status reports as unhealthy unless SNAPVISOR_ALLOW_SHRINK=true), a
// warning names both sizes and what to do, and the metrics say so. It also
// forgets what it knew of snapshots older than any still kept.
func (r *Runner) judgeShrink(res *Result, log *zap.Logger) {
	r.mu.Lock()
	sus, flagged := r.suspects[res.Snapshot]
	for name, t := range r.known {
		if !r.oldestKept.IsZero() && t.at.Before(r.oldestKept) {
			delete(r.known, name)
		}
	}
	r.suspects, r.oldestKept = nil, time.Time{}
	r.mu.Unlock()

	if !flagged {
		r.metrics.shrunk.Set(0)
		return
	}
	res.Shrunk = sus.String()
	r.metrics.shrunkTotal.Inc()
	fields := []zap.Field{zap.String("snapshot", sus.Name), zap.Int64("size", sus.Size), zap.Bool("empty", sus.Empty),
		zap.String("previous", sus.Ref.Name), zap.Int64("previous_size", sus.Ref.Size)}
	if r.policy.AllowShrink {
		r.metrics.shrunk.Set(0)
		log.Warn("snapshot of an empty or shrunk source; SNAPVISOR_ALLOW_SHRINK=true, so rotation treats it like any other "+
			"and the older, larger snapshots go as the policy says (unset the variable again once they are gone)", fields...)
		return
	}
	r.metrics.shrunk.Set(1)
	log.Warn("snapshot of an empty or shrunk source (less than 10% of the previous snapshot's size, or no file at all): "+
		"rotation keeps every older, larger snapshot, here and on the remotes, and health fails. "+
		"If the data was lost (a fresh or mis-mounted volume), stop the service and restore the previous snapshot: entrypoint restore --discard-current PREVIOUS. "+
		"If the shrink is intended, set SNAPVISOR_ALLOW_SHRINK=true: the next runs rotate as usual, the older snapshots go as the policy says and this flag clears", fields...)
}

// noSpace explains err when a run failed for lack of space in SNAPVISOR_DIR:
// how many snapshots it holds, the newest one's size and the free space.
// With SNAPVISOR_ROTATE_BEFORE=on-enospc it also has the next runs rotate by
// rotation.Policy.MakeRoom first (makeRoom). Any other err is returned as is.
func (r *Runner) noSpace(err error) error {
	if err == nil || !errors.Is(err, syscall.ENOSPC) || r.streaming() {
		return err
	}
	var newest int64
	list, _ := snapshot.List(r.snap.Dir, r.snap.Name)
	if len(list) > 0 {
		newest = list[0].Size
	}
	free := "unknown"
	var st syscall.Statfs_t
	if syscall.Statfs(r.snap.Dir, &st) == nil {
		free = fmt.Sprint(int64(st.Bavail) * st.Bsize)
	}
	msg := fmt.Sprintf("no space left in SNAPVISOR_DIR %s (%d snapshots, newest %d bytes, %s bytes free): make room for KEEP+1 snapshots (SNAPVISOR_KEEP=%d) or lower SNAPVISOR_KEEP",
		r.snap.Dir, len(list), newest, free, r.policy.Keep)
	switch room := r.policy.MakeRoom(); {
	case r.policy.RotateBefore == rotation.RotateBeforeNever:
		msg += "; SNAPVISOR_ROTATE_BEFORE=never: every run fails until then"
	case room == r.policy:
		msg += fmt.Sprintf("; SNAPVISOR_KEEP=%d: nothing to delete before a snapshot", r.policy.Keep)
	default:
		r.setMakeRoomFirst(true)
		msg += fmt.Sprintf("; until then each run first deletes the oldest snapshots beyond %d (SNAPVISOR_ROTATE_BEFORE=on-enospc)", room.Keep)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// makeRoom rotates the local snapshots by rotation.Policy.MakeRoom before a
// run once a run failed for lack of space (noSpace), so that a disk that
// holds only KEEP snapshots still takes the next one. After a snapshot that
// leaves room for one more of its size, runs rotate afterwards only again.
func (r *Runner) makeRoom(log *zap.Logger) {
	if !r.makeRoomFirst {
		// A run of an earlier process (a restarted entrypoint, the last
		// standalone `entrypoint snapshot` of a CronJob) failed for lack of space.
		if fi, err := os.Lstat(r.noSpaceMarker()); err != nil || !fi.Mode().IsRegular() || r.policy.RotateBefore == rotation.RotateBeforeNever {
			return
		}
		r.makeRoomFirst = true
	}
	room := r.policy.MakeRoom()
	log.Info("rotating before the snapshot: an earlier one failed for lack of space (SNAPVISOR_ROTATE_BEFORE=on-enospc)", zap.Stringer("policy", room))
	r.rotate(log, room)
}

// roomAgain ends makeRoom's mode when SNAPVISOR_DIR has room for one more
// snapshot of info's size (plus a tenth) after the run's rotation.
func (r *Runner) roomAgain(info snapshot.Info, log *zap.Logger) {
	if !r.makeRoomFirst {
		return
	}
	var st syscall.Statfs_t
	if syscall.Statfs(r.snap.Dir, &st) == nil && int64(st.Bavail)*st.Bsize > info.Size+info.Size/10 {
		r.setMakeRoomFirst(false)
		log.Info("SNAPVISOR_DIR has room for another snapshot again: rotating after snapshots only")
	}
}

// noSpaceMarker is the file in SNAPVISOR_DIR that keeps makeRoom's mode
// across processes: a standalone run or a restarted entrypoint after an
// ENOSPC failure makes room first too. Empty; not a snapshot name.
func (r *Runner) noSpaceMarker() string {
	return filepath.Join(r.snap.Dir, "."+r.snap.Name+".no-space")
}

// setMakeRoomFirst sets makeRoom's mode and its marker file. The marker is
// best effort (a full disk may refuse even an empty file): this process
// keeps the mode in memory either way.
func (r *Runner) setMakeRoomFirst(on bool) {
	r.makeRoomFirst = on
	var err error
	if on {
		var f *os.File
		if f, err = os.OpenFile(r.noSpaceMarker(), os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o600); err == nil {
			err = f.Close()
		}
	} else if err = os.Remove(r.noSpaceMarker()); errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	if err != nil {
		r.log.Warn("the no-space marker could not be updated: a restarted entrypoint may fail once more before it makes room", zap.Error(err))
	}
}
