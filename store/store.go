// Package store is remote byte storage: a mounted directory (file://), S3
// and S3-compatible servers (s3://), SFTP (sftp://), Azure Blob Storage
// (azure://), Google Cloud Storage (gs://), Redis (redis://, rediss://),
// PostgreSQL (postgres://) and SQLite (sqlite://). It knows nothing of
// snapshots (package remote keeps those on a Store).
//
// Every backend implements the small Store interface and registers its URL
// scheme in its own file (registry.go); a build tag leaves a backend out of
// the binary (-tags snapvisor_no_s3, snapvisor_no_sftp, snapvisor_no_azure,
// snapvisor_no_gs, snapvisor_no_redis, snapvisor_no_postgres,
// snapvisor_no_sqlite; file:// is always built in), and its URLs are then refused
// as invalid configuration. Retries and metrics are wrappers around any Store
// (WithRetry, WithMetrics). Optional abilities of some backends (Hasher,
// UploadLister) are found through the wrappers with As.
//
// Credentials never appear in Name(), in errors or in logs: URL passwords and
// secret query parameters are redacted, and error texts from the client
// libraries are scrubbed of the secrets the store was opened with.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"snapvisor/config"
)

// Object is one stored object.
type Object struct {
	Key      string    // relative to the store's prefix, '/'-separated
	Size     int64     // bytes
	Modified time.Time // as reported by the store
}

// Store is a remote (or mounted) place for snapshots. Keys are relative to the
// URL's path or prefix, '/'-separated, without "." or ".." elements.
type Store interface {
	// Name is the store's URL with credentials redacted; errors and logs use it.
	Name() string
	// Put stores r under key. size is the exact length, or -1 when unknown
	// (streaming, with bounded memory). It is atomic: a failed or partial
	// upload is never visible under key, and a complete one replaces any
	// previous object at once.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens key for reading; a missing key gives an error matching fs.ErrNotExist.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// List returns every object whose key starts with prefix ("" for all),
	// sorted by key. Upload temporaries are never listed.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Close releases connections; the store must not be used afterwards.
	Close() error
}

// As finds the first store in s's chain of wrappers (Unwrap) that is or
// implements T: a wrapper (*Retrying, *Instrumented) or an optional ability
// of some backends (Hasher, UploadLister, ...), without widening Store.
func As[T any](s Store) (T, bool) {
	for s != nil {
		if c, ok := s.(T); ok {
			return c, true
		}
		w, ok := s.(interface{ Unwrap() Store })
		if !ok {
			break
		}
		s = w.Unwrap()
	}
	var zero T
	return zero, false
}

// Hasher is implemented by stores that can hash a stored object cheaply
// (file://): the hex sha256 of key's content.
type Hasher interface {
	SHA256(ctx context.Context, key string) (string, error)
}

// ServerCopier is implemented by stores whose server can copy an object
// from another store without the bytes passing through this process (s3://
// from an s3:// store on the same endpoint with the same credentials:
// CopyObject, ComposeObject above 5 GiB). Like Put, the copy is atomic.
type ServerCopier interface {
	// ServerCopy copies src's key (size bytes) to key here. ok is false, and
	// nothing is done, when the server cannot reach src (another kind of
	// store, another endpoint, other credentials).
	ServerCopy(ctx context.Context, src Store, key string, size int64) (ok bool, err error)
}

// Upload is an unfinished upload that a store keeps out of List: a
// temporary file of file:// and sftp:// (".<key>.tmp-<random>"), an
// incomplete multipart upload of s3://.
type Upload struct {
	Key string // the key it was to be stored under
	ID  string // the temporary's key, or the multipart upload id
}

// UploadLister is implemented by the stores whose interrupted uploads leave
// data behind that List never shows (file, sftp, s3). Azure needs nothing:
// uncommitted blocks are discarded by the service after 7 days; nor does
// GCS: a resumable upload session that is not finished expires after a week.
type UploadLister interface {
	// Uploads returns the unfinished uploads of keys starting with prefix.
	Uploads(ctx context.Context, prefix string) ([]Upload, error)
	// AbortUpload removes one of them (its data is gone).
	AbortUpload(ctx context.Context, u Upload) error
}

// streamBufferer is implemented by every backend: the most memory it
// buffers during a streaming upload (Put with unknown size).
type streamBufferer interface {
	streamBuffer() int64
}

