package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/url"
	"path"
	"strings"

	"snapvisor/internal/progress"
	"snapvisor/snapshot"
	"snapvisor/store"
)

// CopyOptions tune Copy.
type CopyOptions struct {
	// Replace: the destination's copy of key is known to be damaged (it failed
	// verification): it is replaced (its .sha256 deleted first, so it is never
	// listed while replaced). Without it a complete snapshot of key on the
	// destination with another checksum is never touched (ErrExists).
	Replace bool
}

// CopyResult is what one Copy did.
type CopyResult struct {
	Key        string `json:"key"`
	From       string `json:"from"`                  // source store's Name()
	To         string `json:"to"`                    // destination store's Name()
	Bytes      int64  `json:"bytes"`                 // archive bytes written to the destination (0 when skipped)
	Skipped    bool   `json:"skipped,omitempty"`     // already there with the same checksum and size
	ServerSide bool   `json:"server_side,omitempty"` // copied by the server (S3 CopyObject)
}

// ErrSameLocation is wrapped by the error of a Copy whose source and
// destination are the same place: copying would read and replace the same
// objects.
var ErrSameLocation = errors.New("source and destination are the same location")

// copyBuffer is the buffer of a streamed copy: one large read per request
// (SFTP), fixed whatever the archive's size.
const copyBuffer = 1 << 20

// Copy copies the complete snapshot key (archive + .sha256) from `from` to
// `to`. The source's .sha256 is the truth: the bytes are hashed on the way
// and a Put whose bytes do not hash to it is never committed (the reader
// fails instead of ending); the size is confirmed, the destination re-hashed
// where it can (store.Hasher), and the .sha256 uploaded last, so a partial
// copy is never listed. A destination already holding the same snapshot
// (same digest and size) is skipped; one holding another complete snapshot
// of key fails with ErrExists unless opts.Replace; an archive there without
// .sha256 (an earlier copy cut short) is replaced. A source that does not
// verify fails with ErrChecksum (a permanent *store.Error naming the source)
// and nothing is listed on `to`. Same location: ErrSameLocation, before
// anything is read. Memory is bounded (streamed, fixed buffers); a copy
// failing midway is retried whole under `to`'s retry policy, the source
// re-opened. S3 to S3 on one endpoint with the same credentials is copied by
// the server (store.ServerCopier), then read back and hashed before the
// .sha256 is written. Encrypted archives are copied as stored: no keys.
func Copy(ctx context.Context, from, to store.Store, key string, opts CopyOptions) (res CopyResult, err error) {
	res = CopyResult{Key: key, From: from.Name(), To: to.Name()}
	if _, ok := snapshot.ParseFileName(key); !ok || strings.Contains(key, "/") {
		return res, fmt.Errorf("copy %q from %s: not a snapshot key (<name>-<YYYYMMDDTHHMMSSZ>.tar[.gz|.zst])", key, from.Name())
	}
	if SameLocation(from, to) {
		return res, fmt.Errorf("copy %s from %s to %s: %w", key, from.Name(), to.Name(), ErrSameLocation)
	}

	// The source: complete, and its .sha256 is the truth.
	src, srcSum, err := existing(ctx, from, key)
	if err != nil {
		return res, err
	}
	if src == nil || srcSum == nil {
		return res, &store.Error{Store: from.Name(), Op: "copy", Key: key, Permanent: true,
			Err: fmt.Errorf("%w: not a complete snapshot there (archive and .sha256)", fs.ErrNotExist)}
	}
	digest, err := readSum(ctx, from, key)
	if err != nil {
		return res, err
	}
	size := src.Size

	// The destination: the same snapshot already there is skipped; another
	// writer's is never replaced; a damaged copy of this one is.
	archive, sum, err := existing(ctx, to, key)
	if err != nil {
		return res, err
	}
	if sum != nil && archive != nil {
		got, err := readSum(ctx, to, key)
		if err != nil && !store.IsPermanent(err) {
			return res, err
		}
		same := err == nil && got == digest
		if !same && !opts.Replace {
			return res, errExists(to, key)
		}
		// Replace: the copy failed verification (a drill, a replication
		// reading it), so an equal .sha256 and size prove nothing.
		if same && archive.Size == size && !opts.Replace {
			ok := true
			if h, isHasher := store.As[store.Hasher](to); isHasher {
				hd, err := h.SHA256(ctx, key)
				if err != nil {
					return res, err
				}
				ok = hd == digest
			}
			if ok {
				res.Skipped = true
				return res, nil
			}
		}
	}
	if sum != nil {
		if err := to.Delete(ctx, key+snapshot.SumSuffix); err != nil {
			return res, err
		}
	}

	if sc, ok := store.As[store.ServerCopier](to); ok {
		err := store.Retry(ctx, to, "copy "+key, func(ctx context.Context, _ store.Store) error {
			var err error
			res.ServerSide, err = sc.ServerCopy(ctx, from, key, size)
			return err
		})
		if err != nil {
			return res, err
		}
		if res.ServerSide {
			// The server copied bytes nobody checked: read them back before
			// the .sha256 makes them a snapshot. A mismatch is the source's.
			if err := verifyCopy(ctx, to, key, digest); err != nil {
				_ = to.Delete(ctx, key)
				if errors.Is(err, ErrChecksum) {
					err = &store.Error{Store: from.Name(), Op: "copy", Key: key, Permanent: true,
						Err: fmt.Errorf("%w: the server-side copy of the source's archive does not hash to its .sha256 (%v)", ErrChecksum, err)}
				}
				return res, err
			}
		}
	}
	if !res.ServerSide {
		if err := CopyObject(ctx, from, to, key, size, digest); err != nil {
			return res, err
		}
	}
	if err := complete(ctx, to, "copy", key, size, digest, "the source's .sha256", nil); err != nil {
		return res, err
	}
	res.Bytes = size
	abortUploadsOf(ctx, to, key)
	return res, nil
}

