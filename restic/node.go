package restic

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// nodeOf describes the entry at path (already lstat'ed as fi), without content.
func nodeOf(name, path string, fi fs.FileInfo) (*Node, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("%s: no stat information", path)
	}
	n := &Node{
		Name: name, Mode: fi.Mode(), ModTime: fi.ModTime(),
		AccessTime: time.Unix(st.Atim.Sec, st.Atim.Nsec), ChangeTime: time.Unix(st.Ctim.Sec, st.Ctim.Nsec),
		UID: st.Uid, GID: st.Gid, Inode: st.Ino, DeviceID: uint64(st.Dev), Links: uint64(st.Nlink),
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		n.Type, n.Size, n.Content = "file", uint64(fi.Size()), []ID{}
	case m.IsDir():
		n.Type = "dir"
	case m&fs.ModeSymlink != 0:
		n.Type = "symlink"
		t, err := os.Readlink(path)
		if err != nil {
			return nil, err
		}
		n.LinkTarget = t
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice != 0:
		n.Type, n.Device = "chardev", uint64(st.Rdev)
	case m&fs.ModeDevice != 0:
		n.Type, n.Device = "dev", uint64(st.Rdev)
	case m&fs.ModeNamedPipe != 0:
		n.Type = "fifo"
	case m&fs.ModeSocket != 0:
		n.Type = "socket"
	default:
		return nil, fmt.Errorf("%s: unknown file type %v", path, m)
	}
	return n, nil
}

// unchanged reports whether file node n (just stat'ed) may take its content
// from old, a node of the parent snapshot: restic's test (type, mtime,
// ctime, size, inode).
func unchanged(n, old *Node) bool {
	return old != nil && old.Type == "file" && n.Type == "file" && old.Content != nil &&
		old.ModTime.Equal(n.ModTime) && old.ChangeTime.Equal(n.ChangeTime) &&
		old.Size == n.Size && old.Inode == n.Inode
}
