package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"snapvisor/internal/fsx"
)

// fileStore is a directory on any mounted file system (NFS, CIFS, hostPath):
// file:///mnt/backups. Uploads go to a temporary file in the target directory,
// are fsynced and renamed into place, and the directory is fsynced.
type fileStore struct {
	root string
	name string
}

var (
	_ Store        = (*fileStore)(nil)
	_ Hasher       = (*fileStore)(nil)
	_ UploadLister = (*fileStore)(nil)
)

func openFile(u *url.URL) (*fileStore, error) {
	root := filepath.Clean(u.Path)
	s := &fileStore{root: root, name: "file://" + (&url.URL{Path: root}).EscapedPath()}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, s.fail("open", "", err)
	}
	return s, nil
}

func (s *fileStore) Name() string { return s.name }
func (s *fileStore) Close() error { return nil }

// streamBuffer: the copy buffer.
func (s *fileStore) streamBuffer() int64 { return 1 << 20 }

func (s *fileStore) fail(op, key string, err error) error {
	return &Error{Store: s.name, Op: op, Key: key, Err: err, Permanent: errors.Is(err, errBadKey) || errors.Is(err, fs.ErrPermission)}
}

func (s *fileStore) path(key string) string { return filepath.Join(s.root, filepath.FromSlash(key)) }

func (s *fileStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkKey(key); err != nil {
		return s.fail("put", key, err)
	}
	final := s.path(key)
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return s.fail("put", key, err)
	}
	f, err := fsx.CreateTemp(final)
	if err != nil {
		return s.fail("put", key, err)
	}
	defer f.Discard()
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err != nil {
		return s.fail("put", key, err)
	}
	if size >= 0 && n != size {
		return s.fail("put", key, errShort(n, size))
	}
	if err := f.Commit(); err != nil {
		return s.fail("put", key, err)
	}
	// Best effort where the directory cannot be opened (a write-only drop
	// box, say) or the file system cannot sync directories (EINVAL).
	if err := fsx.SyncDir(dir); err != nil && !errors.Is(err, os.ErrInvalid) && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
		return s.fail("put", key, err)
	}
	return nil
}

func (s *fileStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, s.fail("get", key, err)
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		return nil, s.fail("get", key, err)
	}
	return f, nil
}

func (s *fileStore) List(ctx context.Context, prefix string) ([]Object, error) {
	out, _, err := s.list(ctx, prefix)
	return out, err
}

// Uploads returns the upload temporaries (".<base>.tmp-*") of keys starting
// with prefix: what an interrupted Put left behind.
func (s *fileStore) Uploads(ctx context.Context, prefix string) ([]Upload, error) {
	_, ups, err := s.list(ctx, prefix)
	return ups, err
}

// AbortUpload deletes the temporary u.ID.
func (s *fileStore) AbortUpload(ctx context.Context, u Upload) error { return s.Delete(ctx, u.ID) }

// list walks the directory for the objects and the upload temporaries of
// keys starting with prefix.
func (s *fileStore) list(ctx context.Context, prefix string) (out []Object, ups []Upload, err error) {
	err = filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == s.root {
				return err
			}
			return nil // vanished while walking
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.root, p)
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if p != s.root && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if target, ok := tempTarget(key); ok {
			if strings.HasPrefix(target, prefix) {
				ups = append(ups, Upload{Key: target, ID: key})
			}
			return nil
		}
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		out = append(out, Object{Key: key, Size: fi.Size(), Modified: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, nil, s.fail("list", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, ups, nil
}

func (s *fileStore) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return s.fail("delete", key, err)
	}
	if err := os.Remove(s.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s.fail("delete", key, err)
	}
	return nil
}

// SHA256 hashes the stored object (Hasher: remote.Push uses it to confirm
// what was written).
func (s *fileStore) SHA256(ctx context.Context, key string) (string, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, rc}); err != nil {
		return "", s.fail("hash", key, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ContextReader returns r that stops reading when ctx ends (with ctx's error).
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

// ctxReader stops reading when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
