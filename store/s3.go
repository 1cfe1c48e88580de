//go:build !snapvisor_no_s3

package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.uber.org/zap"

	"snapvisor/config"
)

// S3 memory bound: a streaming upload (size -1) holds s3StreamThreads parts of
// s3PartSize in memory (32 MiB); a known-size upload from a file reads parts
// straight from the file (io.ReaderAt) with s3FileThreads parallel requests.
// With unknown size the object is limited to 10000 parts: 156 GiB.
const (
	s3PartSize      = 16 << 20
	s3StreamThreads = 2
	s3FileThreads   = 4
	s3StreamBuffer  = s3StreamThreads * s3PartSize
)

func init() {
	register(backend{
		scheme: "s3", order: 2, example: "s3://bucket/prefix?endpoint=host:port&region=R&tls=false",
		credentials: "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY",
		check:       checkS3URL, validate: validateS3, open: openS3, streamBuffer: s3StreamBuffer,
	})
}

// checkS3URL checks an s3:// URL: a bucket, tls true or false, an endpoint host[:port].
func checkS3URL(u *url.URL) error {
	if err := checkBucket(u); err != nil {
		return err
	}
	if v := u.Query().Get("tls"); v != "" && v != "true" && v != "false" {
		return errors.New("tls must be true or false")
	}
	return checkEndpointParam(u)
}

// validateS3 checks that a secret key comes with its access key.
func validateS3(c Config, _ bool) []error {
	if c.S3SecretKey != "" && c.S3AccessKey == "" {
		return []error{&config.Error{Var: "AWS_ACCESS_KEY_ID", Accepted: "set together with AWS_SECRET_ACCESS_KEY"}}
	}
	return nil
}

// s3Store is a bucket (and prefix) on AWS S3, MinIO or another S3-compatible
// server: s3://bucket/prefix?endpoint=host:port&region=R&tls=false&storage_class=C.
// Uploads are multipart: parts are invisible until the upload completes.
type s3Store struct {
	client       *minio.Client
	bucket       string
	prefix       string
	name         string
	storageClass string
	region       string
	scrub        func(string) string
	// server identifies the endpoint and the credentials (their hash) for
	// ServerCopy: two stores with the same server can copy between them.
	server string
}

var _ Store = (*s3Store)(nil)

func openS3(ctx context.Context, u *url.URL, cfg Config, log *zap.Logger) (Store, error) {
	q := u.Query()
	s := &s3Store{
		bucket:       u.Host,
		prefix:       strings.Trim(u.Path, "/"),
		name:         Redact(u.String()),
		storageClass: cfg.S3StorageClass,
		region:       q.Get("region"),
		scrub:        scrubber(cfg.S3SecretKey.Reveal(), cfg.S3SessionToken.Reveal()),
	}
	if v := q.Get("storage_class"); v != "" {
		s.storageClass = v
	}
	endpoint := q.Get("endpoint")
	if endpoint == "" {
		endpoint = "s3.amazonaws.com"
	}
	secure := q.Get("tls") != "false"
	if strings.Contains(endpoint, "://") { // tolerate http://host:port
		eu, err := url.Parse(endpoint)
		if err != nil {
			return nil, s.fail("open", "", fmt.Errorf("endpoint: %w", err))
		}
		endpoint, secure = eu.Host, eu.Scheme == "https"
	}
	s.server = s3Server(endpoint, secure, cfg)
	var creds *credentials.Credentials
	if cfg.S3AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.S3AccessKey.Reveal(), cfg.S3SecretKey.Reveal(), cfg.S3SessionToken.Reveal())
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{},
			&credentials.IAM{Client: &http.Client{Transport: http.DefaultTransport}},
		})
	}
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, s.fail("open", "", err)
	}
	if cfg.S3CAFile != "" {
		pool, err := extraRoots(cfg.S3CAFile, "SNAPVISOR_S3_CA_FILE")
		if err != nil {
			return nil, s.fail("open", "", err)
		}
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	client, err := minio.New(endpoint, &minio.Options{
		Creds:      creds,
		Secure:     secure,
		Region:     q.Get("region"),
		Transport:  tr,
		MaxRetries: 3, // a few quick request-level retries; WithRetry does the patient ones
	})
	if err != nil {
		return nil, s.fail("open", "", err)
	}
	s.client = client
	log.Debug("s3 store opened", zap.String("remote", s.name), zap.String("endpoint", endpoint), zap.Bool("tls", secure))
	return s, nil
}