// StreamBuffer is the most memory s buffers during a streaming upload (Put
// with unknown size): its parts or blocks in flight. Callers that bound the
// process's memory (snapshot.Stream sets a Go memory limit) add it.
func StreamBuffer(s Store) int64 {
	if b, ok := As[streamBufferer](s); ok {
		return b.streamBuffer()
	}
	return maxStreamBuffer() // not open yet: assume the largest
}

// Open opens the store for rawURL. The result is a bare backend: wrap it with
// WithRetry (and WithMetrics) for production use, or use OpenAll.
func Open(ctx context.Context, rawURL string, cfg Config, log *zap.Logger) (Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	u, err := parseRemote(rawURL)
	if err != nil {
		return nil, err
	}
	s, err := backends[u.Scheme].open(ctx, u, cfg, log) // parseRemote found it
	if err != nil {
		return nil, err
	}
	return s, nil
}

// parseRemote parses and checks a remote URL; errors are *config.Error for SNAPVISOR_REMOTES.
func parseRemote(rawURL string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil {
		return nil, invalidRemote(rawURL, errors.New("not a URL"))
	}
	if u.Opaque != "" {
		return nil, invalidRemote(rawURL, errors.New("expected scheme://host/path"))
	}
	if u.Scheme == "" {
		return nil, invalidRemote(rawURL, errors.New("missing scheme"))
	}
	b, ok := backends[u.Scheme]
	if !ok {
		return nil, invalidRemote(rawURL, fmt.Errorf("unknown scheme %q, or one not built into this binary", u.Scheme))
	}
	if err := b.check(u); err != nil {
		return nil, invalidRemote(rawURL, err)
	}
	// Secrets in the URL would reach the service's environment (SNAPVISOR_REMOTES
	// is not a secret variable): a secret-looking parameter, or a parameter
	// holding a URL with a query (an Azure SAS URL as endpoint), is refused,
	// and so is a query whose parameters cannot all be read (u.Query drops them).
	if _, err := url.ParseQuery(u.RawQuery); err != nil {
		return nil, invalidRemote(rawURL, fmt.Errorf("query: %v", err))
	}
	for k, vs := range u.Query() {
		if secretParam().MatchString(k) {
			return nil, invalidRemote(rawURL, fmt.Errorf("parameter %q looks like a credential; credentials do not belong in the URL: use the environment (%s)", k, credentialVars(u.Scheme)))
		}
		for _, v := range vs {
			if nu, err := url.Parse(v); strings.Contains(v, "://") && (err != nil || nu.RawQuery != "" || nu.User != nil) {
				return nil, invalidRemote(rawURL, fmt.Errorf("parameter %q holds a URL with a query or user info (a SAS token?), or one that does not parse; credentials do not belong in the URL: use the environment (%s)", k, credentialVars(u.Scheme)))
			}
		}
	}
	return u, nil
}

// checkBucket checks the URL of a bucket or container: bucket://name/prefix,
// without credentials.
func checkBucket(u *url.URL) error {
	if u.Host == "" {
		return errors.New("missing bucket or container name")
	}
	if u.User != nil {
		return errors.New("credentials do not belong in the URL; use the environment")
	}
	return nil
}

// checkEndpointParam checks the URL parameter endpoint, if any (CheckEndpoint).
func checkEndpointParam(u *url.URL) error {
	if ep := u.Query().Get("endpoint"); ep != "" {
		if err := CheckEndpoint(ep); err != nil {
			return fmt.Errorf("endpoint %q: %w", Redact(ep), err)
		}
	}
	return nil
}