// abortUploadsOf removes, best effort, the unfinished uploads of key and its
// .sha256 on s once the snapshot is complete there: what an earlier copy
// killed midway left (Rotate's clean-up spares the newest snapshot's, which
// such a copy often is). A concurrent copy of the same key fails at worst;
// the complete snapshot is there.
func abortUploadsOf(ctx context.Context, s store.Store, key string) {
	ul, ok := store.As[store.UploadLister](s)
	if !ok {
		return
	}
	ups, err := ul.Uploads(ctx, key)
	if err != nil {
		return
	}
	for _, u := range ups {
		if u.Key == key || u.Key == key+snapshot.SumSuffix {
			_ = ul.AbortUpload(ctx, u)
		}
	}
}

// CopyObject streams from's key (size bytes) to the same key on to, checking
// on the way that the bytes hash to digest (hex sha256): when they do not
// (or the source ends short), the atomic Put fails instead of committing
// them, with a permanent *store.Error naming the source and wrapping
// ErrChecksum. It is retried whole under to's policy, the source re-opened.
// Memory is bounded: to's own parts, and reads of at most 1 MiB; while it
// runs the process's Go memory limit is that of a snapshot plus those parts
// (snapshot.LimitMemory).
func CopyObject(ctx context.Context, from, to store.Store, key string, size int64, digest string) error {
	// The process's memory bound of a snapshot, plus to's upload parts in
	// flight: without it the GC lets the heap grow to twice the parts.
	defer snapshot.LimitMemory(store.StreamBuffer(to))()
	return store.Retry(ctx, to, "copy "+key, func(ctx context.Context, dst store.Store) error {
		rc, err := from.Get(ctx, key)
		if err != nil {
			return err
		}
		defer rc.Close()
		vr := &verifyingReader{r: progress.From(ctx).Reader("copy "+key, store.ContextReader(ctx, rc), size), h: sha256.New(), size: size, digest: digest,
			src: from.Name(), key: key}
		// vr is a plain reader (no WriterTo, ReaderAt or Seeker): the store
		// reads it in its own bounded parts, at most copyBuffer at a time.
		err = dst.Put(ctx, key, vr, size)
		if vr.bad != nil {
			return vr.bad // the source does not verify: permanent, names the source
		}
		if err != nil && vr.readErr != nil && !errors.Is(err, vr.readErr) {
			return fmt.Errorf("%w (reading the source: %w)", err, vr.readErr)
		}
		return err
	})
}