func (s *s3Store) Name() string { return s.name }
func (s *s3Store) Close() error { return nil }

// streamBuffer: the parts in flight of a streaming upload.
func (s *s3Store) streamBuffer() int64 { return s3StreamBuffer }

func (s *s3Store) key(key string) string {
	if s.prefix == "" {
		return key
	}
	return s.prefix + "/" + key
}

func (s *s3Store) fail(op, key string, err error) error {
	e := &Error{Store: s.name, Op: op, Key: key, Err: err, scrub: s.scrub}
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey":
		e.Err = fmt.Errorf("%w (%v)", fs.ErrNotExist, err)
	case "NoSuchBucket":
		// No bucket yet is an empty remote, as List says: no key exists in it
		// (the first Put creates it).
		e.Err, e.Permanent = fmt.Errorf("%w (%v)", fs.ErrNotExist, err), true
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidBucketName",
		"AllAccessDisabled", "InvalidObjectState", "InvalidStorageClass", "ExpiredToken", "InvalidToken":
		e.Permanent = true
	}
	if errors.Is(err, errBadKey) {
		e.Permanent = true
	}
	return e
}

func (s *s3Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkKey(key); err != nil {
		return s.fail("put", key, err)
	}
	opts := minio.PutObjectOptions{
		PartSize:     s3PartSize,
		StorageClass: s.storageClass,
		ContentType:  "application/octet-stream",
	}
	sendSize := size
	if size < 0 {
		// Unknown size: NumThreads buffers of PartSize, uploaded in parallel.
		opts.ConcurrentStreamParts, opts.NumThreads = true, s3StreamThreads
	} else if _, ok := r.(io.ReaderAt); ok {
		opts.NumThreads = s3FileThreads // parts read from the file by section, no buffers
	} else if size > s3PartSize {
		// A stream of known size (a copy from another store): minio-go
		// uploads such parts one at a time; as a stream of unknown size they
		// go in parallel, within the same buffers. exactly() keeps the length:
		// a source longer or shorter than size fails, and the upload is aborted.
		opts.ConcurrentStreamParts, opts.NumThreads = true, s3StreamThreads
		r, sendSize = exactly(r, size), -1
	} else {
		opts.NumThreads = 1 // one part buffer
	}
	multipart := size < 0 || size > s3PartSize
	if multipart {
		// The marker names the upload for Uploads; a failed upload leaves it
		// for the rotation that aborts the upload's parts.
		if _, err := s.putObject(ctx, multipartMarker(key), bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
			return s.fail("put", key, err)
		}
	}
	info, err := s.putObject(ctx, key, r, sendSize, opts)
	if err != nil {
		return s.fail("put", key, err)
	}
	if size >= 0 && info.Size != size {
		return s.fail("put", key, errShort(info.Size, size))
	}
	if multipart {
		_ = s.client.RemoveObject(ctx, s.bucket, s.key(multipartMarker(key)), minio.RemoveObjectOptions{}) // left over: rotation removes it
	}
	return nil
}

// putObject uploads an object, creating the bucket when it does not exist.
func (s *s3Store) putObject(ctx context.Context, key string, r io.Reader, size int64, opts minio.PutObjectOptions) (minio.UploadInfo, error) {
	info, err := s.client.PutObject(ctx, s.bucket, s.key(key), r, size, opts)
	if err != nil && minio.ToErrorResponse(err).Code == "NoSuchBucket" {
		// A fresh MinIO or a new bucket name: create it once, then upload (the
		// reader has not been consumed: the request failed before the body).
		if berr := s.makeBucket(ctx); berr != nil {
			return info, fmt.Errorf("bucket %q does not exist and could not be created: %w", s.bucket, berr)
		}
		info, err = s.client.PutObject(ctx, s.bucket, s.key(key), r, size, opts)
	}
	return info, err
}

