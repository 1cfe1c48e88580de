package restic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"

	"snapvisor/internal/fsx"
	"snapvisor/remote"
	"snapvisor/store"
)

// CopyStats is what one CopyRepo did.
type CopyStats struct {
	From    string `json:"from"`    // source store's Name()
	To      string `json:"to"`      // destination store's Name()
	Files   int    `json:"files"`   // files copied
	Skipped int    `json:"skipped"` // files already there (same name and size)
	Bytes   int64  `json:"bytes"`   // bytes copied
}

// ErrOtherRepository is wrapped by the error of a CopyRepo whose destination
// holds a different repository (another config): its files are never mixed
// with the source's.
var ErrOtherRepository = errors.New("the destination holds a different restic repository")

// maxConfigFile bounds what is read of a config file (a few hundred bytes).
const maxConfigFile = 64 << 10

// CopyRepo copies the restic repository on from to to, file by file, as
// stored (no password needed: files stay encrypted with the source's keys).
// The destination must be empty or hold the same repository (the same
// config file): only the files it lacks are copied, so a rerun resumes and
// a repository already copied costs a listing. Each file is checked on the
// way against its name, the SHA-256 of its content (a damaged source file
// fails the copy, never reaches the destination). Order: data packs, then
// index files, then (for a new destination) the keys and the config, and the
// snapshot files last, so a snapshot is listed on the destination only when
// everything it needs is there. Locks are not copied. A destination holding
// another repository is refused (ErrOtherRepository): a blob-by-blob copy
// between two repositories (re-encrypting with the destination's key) is
// restic's own `restic copy`.
func CopyRepo(ctx context.Context, from, to store.Store) (CopyStats, error) {
	st := CopyStats{From: from.Name(), To: to.Name()}
	if remote.SameLocation(from, to) {
		return st, fmt.Errorf("copy %s to %s: %w", from.Name(), to.Name(), remote.ErrSameLocation)
	}
	srcCfg, err := readConfigFile(ctx, from)
	if err != nil {
		return st, err
	}
	if srcCfg == nil {
		return st, fmt.Errorf("copy from %s: %w", from.Name(), ErrNoRepository)
	}
	dstCfg, err := readConfigFile(ctx, to)
	if err != nil {
		return st, err
	}
	if dstCfg != nil && !bytes.Equal(dstCfg, srcCfg) {
		return st, fmt.Errorf("copy %s to %s: %w (another config); copying between two repositories needs a blob-by-blob copy (re-encrypted with the destination's keys), which `entrypoint copy` does not do: use `restic copy`, or copy into an empty location", from.Name(), to.Name(), ErrOtherRepository)
	}
	types := []FileType{PackFile, IndexFile}
	if dstCfg == nil {
		types = append(types, KeyFile)
	}
	for _, t := range types {
		if err := copyFiles(ctx, from, to, t, &st); err != nil {
			return st, err
		}
	}
	if dstCfg == nil {
		if err := to.Put(ctx, key(ConfigFile, ID{}), bytes.NewReader(srcCfg), int64(len(srcCfg))); err != nil {
			return st, err
		}
		st.Files++
		st.Bytes += int64(len(srcCfg))
	}
	return st, copyFiles(ctx, from, to, SnapshotFile, &st)
}

// readConfigFile reads the raw config file on s; nil when there is none.
func readConfigFile(ctx context.Context, s store.Store) ([]byte, error) {
	var b []byte
	err := store.Retry(ctx, s, "get config", func(ctx context.Context, s store.Store) error {
		rc, err := s.Get(ctx, key(ConfigFile, ID{}))
		if errors.Is(err, fs.ErrNotExist) {
			b = nil
			return nil
		}
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err = fsx.ReadAtMost(rc, maxConfigFile)
		if err != nil {
			return &store.Error{Store: s.Name(), Op: "get", Key: "config", Err: err}
		}
		return nil
	})
	return b, err
}

// copyFiles copies the files of type t that to lacks (by name and size).
func copyFiles(ctx context.Context, from, to store.Store, t FileType, st *CopyStats) error {
	have, err := storedFiles(ctx, to, t)
	if err != nil {
		return err
	}
	want, err := storedFiles(ctx, from, t)
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		size := want[k]
		if n, ok := have[k]; ok && n == size {
			st.Skipped++
			continue
		}
		// The name is the SHA-256 of the content: the digest to check against.
		if err := remote.CopyObject(ctx, from, to, k, size, k[strings.LastIndexByte(k, '/')+1:]); err != nil {
			return fmt.Errorf("copy %s from %s to %s: %w", k, from.Name(), to.Name(), err)
		}
		st.Files++
		st.Bytes += size
	}
	return nil
}

// storedFiles lists the repository files of type t on s: key to size.
func storedFiles(ctx context.Context, s store.Store, t FileType) (map[string]int64, error) {
	objs, err := s.List(ctx, string(t)+"/")
	if err != nil {
		return nil, fmt.Errorf("%s: list %s: %w", s.Name(), t, err)
	}
	out := make(map[string]int64, len(objs))
	for _, o := range objs {
		id, err := ParseID(o.Key[strings.LastIndexByte(o.Key, '/')+1:])
		if err != nil || o.Key != key(t, id) {
			continue // not a repository file (restic ignores them too)
		}
		out[o.Key] = o.Size
	}
	return out, nil
}
