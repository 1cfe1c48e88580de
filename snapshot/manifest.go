package snapshot

import (
	"archive/tar"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Format identifies the snapshot layout in Manifest.Format.
const Format = "snapvisor-snapshot/1"

// Manifest is the archive's first entry (ManifestName): what is known before the walk.
type Manifest struct {
	Format      string           `json:"format"`
	Version     string           `json:"version"`
	Host        string           `json:"host"`
	Instance    string           `json:"instance,omitempty"` // InstanceID of the process that wrote it (absent before it was recorded)
	Created     time.Time        `json:"created"`
	Sources     []ManifestSource `json:"sources"`
	Exclude     []string         `json:"exclude,omitempty"`
	Compression string           `json:"compression"`
	Level       int              `json:"level,omitempty"`
}

// InstanceID identifies this process among the writers of snapshots: 16
// random hex digits, made once per process. With the host name it tells
// which writer made a snapshot (Manifest.Instance) and who holds a remote's
// lease (store.Writer). It is process-wide by nature, hence a package-level
// value: computed once, never changed.
func InstanceID() string { return instanceID() }

var instanceID = sync.OnceValue(func() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
})

// ManifestSource maps a source path to its top-level directory in the archive.
type ManifestSource struct {
	Path string `json:"path"` // absolute source path at creation
	Dir  string `json:"dir"`  // top-level archive directory (the path's base name)
}

// Summary is the archive's last entry (summaryName): counts known only at the end of the walk.
type Summary struct {
	Files     int64     `json:"files"`     // regular files with content
	Hardlinks int64     `json:"hardlinks"` // extra names of an already stored file
	Dirs      int64     `json:"dirs"`      // directories, source roots included
	Symlinks  int64     `json:"symlinks"`  // symbolic links
	Bytes     int64     `json:"bytes"`     // content bytes stored
	Changed   int64     `json:"changed"`   // files that changed while read (stored size is the stat size)
	Skipped   int64     `json:"skipped"`   // FIFOs, sockets and devices left out
	Finished  time.Time `json:"finished"`
}

// writeJSONEntry writes v as a top-level regular file entry.
func writeJSONEntry(tw *tar.Writer, name string, v any, t time.Time) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	b = append(b, '\n')
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: t.Truncate(time.Second), Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s header: %w", name, err)
	}
	if _, err := tw.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