// CheckEndpoint checks a server address given as host[:port] or as a URL
// (scheme://host[:port]/path): it needs a host, and a port, when one is
// given, from 1 to 65535.
func CheckEndpoint(ep string) error {
	hostport := ep
	if strings.Contains(ep, "://") {
		eu, err := url.Parse(ep)
		if err != nil {
			return errors.New("not a URL")
		}
		hostport = eu.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	switch {
	case err == nil:
		if err := checkPort(port); err != nil {
			return err
		}
	case strings.Contains(hostport, ":") && net.ParseIP(hostport) == nil:
		return errors.New("expected host or host:port")
	default:
		host = hostport
	}
	if host == "" {
		return errors.New("no host")
	}
	return nil
}

// checkPort checks a TCP port number: 1 to 65535.
func checkPort(port string) error {
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}

func invalidRemote(rawURL string, err error) error {
	e := config.Invalid("REMOTES", Redact(rawURL), acceptedURLs())
	e.Err = err
	return e
}

// The regular expressions of this package are compiled on first use, not
// at package init: every run of the entrypoint links them, few use them.

// secretParam matches query parameter names whose values are credentials.
var secretParam = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)(secret|password|passwd|token|key|sig|signature|credential|auth)`)
})

// userinfoRE and rawSecretRE find userinfo and secret parameters in strings
// that are not parseable URLs.
var (
	userinfoRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^/?#]*@`) })
	rawSecretRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?i)((?:secret|password|passwd|token|key|sig|signature|credential|auth)[^=&\s]*=)[^&;#]*`)
	})
	queryPairRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^&;]*=[^&;]*`) })
)

// Redact returns rawURL with its password and secret query parameters replaced
// by "***"; the user name stays (it identifies, it does not authenticate).
// Parameters whose value is itself a URL (endpoint=https://host/?sv=..&sig=..)
// are redacted the same way, recursively.
func Redact(rawURL string) string { return redact(rawURL, 0) }

func redact(rawURL string, depth int) string {
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil && depth > 0 {
		return "***" // a nested URL that does not parse: nothing of it is shown
	}
	if err != nil { // unparseable: redacted as text
		rawURL, _, frag := strings.Cut(rawURL, "#")
		head, query, hasQuery := strings.Cut(userinfoRE().ReplaceAllString(rawURL, "***@"), "?")
		head = rawSecretRE().ReplaceAllString(head, "${1}***")
		if hasQuery {
			head += "?" + redactQueryText(query)
		}
		if frag {
			head += "#***" // a fragment means nothing to a store: never shown
		}
		return head
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "***")
		}
	}
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = "***", "" // a fragment means nothing to a store: never shown
	}
	if u.Opaque != "" { // scheme:user:password@host/path
		u.Opaque = userinfoRE().ReplaceAllString(u.Opaque, "***@")
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		changed := false
		if err != nil { // unparseable: redacted as text
			u.RawQuery = redactQueryText(u.RawQuery)
		}
		for k, vs := range q {
			if secretParam().MatchString(k) {
				q[k] = []string{"***"}
				changed = true
				continue
			}
			for i, v := range vs {
				if !strings.Contains(v, "?") && !strings.Contains(v, "@") {
					continue
				}
				r := "***"
				if depth < 3 && strings.Contains(v, "://") {
					r = redact(v, depth+1)
				}
				if r != v {
					vs[i] = r
					changed = true
				}
			}
		}
		if err == nil && changed {
			// Escaped, but readable: "*", ":" and "/" are left as they are.
			u.RawQuery = strings.NewReplacer("%2A", "*", "%3A", ":", "%2F", "/").Replace(q.Encode())
		}
	}
	return strings.Replace(u.String(), ":%2A%2A%2A@", ":***@", 1)
}

// redactQueryText redacts a query that url.ParseQuery cannot read: the
// values of secret parameters (their names unescaped) and every value that
// may hold a URL with its own secrets ("?" or "@", escaped or not) become
// "***", and so does any userinfo.
func redactQueryText(query string) string {
	query = queryPairRE().ReplaceAllStringFunc(userinfoRE().ReplaceAllString(query, "***@"), func(kv string) string {
		k, v, _ := strings.Cut(kv, "=")
		if name, err := url.QueryUnescape(k); err == nil && secretParam().MatchString(name) {
			return k + "=***"
		}
		if dv, err := url.QueryUnescape(v); strings.ContainsAny(v, "?@") || (err == nil && strings.ContainsAny(dv, "?@")) {
			return k + "=***"
		}
		return kv
	})
	return rawSecretRE().ReplaceAllString(query, "${1}***")
}

// Error is an operation on a store that failed. Its text names the store
// (credentials redacted) and is scrubbed of the store's secrets.
type Error struct {
	Store     string // Name() of the store
	Op        string // put, get, list, delete, open, ...
	Key       string // the key, if any
	Err       error
	Permanent bool // retrying cannot help (IsPermanent)
	scrub     func(string) string
}

func (e *Error) Error() string {
	msg := e.Err.Error()
	if e.scrub != nil {
		msg = e.scrub(msg)
	}
	if e.Key != "" {
		return fmt.Sprintf("%s: %s %s: %s", e.Store, e.Op, e.Key, msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.Store, e.Op, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether retrying err cannot help: a missing object,
// refused credentials, a missing bucket, an unknown host key, a bad key, or
// an *Error marked Permanent by its maker (a checksum mismatch, say).
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, context.Canceled) {
		return true
	}
	var e *Error
	if errors.As(err, &e) && e.Permanent {
		return true
	}
	var ce *config.Error
	return errors.As(err, &ce)
}

// errBadKey is returned for keys that are empty, absolute or contain . or .. elements.
var errBadKey = errors.New("invalid key")

func checkKey(key string) error {
	if key == "" || !fs.ValidPath(key) || key == "." || strings.Contains(key, "\\") {
		return fmt.Errorf("%w %q", errBadKey, key)
	}
	return nil
}

// scrubber returns a function replacing every non-empty secret in a text.
func scrubber(secrets ...string) func(string) string {
	var pairs []string
	for _, s := range secrets {
		if len(s) >= 4 { // shorter strings would mangle ordinary text
			pairs = append(pairs, s, "[redacted]")
		}
	}
	r := strings.NewReplacer(pairs...)
	return func(msg string) string {
		msg = r.Replace(msg)
		return sigRE().ReplaceAllString(msg, "${1}***")
	}
}

// sigRE finds signature-like query parameters in error texts (SAS tokens, presigned URLs).
var sigRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)([?&](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|token)=)[^&\s"']+`)
})

