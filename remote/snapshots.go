package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"snapvisor/internal/fsx"
	"snapvisor/internal/progress"
	"snapvisor/rotation"
	"snapvisor/seal"
	"snapvisor/snapshot"
	"snapvisor/store"
)

// ErrChecksum is wrapped by errors reporting that data does not match its
// .sha256. It is snapshot.ErrChecksum, so that one errors.Is tells a corrupt
// snapshot wherever it was detected (download or restore).
var ErrChecksum = snapshot.ErrChecksum

// maxSumFile bounds what is read of a remote .sha256 file.
const maxSumFile = 4096

// Snapshot is one complete snapshot on a store: the archive and its .sha256.
type Snapshot struct {
	Key         string    `json:"key"`         // archive key, e.g. redis-20250101T000000Z.tar.zst
	Name        string    `json:"name"`        // snapshot name (the part before the time stamp)
	Time        time.Time `json:"time"`        // creation time (UTC, from the key)
	Size        int64     `json:"size"`        // archive size in bytes
	Compression string    `json:"compression"` // gzip, zstd or none
	Modified    time.Time `json:"modified"`    // upload time as reported by the store
	Remote      string    `json:"remote"`      // the store's Name()
}

// ListSnapshots returns the complete snapshots named name on s (any name when
// name is ""), newest first: archives "<name>-<time>.tar[.gz|.zst]" at the top
// level of the store whose .sha256 exists. Archives without one (partial or
// failed uploads), other names and other files are ignored.
func ListSnapshots(ctx context.Context, s store.Store, name string) ([]Snapshot, error) {
	prefix := ""
	if name != "" {
		prefix = name + "-"
	}
	objs, err := s.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	return snapshotsIn(objs, s.Name(), name), nil
}

// snapshotsIn picks the complete snapshots named name (any when "") out of a listing, newest first.
func snapshotsIn(objs []store.Object, remote, name string) []Snapshot {
	sums := make(map[string]bool)
	for _, o := range objs {
		if strings.HasSuffix(o.Key, snapshot.SumSuffix) && o.Size > 0 {
			sums[strings.TrimSuffix(o.Key, snapshot.SumSuffix)] = true
		}
	}
	var out []Snapshot
	for _, o := range objs {
		pn, ok := snapshot.ParseFileName(o.Key)
		n, t, comp := pn.Prefix, pn.Time, pn.Compression
		if !ok || (name != "" && n != name) || !sums[o.Key] {
			continue
		}
		out = append(out, Snapshot{Key: o.Key, Name: n, Time: t, Size: o.Size, Compression: comp,
			Modified: o.Modified, Remote: remote})
	}
	// Newest first; equal times (different compressions) by key for a stable order.
	sortSnapshots(out)
	return out
}

// orphansIn returns the leftovers of interrupted uploads of snapshots named
// name in a listing: archives without their .sha256 and .sha256 files
// without their archive, older than the newest complete snapshot (a newer
// one may be an upload in progress).
func orphansIn(objs []store.Object, complete []Snapshot, name string) []string {
	if len(complete) == 0 {
		return nil
	}
	newest := complete[0].Time
	present := make(map[string]bool, len(objs))
	for _, o := range objs {
		present[o.Key] = true
	}
	var out []string
	for _, o := range objs {
		archive := strings.TrimSuffix(o.Key, snapshot.SumSuffix)
		pn, ok := snapshot.ParseFileName(archive)
		n, t := pn.Prefix, pn.Time
		if !ok || n != name || !t.Before(newest) {
			continue
		}
		if (archive == o.Key && !present[o.Key+snapshot.SumSuffix]) || (archive != o.Key && !present[archive]) {
			out = append(out, o.Key)
		}
	}
	return out
}

func sortSnapshots(s []Snapshot) {
	sort.Slice(s, func(i, j int) bool { return newer(s[i], s[j]) })
}

func newer(a, b Snapshot) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.After(b.Time)
	}
	return a.Key > b.Key
}

