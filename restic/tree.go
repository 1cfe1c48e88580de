package restic

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"
)

// Node is one entry of a tree, as restic encodes it. Mode is Go's
// fs.FileMode (type bits included).
type Node struct {
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	Mode       os.FileMode `json:"mode,omitempty"`
	ModTime    time.Time   `json:"mtime,omitempty"`
	AccessTime time.Time   `json:"atime,omitempty"`
	ChangeTime time.Time   `json:"ctime,omitempty"`
	UID        uint32      `json:"uid"`
	GID        uint32      `json:"gid"`
	User       string      `json:"user,omitempty"`
	Group      string      `json:"group,omitempty"`
	Inode      uint64      `json:"inode,omitempty"`
	DeviceID   uint64      `json:"device_id,omitempty"`
	Size       uint64      `json:"size,omitempty"`
	Links      uint64      `json:"links,omitempty"`
	LinkTarget string      `json:"linktarget,omitempty"`
	// LinkTargetRaw holds a symlink target that is not valid UTF-8 (newer restic writes it).
	LinkTargetRaw []byte  `json:"linktarget_raw,omitempty"`
	ExtendedAttrs []xattr `json:"extended_attributes,omitempty"`
	Device        uint64  `json:"device,omitempty"`
	Content       []ID    `json:"content"`
	Subtree       *ID     `json:"subtree,omitempty"`
	Error         string  `json:"error,omitempty"`
}

type xattr struct {
	Name  string `json:"name"`
	Value []byte `json:"value"`
}

// Tree is a directory's entries, sorted by name.
type Tree struct {
	Nodes []*Node `json:"nodes"`
}

// encodeTree is the tree blob: its JSON and a newline, as restic writes it.
func encodeTree(t *Tree) ([]byte, error) {
	sort.Slice(t.Nodes, func(i, j int) bool { return t.Nodes[i].Name < t.Nodes[j].Name })
	if t.Nodes == nil {
		t.Nodes = []*Node{}
	}
	b, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Find returns the node named name, or nil.
func (t *Tree) Find(name string) *Node {
	i := sort.Search(len(t.Nodes), func(i int) bool { return t.Nodes[i].Name >= name })
	if i < len(t.Nodes) && t.Nodes[i].Name == name {
		return t.Nodes[i]
	}
	for _, n := range t.Nodes { // a tree another program wrote unsorted
		if n.Name == name {
			return n
		}
	}
	return nil
}

// LoadTree reads a tree blob.
func (r *Repo) LoadTree(ctx context.Context, x *Index, id ID) (*Tree, error) {
	b, err := r.loadTreeBlob(ctx, x, id)
	if err != nil {
		return nil, err
	}
	var t Tree
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("%s: tree %s: %w: %v", r.name, id.Str(), ErrDamaged, err)
	}
	return &t, nil
}

// Snapshot is a snapshot file.
type Snapshot struct {
	Time     time.Time `json:"time"`
	Parent   *ID       `json:"parent,omitempty"`
	Tree     *ID       `json:"tree"`
	Paths    []string  `json:"paths"`
	Hostname string    `json:"hostname,omitempty"`
	Username string    `json:"username,omitempty"`
	UID      uint32    `json:"uid,omitempty"`
	GID      uint32    `json:"gid,omitempty"`
	Excludes []string  `json:"excludes,omitempty"`
	Tags     []string  `json:"tags,omitempty"`
	Original *ID       `json:"original,omitempty"`
	// ProgramVersion and Summary are what newer restic versions write;
	// older ones ignore them.
	ProgramVersion string           `json:"program_version,omitempty"`
	Summary        *SnapshotSummary `json:"summary,omitempty"`

	ID ID `json:"-"` // the snapshot file's name
}

// SnapshotSummary is the statistics of the backup that made a snapshot
// (restic 0.17's fields).
type SnapshotSummary struct {
	BackupStart         time.Time `json:"backup_start"`
	BackupEnd           time.Time `json:"backup_end"`
	FilesNew            uint      `json:"files_new"`
	FilesChanged        uint      `json:"files_changed"`
	FilesUnmodified     uint      `json:"files_unmodified"`
	DirsNew             uint      `json:"dirs_new"`
	DirsChanged         uint      `json:"dirs_changed"`
	DirsUnmodified      uint      `json:"dirs_unmodified"`
	DataBlobs           int       `json:"data_blobs"`
	TreeBlobs           int       `json:"tree_blobs"`
	DataAdded           uint64    `json:"data_added"`
	DataAddedPacked     uint64    `json:"data_added_packed"`
	TotalFilesProcessed uint      `json:"total_files_processed"`
	TotalBytesProcessed uint64    `json:"total_bytes_processed"`
}

// Snapshots loads every snapshot file, oldest first. A snapshot file that
// cannot be read is an error naming it.
func (r *Repo) Snapshots(ctx context.Context) ([]*Snapshot, error) {
	ids, err := r.List(ctx, SnapshotFile)
	if err != nil {
		return nil, err
	}
	out := make([]*Snapshot, 0, len(ids))
	for _, id := range sortedIDs(ids) {
		var s Snapshot
		if err := r.LoadJSON(ctx, SnapshotFile, id, &s); err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", id.Str(), err)
		}
		s.ID = id
		out = append(out, &s)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}
