package supervisor

import (
	"errors"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"snapvisor/internal/zlog"
)

// reaper is the single owner of wait4 in this process. Every child is started
// through it, so a child's exit status is routed to whoever started it, and
// everything else (re-parented orphans) is reaped and dropped. This is what
// keeps a PID-1 reaper from stealing a hook's status (supercronic #88/#171/#223).
type reaper struct {
	log zlog.Logger

	mu      sync.Mutex // held across fork+register and across each reap pass
	waiters map[int]chan unix.WaitStatus

	orphans atomic.Int64 // zombies reaped that nobody waited for
}

func newReaper(log zlog.Logger) *reaper {
	return &reaper{log: log, waiters: make(map[int]chan unix.WaitStatus)}
}

// start runs fork (which must start exactly one child and return its pid)
// while holding the reap lock, and registers the pid before any reap pass can
// see it exit. The returned channel receives the child's status exactly once.
func (r *reaper) start(fork func() (int, error)) (int, <-chan unix.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := fork()
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.waiters[pid] = ch
	return pid, ch, nil
}

// reap collects every child that has exited, without blocking, and routes
// each status to its waiter. It returns the number of processes reaped and
// whether any child is left.
func (r *reaper) reap() (n int, children bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil { // ECHILD: no children left
			return n, !errors.Is(err, unix.ECHILD)
		}
		if pid <= 0 { // children exist, none has exited
			return n, true
		}
		if ws.Stopped() || ws.Continued() {
			continue
		}
		n++
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- ws
			continue
		}
		r.orphans.Add(1)
		r.log.Debug("reaped orphan", zlog.Int("pid", pid), zlog.Int("code", exitCode(ws)))
	}
}

// exitCode maps a wait status to a shell-style exit code: the process's own
// code, or 128+N when it was killed by signal N.
func exitCode(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return 255
}
