package gitsnap

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// MetaFile is the file committed at the root of every snapshot's tree with
// what Git does not keep: every entry's type, full mode (setuid, setgid,
// sticky and the permission bits beyond Git's executable bit), owner, group
// and modification time, the directories (so empty ones come back) and
// which files are hard links of which. One JSON object a line, sorted by
// path, so that `git diff` shows metadata changes line by line.
const MetaFile = ".snapvisor-meta.jsonl"

// metaFormat names the metadata file's format in its first line.
const metaFormat = "snapvisor-git-metadata/1"

// metaHeader is the metadata file's first line.
type metaHeader struct {
	Format string `json:"format"`
	// Sources are the base names of the sources; with more than one, each
	// is a top-level directory of the tree (Tops), else the tree's root is
	// the source itself.
	Sources []string `json:"sources"`
	Tops    bool     `json:"tops,omitempty"`
}

// Entry types in the metadata file.
const (
	typeDir     = "d"
	typeFile    = "f"
	typeSymlink = "l"
)

// metaEntry is one entry's metadata; Path is relative to the tree's root
// ("." the root itself, a source's top directory when Tops).
type metaEntry struct {
	Path  string `json:"p"`
	Type  string `json:"t"`
	Mode  string `json:"m"` // octal, permission and special bits (07777)
	UID   int    `json:"u"`
	GID   int    `json:"g"`
	MTime string `json:"mtime"` // RFC 3339, nanoseconds, UTC
	// Hardlink names an earlier path (in sorted order) this file is a hard link of.
	Hardlink string `json:"hardlink,omitempty"`
	// Empty marks a directory that holds nothing Git keeps (no tree entry):
	// restore makes it from the metadata. A directory the metadata lists
	// without it and the tree lacks was removed by a commit made elsewhere.
	Empty bool `json:"empty,omitempty"`
	// Blob is the first 12 hex digits of a file's or symlink's blob: an
	// entry whose blob the tree no longer has (a commit made elsewhere
	// changed it) is restored with Git's modes, not this stale metadata.
	Blob string `json:"blob,omitempty"`
	// PathB64 and HardlinkB64 hold a path that is not valid UTF-8 (which
	// JSON cannot carry), base64-encoded, in place of Path and Hardlink.
	PathB64     string `json:"pb,omitempty"`
	HardlinkB64 string `json:"hb,omitempty"`
}

// blobTag is what metaEntry.Blob records of blob h.
func blobTag(h string) string { return h[:12] }

func (e metaEntry) mode() (uint32, error) {
	m, err := strconv.ParseUint(e.Mode, 8, 32)
	if err != nil || m&^0o7777 != 0 {
		return 0, fmt.Errorf("metadata of %s: mode %q", e.Path, e.Mode)
	}
	return uint32(m), nil
}

func (e metaEntry) mtime() (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, e.MTime)
	if err != nil {
		return time.Time{}, fmt.Errorf("metadata of %s: mtime %q", e.Path, e.MTime)
	}
	return t, nil
}

// parsed returns the entry's mode and mtime.
func (e metaEntry) parsed() (uint32, time.Time, error) {
	m, err := e.mode()
	if err != nil {
		return 0, time.Time{}, err
	}
	t, err := e.mtime()
	return m, t, err
}

// encodeMeta writes the metadata file (entries already sorted by path).
func encodeMeta(h metaHeader, entries []metaEntry) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(h)
	for _, e := range entries {
		if !utf8.ValidString(e.Path) {
			e.PathB64, e.Path = base64.StdEncoding.EncodeToString([]byte(e.Path)), ""
		}
		if !utf8.ValidString(e.Hardlink) {
			e.HardlinkB64, e.Hardlink = base64.StdEncoding.EncodeToString([]byte(e.Hardlink)), ""
		}
		_ = enc.Encode(e)
	}
	return b.Bytes()
}

// decodeMeta reads a metadata file.
func decodeMeta(r io.Reader) (metaHeader, []metaEntry, error) {
	var h metaHeader
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var out []metaEntry
	first := true
	for sc.Scan() {
		if first {
			first = false
			if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Format != metaFormat {
				return h, nil, fmt.Errorf("%s: not a %s file", MetaFile, metaFormat)
			}
			continue
		}
		var e metaEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return h, nil, fmt.Errorf("%s line %d: %w", MetaFile, len(out)+2, err)
		}
		for _, f := range []struct{ b64, plain *string }{{&e.PathB64, &e.Path}, {&e.HardlinkB64, &e.Hardlink}} {
			if *f.b64 != "" {
				raw, err := base64.StdEncoding.DecodeString(*f.b64)
				if err != nil {
					return h, nil, fmt.Errorf("%s line %d: %w", MetaFile, len(out)+2, err)
				}
				*f.plain, *f.b64 = string(raw), ""
			}
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return h, nil, fmt.Errorf("%s: %w", MetaFile, err)
	}
	if first {
		return h, nil, fmt.Errorf("%s is empty", MetaFile)
	}
	return h, out, nil
}