// isTemp reports whether base names an upload temporary of the directory-like
// stores (file, sftp): ".<base>.tmp-<random>", the pattern the snapshot
// package also skips.
func isTemp(base string) bool {
	return strings.HasPrefix(base, ".") && strings.Contains(base, ".tmp-")
}

// tempTarget returns the key an upload temporary (key, "dir/.<base>.tmp-<random>")
// was written for ("dir/<base>"); ok is false when key is no temporary.
func tempTarget(key string) (target string, ok bool) {
	dir, base := path.Split(key)
	if !isTemp(base) {
		return "", false
	}
	i := max(strings.LastIndex(base, ".tmp-"), 1) // ".tmp-x" names nothing: dir
	return dir + base[1:i], true
}

func errShort(n, size int64) error {
	return fmt.Errorf("source gave %d bytes, expected %d", n, size)
}

// exactly returns r checked against size (unless size < 0): a short source
// fails with io.ErrUnexpectedEOF instead of ending, a longer one fails too, so
// that an upload is aborted rather than committed with the wrong length.
func exactly(r io.Reader, size int64) io.Reader {
	if size < 0 {
		return r
	}
	return &sizedReader{r: r, left: size, size: size}
}

type sizedReader struct {
	r          io.Reader
	left, size int64
}

func (s *sizedReader) Read(p []byte) (int, error) {
	if s.left == 0 {
		// Probe for extra bytes before reporting the end.
		var one [1]byte
		n, err := s.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("source is longer than %d bytes", s.size)
		}
		if err == nil || err == io.EOF {
			return 0, io.EOF
		}
		return 0, err
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.left -= int64(n)
	if err == io.EOF && s.left > 0 {
		return n, fmt.Errorf("%w: source gave %d bytes, expected %d", io.ErrUnexpectedEOF, s.size-s.left, s.size)
	}
	if err == io.EOF {
		err = nil // reported on the next call, after the probe
	}
	return n, err
}

// OpenAll opens every remote of cfg, each wrapped for production use:
// WithRetry(WithMetrics(backend)) (metrics only when set is not nil), in
// order, and returns an error joining the failures, so that one bad remote
// does not stop the rest. A remote that fails to open is still returned, as a
// store that tries to open it again at each operation and otherwise fails
// with the reason (Unopened): it is never silently left out of a push or an
// auto-restore. Only URLs that are not valid remotes (*config.Error, which
// Config.Validate reports first) are left out.
func OpenAll(ctx context.Context, cfg Config, set *metrics.Set, log *zap.Logger) ([]Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	var out []Store
	var errs []error
	for _, u := range cfg.URLs() {
		s, err := Open(ctx, u, cfg, log)
		if err != nil {
			errs = append(errs, err)
			var ce *config.Error
			if errors.As(err, &ce) {
				continue
			}
			s = &unopened{rawURL: u, name: Redact(u), cfg: cfg, log: log}
		}
		if set != nil {
			s = WithMetrics(s, set, log)
		}
		out = append(out, WithRetry(s, cfg.Policy(), log))
	}
	return out, errors.Join(errs...)
}

// CloseAll closes every store, returning the first error.
func CloseAll(stores []Store) error {
	var first error
	for _, s := range stores {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// randomHex returns n random bytes, hex-encoded: the names of upload
// temporaries (file, sftp) and upload ids (redis, postgres, sqlite).
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