// verifyingReader passes size bytes through, hashing them; the read that
// would complete them fails instead (returning none of its bytes, so that
// io.ReadFull cannot swallow the error) when they do not hash to digest, and
// a source ending short fails instead of ending. So an atomic Put reading it
// never commits bytes other than the snapshot's.
type verifyingReader struct {
	r       io.Reader
	h       hash.Hash
	n, size int64
	digest  string
	src     string // the source store's Name(), for errors
	key     string
	bad     error // the source failed verification
	readErr error // the source failed to read (transient)
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.bad != nil {
		return 0, v.bad
	}
	left := v.size - v.n
	if left == 0 {
		return 0, io.EOF // verified when the last byte came
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	if len(p) > copyBuffer {
		p = p[:copyBuffer]
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	switch {
	case v.n == v.size:
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.digest {
			v.bad = v.fail(fmt.Errorf("%w: the source's archive hashes to %s, its .sha256 says %s", ErrChecksum, got, v.digest))
			return 0, v.bad
		}
		return n, nil
	case err == io.EOF:
		v.bad = v.fail(fmt.Errorf("%w: the source's archive ended after %d bytes, listed with %d", ErrChecksum, v.n, v.size))
		return 0, v.bad
	case err != nil:
		v.readErr = err
	}
	return n, err
}

func (v *verifyingReader) fail(err error) error {
	return &store.Error{Store: v.src, Op: "copy", Key: v.key, Permanent: true, Err: err}
}

// VerifyCopy downloads key from s and hashes it against key's .sha256 on s:
// the one home for "hash a remote copy". A mismatch is a permanent
// *store.Error wrapping ErrChecksum; a download failing midway is retried
// under s's policy.
func VerifyCopy(ctx context.Context, s store.Store, key string) error {
	digest, err := readSum(ctx, s, key)
	if err != nil {
		return err
	}
	return verifyCopy(ctx, s, key, digest)
}

// verifyCopy downloads key from s and hashes it against want.
func verifyCopy(ctx context.Context, s store.Store, key, want string) error {
	return store.Retry(ctx, s, "verify "+key, func(ctx context.Context, s store.Store) error {
		rc, err := s.Get(ctx, key)
		if err != nil {
			return err
		}
		defer rc.Close()
		h := sha256.New()
		if _, err := io.CopyBuffer(h, store.ContextReader(ctx, rc), make([]byte, copyBuffer)); err != nil {
			var se *store.Error
			if ctx.Err() == nil && !errors.As(err, &se) {
				err = &store.Error{Store: s.Name(), Op: "get", Key: key, Err: err}
			}
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return &store.Error{Store: s.Name(), Op: "verify", Key: key, Permanent: true,
				Err: fmt.Errorf("%w: stored archive hashes to %s, its .sha256 says %s", ErrChecksum, got, want)}
		}
		return nil
	})
}

// SameLocation reports whether a and b name the same place: the same scheme,
// host (bucket, container, server) and cleaned path, and for stores reached
// through an endpoint parameter the same endpoint (http:// or not, any case).
// file:///a and file:///a/ are the same; s3://b/x?region=r1 and
// s3://b/x?region=r2 on one endpoint are too.
func SameLocation(a, b store.Store) bool {
	return location(a.Name()) == location(b.Name())
}

// location reduces a store's Name() to what identifies its place.
func location(name string) string {
	u, err := url.Parse(name)
	if err != nil {
		return name
	}
	p := strings.Trim(path.Clean("/"+u.Path), "/")
	ep := strings.ToLower(u.Query().Get("endpoint"))
	if i := strings.Index(ep, "://"); i >= 0 {
		ep = ep[i+3:]
	}
	ep = strings.TrimSuffix(ep, "/")
	user := ""
	if u.User != nil {
		user = u.User.Username()
	}
	return strings.Join([]string{strings.ToLower(u.Scheme), user, strings.ToLower(u.Host), p, ep}, "\x00")
}