// multipartMarker is the key of the empty object that marks a multipart
// upload of key in progress: ".<base>.tmp-multipart" beside it, never listed
// (isTemp). Some servers (MinIO) list incomplete uploads only by their exact
// key, so Uploads finds the keys to ask for through the markers.
func multipartMarker(key string) string {
	dir, base := path.Split(key)
	return dir + "." + base + ".tmp-multipart"
}

func (s *s3Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, s.fail("get", key, err)
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.key(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, s.fail("get", key, err)
	}
	// GetObject is lazy: Stat makes the request, so a missing key fails here.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, s.fail("get", key, err)
	}
	return &s3Reader{obj: obj, fail: func(err error) error { return s.fail("get", key, err) }}, nil
}

// s3Reader reports read errors through the store's error type (redacted).
type s3Reader struct {
	obj  *minio.Object
	fail func(error) error
}

func (r *s3Reader) Read(p []byte) (int, error) {
	n, err := r.obj.Read(p)
	if err != nil && err != io.EOF {
		err = r.fail(err)
	}
	return n, err
}

func (r *s3Reader) Close() error { return r.obj.Close() }

func (s *s3Store) List(ctx context.Context, prefix string) ([]Object, error) {
	full := s.key(prefix)
	if prefix == "" && s.prefix != "" {
		full = s.prefix + "/"
	}
	var out []Object
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: full, Recursive: true}) {
		if obj.Err != nil {
			if minio.ToErrorResponse(obj.Err).Code == "NoSuchBucket" {
				return nil, nil // no bucket yet: no snapshots yet (Put creates it)
			}
			return nil, s.fail("list", prefix, obj.Err)
		}
		k := s.unkey(obj.Key)
		if isTemp(path.Base(k)) { // a multipart marker
			continue
		}
		out = append(out, Object{Key: k, Size: obj.Size, Modified: obj.LastModified})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (s *s3Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return s.fail("delete", key, err)
	}
	if err := s.client.RemoveObject(ctx, s.bucket, s.key(key), minio.RemoveObjectOptions{}); err != nil {
		if c := minio.ToErrorResponse(err).Code; c == "NoSuchKey" || c == "NoSuchBucket" {
			return nil
		}
		return s.fail("delete", key, err)
	}
	return nil
}

// makeBucket creates the bucket if it does not exist: on the first Put into a
// missing bucket.
func (s *s3Store) makeBucket(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.fail("bucket", "", err)
	}
	if ok {
		return nil
	}
	if err := s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region}); err != nil {
		return s.fail("bucket", "", err)
	}
	return nil
}

// Uploads returns the incomplete multipart uploads of keys starting with
// prefix: what an interrupted Put left behind (its parts are stored, and
// billed, until the upload is aborted; on AWS a bucket lifecycle rule
// AbortIncompleteMultipartUpload does the same). They are found by prefix
// where the server can (AWS), and through the markers Put leaves where it
// cannot (MinIO lists them by exact key only): a marker's Upload has the
// marker's key as ID and stands for every upload of its key.
func (s *s3Store) Uploads(ctx context.Context, prefix string) ([]Upload, error) {
	var out []Upload
	for u := range s.client.ListIncompleteUploads(ctx, s.bucket, s.key(prefix), true) {
		if u.Err != nil {
			if minio.ToErrorResponse(u.Err).Code == "NoSuchBucket" {
				return nil, nil
			}
			return nil, s.fail("list uploads", prefix, u.Err)
		}
		if k := s.unkey(u.Key); strings.HasPrefix(k, prefix) {
			out = append(out, Upload{Key: k, ID: u.UploadID})
		}
	}
	dir, base := path.Split(prefix)
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.key(dir + "." + base), Recursive: true}) {
		if obj.Err != nil {
			if minio.ToErrorResponse(obj.Err).Code == "NoSuchBucket" {
				return nil, nil
			}
			return nil, s.fail("list uploads", prefix, obj.Err)
		}
		k := s.unkey(obj.Key)
		if target, ok := tempTarget(k); ok && strings.HasPrefix(target, prefix) {
			out = append(out, Upload{Key: target, ID: k})
		}
	}
	return out, nil
}

