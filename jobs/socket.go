package jobs

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"snapvisor/config"
)

// The default control socket is socketName in the first usable directory of
// socketDirs: a private directory (a real directory owned by us that nobody
// else can write), so that no other uid can pre-bind or replace the socket.
const (
	// runSocketDir is the first choice, created 0700 when missing.
	runSocketDir = "/run/snapvisor"
	socketName   = "control.sock"
	// maxSocketPath is the longest path of a unix socket: sun_path holds 108
	// bytes, the terminating NUL included.
	maxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1
)

// socketDirs lists the candidate directories of the default control socket
// for uid: /run/snapvisor, $XDG_RUNTIME_DIR/snapvisor when set, and
// <TMPDIR>/snapvisor-<uid>. The server creates the first one it can; a client
// of the same uid (docker exec) finds the same one.
func socketDirs(uid int) []string {
	dirs := []string{runSocketDir}
	if x := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(x) {
		dirs = append(dirs, filepath.Join(x, "snapvisor"))
	}
	return append(dirs, filepath.Join(os.TempDir(), "snapvisor-"+strconv.Itoa(uid)))
}

// SocketPath returns the control socket's path: SNAPVISOR_CONTROL_SOCKET when
// set, else the default (see socketDirs), whose directory is created when
// create is true (the server). A default directory that exists but is not
// private to this uid is skipped, the last one refused with a *config.Error.
func (c Config) SocketPath(create bool) (string, error) {
	if c.ControlSocket != "" {
		return c.ControlSocket, nil
	}
	return defaultSocket(socketDirs(os.Geteuid()), os.Geteuid(), create)
}

// defaultSocket returns socketName in the first of dirs that is, or (with
// create) can be made, private to uid. Without create, when none is but one
// belongs to another uid, the error is a *NoAccessError: a snapvisor of that
// uid probably runs there.
func defaultSocket(dirs []string, uid int, create bool) (string, error) {
	var foreign *NoAccessError
	for i, d := range dirs {
		last := i == len(dirs)-1
		fi, err := os.Lstat(d)
		if errors.Is(err, fs.ErrNotExist) && create {
			if err = os.MkdirAll(filepath.Dir(d), 0o755); err == nil {
				if err = os.Mkdir(d, 0o700); err == nil || errors.Is(err, fs.ErrExist) {
					fi, err = os.Lstat(d)
				}
			}
		}
		if err != nil {
			if last && create {
				return "", unusableSocketDir(d, err)
			}
			continue
		}
		owner := -1
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner = int(st.Uid)
		}
		switch {
		case fi.IsDir() && owner == uid && fi.Mode().Perm()&0o022 == 0:
			return filepath.Join(d, socketName), nil
		case last:
			return "", unusableSocketDir(d, fmt.Errorf("it is not a directory private to uid %d (owner uid %d, mode %s): someone else could answer in snapvisor's name", uid, owner, fi.Mode()))
		case foreign == nil && fi.IsDir() && !create:
			foreign = &NoAccessError{Path: filepath.Join(d, socketName), Owner: owner, Err: fs.ErrPermission}
		}
	}
	if foreign != nil {
		return "", foreign
	}
	// Nothing exists: no snapvisor of this uid runs; the first is where it would be.
	return filepath.Join(dirs[0], socketName), nil
}

func unusableSocketDir(dir string, err error) error {
	e := config.Invalid("CONTROL_SOCKET", "", "a socket path in a directory only this uid can write; empty: the default in /run/snapvisor, $XDG_RUNTIME_DIR/snapvisor or $TMPDIR/snapvisor-<uid>")
	e.Err = fmt.Errorf("default control socket directory %s: %w", dir, err)
	return e
}

// NoAccessError means a snapvisor's control socket is there but this user
// may not use it (another uid's socket or directory).
type NoAccessError struct {
	Path  string
	Owner int // uid owning the socket or its directory
	Err   error
}

func (e *NoAccessError) Error() string {
	as := "root"
	if e.Owner > 0 {
		as = fmt.Sprintf("uid %d or root", e.Owner)
	}
	return fmt.Sprintf("a snapvisor is running but uid %d cannot reach its control socket %s (%v): run as %s",
		os.Geteuid(), e.Path, e.Err, as)
}

func (e *NoAccessError) Unwrap() error { return e.Err }

// noAccess builds the *NoAccessError for path: the owner is the socket's,
// or that of the nearest ancestor this user can see.
func noAccess(path string, err error) *NoAccessError {
	for p := path; ; p = filepath.Dir(p) {
		if fi, serr := os.Lstat(p); serr == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				return &NoAccessError{Path: path, Owner: int(st.Uid), Err: err}
			}
		}
		if p == filepath.Dir(p) {
			return &NoAccessError{Path: path, Owner: -1, Err: err}
		}
	}
}

// ImpostorError means the process answering on the control socket runs as a
// uid that is neither root nor this user's: it is not a snapvisor this user
// can trust (another user pre-bound the path), and nothing is sent to it.
type ImpostorError struct {
	Path     string
	Uid, Pid int
}

func (e *ImpostorError) Error() string {
	trusted := fmt.Sprintf("neither root nor uid %d", os.Geteuid())
	if os.Geteuid() == 0 {
		trusted = "not root"
	}
	return fmt.Sprintf("refusing the control socket %s: it is served by uid %d (pid %d), %s; if that is the snapvisor you mean, run as uid %d",
		e.Path, e.Uid, e.Pid, trusted, e.Uid)
}

// checkPeer returns an *ImpostorError unless the server at the other end of
// conn (SO_PEERCRED: its credentials when it listened) runs as root or as
// this process's uid.
func checkPeer(conn net.Conn, path string) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("control socket %s: not a unix connection", path)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if cerr != nil {
		return fmt.Errorf("control socket %s: peer credentials: %w", path, cerr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return &ImpostorError{Path: path, Uid: int(cred.Uid), Pid: int(cred.Pid)}
	}
	return nil
}