// Push uploads the local snapshot at localPath (an archive with its .sha256
// beside it) to s under its base name, then confirms it: the stored size must
// match (List), the archive is re-hashed where the store can do so cheaply
// (file://), and only then is the .sha256 uploaded — last — and read back. So
// the snapshot is listed on s (ListSnapshots) only once it is complete.
// A snapshot already present with the same checksum is not uploaded again;
// a complete snapshot of the same key with another checksum (another
// writer's snapshot of the same second) is never replaced: that fails with
// ErrExists. An archive without .sha256 (an interrupted upload), or with
// this snapshot's .sha256 but the wrong size (damaged), is replaced.
// Retries come from a store.WithRetry wrapper in s (the local file is
// re-read); the local snapshot is never modified. The caller bounds it
// (Remote.WithTimeout).
func Push(ctx context.Context, s store.Store, localPath string) (rs Snapshot, err error) {
	return push(ctx, s, localPath, nil)
}

// push is Push with a hook wrapping the archive reader (tests).
func push(ctx context.Context, s store.Store, localPath string, wrap func(*os.File) io.Reader) (rs Snapshot, err error) {
	if m, ok := store.As[*store.Instrumented](s); ok {
		defer func() { m.Pushed(err) }()
	}
	base := filepath.Base(localPath)
	pn, ok := snapshot.ParseFileName(base)
	n, t, comp := pn.Prefix, pn.Time, pn.Compression
	if !ok {
		return rs, fmt.Errorf("push %s to %s: not a snapshot name (<name>-<YYYYMMDDTHHMMSSZ>.tar[.gz|.zst])", localPath, s.Name())
	}
	digest, err := snapshot.ReadChecksum(localPath)
	if err != nil {
		return rs, fmt.Errorf("push %s to %s: %w", localPath, s.Name(), err)
	}
	f, err := os.Open(localPath)
	if err != nil {
		return rs, fmt.Errorf("push %s to %s: %w", localPath, s.Name(), err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return rs, fmt.Errorf("push %s to %s: %w", localPath, s.Name(), err)
	}
	size := fi.Size()
	rs = Snapshot{Key: base, Name: n, Time: t, Size: size, Compression: comp, Remote: s.Name()}

	// Already there? Then nothing to do. A complete snapshot under this key
	// whose .sha256 is not ours is another writer's: never replaced. Ours
	// with a damaged archive, or a .sha256 without its archive (an
	// interrupted deletion), is uploaded again: the .sha256 goes first, so
	// that the snapshot is not listed while its archive is replaced.
	archive, sum, err := existing(ctx, s, base)
	if err != nil {
		return rs, err
	}
	if sum != nil && archive != nil {
		got, err := readSum(ctx, s, base)
		if err != nil && !store.IsPermanent(err) {
			return rs, err
		}
		if err != nil || got != digest {
			return rs, errExists(s, base)
		}
		if archive.Size == size {
			rs.Modified = archive.Modified
			return rs, nil
		}
	}
	if sum != nil {
		if err := s.Delete(ctx, base+snapshot.SumSuffix); err != nil {
			return rs, err
		}
	}

	var r io.Reader = f
	if wrap != nil {
		r = wrap(f)
	}
	r = progress.From(ctx).Reader("push to "+s.Name(), r, size)
	if err := s.Put(ctx, base, r, size); err != nil {
		return rs, err
	}
	return rs, complete(ctx, s, "push", base, size, digest, "the local .sha256", &rs)
}

// complete completes an uploaded archive key on s: its stored size must be size
// (List), it is re-hashed where the store can do so cheaply (file://), and
// only then is its .sha256 naming digest uploaded, last, and read back. op
// and whose ("the local .sha256") name the operation and the digest's origin
// in errors. rs, when not nil, gets the stored modification time.
func complete(ctx context.Context, s store.Store, op, key string, size int64, digest, whose string, rs *Snapshot) error {
	if err := confirmSize(ctx, s, key, size, rs); err != nil {
		return err
	}
	if h, ok := store.As[store.Hasher](s); ok {
		got, err := h.SHA256(ctx, key)
		if err != nil {
			return err
		}
		if got != digest {
			return fmt.Errorf("%s: %s %s: %w: stored archive hashes to %s, %s says %s", s.Name(), op, key, ErrChecksum, got, whose, digest)
		}
	}
	return putSum(ctx, s, key, digest)
}

// putSum uploads key's .sha256 naming digest, last, and reads it back.
func putSum(ctx context.Context, s store.Store, key, digest string) error {
	sb := snapshot.FormatSum(digest, key)
	if err := s.Put(ctx, key+snapshot.SumSuffix, bytes.NewReader(sb), int64(len(sb))); err != nil {
		return err
	}
	got, err := readSum(ctx, s, key)
	if err != nil {
		return err
	}
	if got != digest {
		return fmt.Errorf("%s: push %s: %w: stored .sha256 says %s, expected %s", s.Name(), key, ErrChecksum, got, digest)
	}
	return nil
}

// ErrExists is wrapped by the error of a push whose key already holds a
// complete snapshot (archive and .sha256) with other content: two writers'
// snapshots of the same second never replace each other.
var ErrExists = errors.New("a different snapshot with this name is already there")

func errExists(s store.Store, key string) error {
	return &store.Error{Store: s.Name(), Op: "push", Key: key, Permanent: true,
		Err: fmt.Errorf("%w: not replaced (another writer's snapshot of the same second?)", ErrExists)}
}

// existing returns the archive key and its .sha256 as listed on s (nil when absent).
func existing(ctx context.Context, s store.Store, key string) (archive, sum *store.Object, err error) {
	objs, err := s.List(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	for i := range objs {
		switch objs[i].Key {
		case key:
			archive = &objs[i]
		case key + snapshot.SumSuffix:
			sum = &objs[i]
		}
	}
	return archive, sum, nil
}

// confirmSize checks that key is listed with the given size.
func confirmSize(ctx context.Context, s store.Store, key string, size int64, rs *Snapshot) error {
	objs, err := s.List(ctx, key)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.Key == key {
			if o.Size != size {
				return fmt.Errorf("%s: push %s: stored size is %d bytes, expected %d", s.Name(), key, o.Size, size)
			}
			if rs != nil {
				rs.Modified = o.Modified
			}
			return nil
		}
	}
	return fmt.Errorf("%s: push %s: not listed after upload", s.Name(), key)
}

// readSum reads and parses key's .sha256 on s.
func readSum(ctx context.Context, s store.Store, key string) (string, error) {
	var digest string
	err := store.Retry(ctx, s, "get "+key+snapshot.SumSuffix, func(ctx context.Context, s store.Store) error {
		rc, err := s.Get(ctx, key+snapshot.SumSuffix)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := fsx.ReadAtMost(rc, maxSumFile)
		if err != nil {
			return fmt.Errorf("%s: get %s%s: %w", s.Name(), key, snapshot.SumSuffix, err)
		}
		digest, err = snapshot.ParseSum(b, path.Base(key))
		if err != nil {
			return &store.Error{Store: s.Name(), Op: "get", Key: key + snapshot.SumSuffix, Err: err, Permanent: true}
		}
		return nil
	})
	return digest, err
}

// PushStream uploads a snapshot produced on the fly (no local copy) to s under
// key, then confirms the stored size and uploads the .sha256 last: the hex
// sha256 that digest returns once r has ended (the producer's own hash, so
// that a stream fanned out to several stores is hashed once), or, with a nil
// digest, the hash of what was read from r. Memory stays within the store's streaming bound. The source
// cannot be re-read, so a failure is not retried here: take a new snapshot.
// The caller bounds it (Remote.WithTimeout). A failed upload leaves at most an
// archive without .sha256 (never listed; Rotate deletes it later). A key that
// already holds a complete snapshot is refused before the upload (ErrExists);
// r is then not read.
func PushStream(ctx context.Context, s store.Store, key string, r io.Reader, digest func() string) (rs Snapshot, err error) {
	if m, ok := store.As[*store.Instrumented](s); ok {
		defer func() { m.Pushed(err) }()
	}
	pn, ok := snapshot.ParseFileName(key)
	n, t, comp := pn.Prefix, pn.Time, pn.Compression
	if !ok {
		return rs, fmt.Errorf("push %s to %s: not a snapshot name", key, s.Name())
	}
	if archive, sum, err := existing(ctx, s, key); err != nil {
		return rs, err
	} else if archive != nil && sum != nil {
		return rs, errExists(s, key)
	}
	if digest == nil {
		h := sha256.New()
		r = io.TeeReader(r, h)
		digest = func() string { return hex.EncodeToString(h.Sum(nil)) }
	}
	cr := &fsx.CountingReader{R: r}
	if err := s.Put(ctx, key, cr, -1); err != nil {
		return rs, err
	}
	rs = Snapshot{Key: key, Name: n, Time: t, Size: cr.N.Load(), Compression: comp, Remote: s.Name()}
	if err := confirmSize(ctx, s, key, rs.Size, &rs); err != nil {
		return rs, err
	}
	return rs, putSum(ctx, s, key, digest())
}

// Fetch downloads the snapshot key and its .sha256 from s into dstDir and
// checks the checksum. Both are written to temporary names first
// (".<key>.tmp-*", which package snapshot ignores and cleans up); the
// .sha256 is renamed into place before the archive, so a listed local archive
// always has its checksum. It returns the local archive path. A download
// failing midway is retried whole under s's retry policy; a checksum mismatch
// is not retried and leaves nothing behind. dstDir is created 0700 when
// missing. The caller bounds it (Remote.WithTimeout).
func Fetch(ctx context.Context, s store.Store, key, dstDir string) (localPath string, err error) {
	if !fs.ValidPath(key) || key == "." || strings.ContainsAny(key, `/\`) { // a local file name below

		return "", fmt.Errorf("%s: fetch %q: not a top-level key", s.Name(), key)
	}
	final := filepath.Join(dstDir, key)
	err = store.Retry(ctx, s, "fetch "+key, func(ctx context.Context, s store.Store) error {
		return fetch(ctx, s, key, dstDir, final)
	})
	if err != nil {
		return "", err
	}
	return final, nil
}

func fetch(ctx context.Context, s store.Store, key, dstDir, final string) (err error) {
	digest, err := readSum(ctx, s, key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dstDir, 0o700); err != nil {
		return fmt.Errorf("fetch %s from %s: %w", key, s.Name(), err)
	}
	rc, err := s.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp, err := fsx.CreateTemp(final)
	if err != nil {
		return fmt.Errorf("fetch %s from %s: %w", key, s.Name(), err)
	}
	defer tmp.Discard()
	h := sha256.New()
	var src io.Reader = store.ContextReader(ctx, rc)
	if m := progress.From(ctx); m != nil {
		total := int64(-1)
		if objs, err := s.List(ctx, key); err == nil && len(objs) > 0 && objs[0].Key == key {
			total = objs[0].Size
		}
		src = m.Reader("download "+key, src, total)
	}
	// A plain writer and a large buffer: one big read per request (SFTP).
	if _, err = io.CopyBuffer(io.MultiWriter(tmp, h), src, make([]byte, 1<<20)); err != nil {
		if ctx.Err() == nil {
			var se *store.Error
			if !errors.As(err, &se) {
				err = &store.Error{Store: s.Name(), Op: "get", Key: key, Err: err}
			}
		}
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		// Permanent: retrying the download cannot help (store.Retry stops).
		return &store.Error{Store: s.Name(), Op: "fetch", Key: key, Permanent: true,
			Err: fmt.Errorf("%w: downloaded archive hashes to %s, its .sha256 says %s", ErrChecksum, got, digest)}
	}
	sum, err := fsx.CreateTemp(final + snapshot.SumSuffix)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", key, err)
	}
	defer sum.Discard()
	if _, err = sum.Write(snapshot.FormatSum(digest, key)); err == nil {
		err = sum.Commit()
	}
	if err == nil {
		err = tmp.Commit()
	}
	if err != nil {
		os.Remove(final + snapshot.SumSuffix)
		return fmt.Errorf("fetch %s: %w", key, err)
	}
	_ = fsx.SyncDir(dstDir) // best effort: the files are complete and synced
	return nil
}

// DeleteSnapshot removes the snapshot key from s: the archive, then its .sha256.
func DeleteSnapshot(ctx context.Context, s store.Store, key string) error {
	if err := s.Delete(ctx, key); err != nil {
		return err
	}
	return s.Delete(ctx, key+snapshot.SumSuffix)
}

// Rotate applies the retention policy p to the snapshots named name on s
// (never to other names or instances) and deletes those it does not keep,
// oldest last; it also deletes this name's leftovers of interrupted uploads
// (an archive without .sha256, or the reverse) older than the newest complete
// snapshot, and the unfinished uploads of such snapshots that the store
// keeps out of List (abortStaleUploads). Each snapshot is given its size and
// format (compression and encryption) for the shrink guard; mark, when not
// nil, adds what only the caller knows (rotation.Snapshot's Empty and
// OnDemand). It returns the decision and the deleted keys (snapshots, then
// leftovers). A failed deletion stops it.
func Rotate(ctx context.Context, s store.Store, name string, p rotation.Policy, now time.Time, mark func(*rotation.Snapshot)) (rotation.Decision, []string, error) {
	if name == "" {
		return rotation.Decision{}, nil, errors.New("rotate: no snapshot name")
	}
	objs, err := s.List(ctx, name+"-")
	if err != nil {
		return rotation.Decision{}, nil, err
	}
	snaps := snapshotsIn(objs, s.Name(), name)
	in := make([]rotation.Snapshot, len(snaps))
	for i, r := range snaps {
		in[i] = rotation.Snapshot{Name: r.Key, Time: r.Time, Size: r.Size,
			Format: rotation.ArchiveFormat(r.Compression, seal.FromSuffix(r.Key))}
		if mark != nil {
			mark(&in[i])
		}
	}
	d := rotation.Decide(in, p, now)
	var deleted []string
	for _, del := range d.Delete {
		if err := DeleteSnapshot(ctx, s, del.Name); err != nil {
			return d, deleted, err
		}
		deleted = append(deleted, del.Name)
	}
	for _, k := range orphansIn(objs, snaps, name) {
		if err := s.Delete(ctx, k); err != nil {
			return d, deleted, err
		}
		deleted = append(deleted, k)
	}
	aborted, err := abortStaleUploads(ctx, s, name, snaps)
	return d, append(deleted, aborted...), err
}

// abortStaleUploads removes the unfinished uploads of snapshots named name
// (archive or .sha256) older than the newest complete snapshot: such an
// upload cannot be in progress any more, since snapshots are pushed in
// order; a newer one, or one of the newest snapshot itself, may be. It
// returns what it removed ("<key> (unfinished upload)").
func abortStaleUploads(ctx context.Context, s store.Store, name string, complete []Snapshot) ([]string, error) {
	ul, ok := store.As[store.UploadLister](s)
	if !ok || len(complete) == 0 {
		return nil, nil
	}
	ups, err := ul.Uploads(ctx, name+"-")
	if err != nil {
		return nil, err
	}
	var done []string
	for _, u := range staleUploads(ups, complete[0].Time, name) {
		if err := ul.AbortUpload(ctx, u); err != nil {
			return done, err
		}
		done = append(done, u.Key+" (unfinished upload)")
	}
	return done, nil
}

// staleUploads picks the uploads of snapshots named name older than newest.
func staleUploads(ups []store.Upload, newest time.Time, name string) []store.Upload {
	var out []store.Upload
	for _, u := range ups {
		pn, ok := snapshot.ParseFileName(strings.TrimSuffix(u.Key, snapshot.SumSuffix))
		n, t := pn.Prefix, pn.Time
		if ok && n == name && t.Before(newest) {
			out = append(out, u)
		}
	}
	return out
}