// AbortUpload aborts the multipart upload u (its parts are deleted); for a
// marker, every incomplete upload of its key, then the marker.
func (s *s3Store) AbortUpload(ctx context.Context, u Upload) error {
	if err := checkKey(u.Key); err != nil {
		return s.fail("abort upload", u.Key, err)
	}
	core := minio.Core{Client: s.client}
	abort := func(id string) error {
		err := core.AbortMultipartUpload(ctx, s.bucket, s.key(u.Key), id)
		if err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" {
			return s.fail("abort upload", u.Key, err)
		}
		return nil
	}
	if !isTemp(path.Base(u.ID)) {
		return abort(u.ID)
	}
	for mu := range s.client.ListIncompleteUploads(ctx, s.bucket, s.key(u.Key), false) {
		if mu.Err != nil {
			return s.fail("list uploads", u.Key, mu.Err)
		}
		if mu.Key != s.key(u.Key) {
			continue
		}
		if err := abort(mu.UploadID); err != nil {
			return err
		}
	}
	return s.Delete(ctx, u.ID)
}

// s3Server identifies an endpoint and the credentials used there, without
// holding the secrets: a hash of them.
func s3Server(endpoint string, secure bool, cfg Config) string {
	h := sha256.Sum256([]byte(cfg.S3AccessKey.Reveal() + "\x00" + cfg.S3SecretKey.Reveal() + "\x00" + cfg.S3SessionToken.Reveal()))
	return fmt.Sprintf("%t|%s|%x", secure, strings.ToLower(endpoint), h)
}

// s3MaxCopy is the largest object one CopyObject request copies (S3's limit);
// above it ComposeObject copies it in parts (UploadPartCopy).
const s3MaxCopy = 5 << 30

var _ ServerCopier = (*s3Store)(nil)

// ServerCopy copies src's key to key here inside the server when src is an
// s3 store on the same endpoint with the same credentials.
func (s *s3Store) ServerCopy(ctx context.Context, src Store, key string, size int64) (bool, error) {
	from, ok := As[*s3Store](src)
	if !ok || from.server != s.server {
		return false, nil
	}
	if err := checkKey(key); err != nil {
		return true, s.fail("copy", key, err)
	}
	dst := minio.CopyDestOptions{Bucket: s.bucket, Object: s.key(key)}
	srcOpts := minio.CopySrcOptions{Bucket: from.bucket, Object: from.key(key)}
	copyObject := func() (minio.UploadInfo, error) {
		if size <= s3MaxCopy {
			return s.client.CopyObject(ctx, dst, srcOpts)
		}
		// Parts: the marker names the upload for Uploads, as in Put.
		if _, err := s.putObject(ctx, multipartMarker(key), bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
			return minio.UploadInfo{}, err
		}
		info, err := s.client.ComposeObject(ctx, dst, srcOpts)
		if err == nil {
			_ = s.client.RemoveObject(ctx, s.bucket, s.key(multipartMarker(key)), minio.RemoveObjectOptions{})
		}
		return info, err
	}
	info, err := copyObject()
	if err != nil && minio.ToErrorResponse(err).Code == "NoSuchBucket" && s.bucket != from.bucket {
		if berr := s.makeBucket(ctx); berr != nil {
			return true, s.fail("copy", key, berr)
		}
		info, err = copyObject()
	}
	if err != nil {
		return true, s.fail("copy", key, err)
	}
	if info.Size != 0 && info.Size != size {
		return true, s.fail("copy", key, errShort(info.Size, size))
	}
	return true, nil
}

// unkey turns an object name into a key relative to the prefix.
func (s *s3Store) unkey(name string) string {
	if s.prefix == "" {
		return name
	}
	return strings.TrimPrefix(name, s.prefix+"/")
}
