//go:build !snapvisor_no_redis

package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"
)

// Redis chunks. An object is stored in chunks of redisChunkSize: a Redis
// string holds at most 512 MB, and a value is copied whole into the client's
// memory and the server's reply buffers. 8 MiB keeps both small: a streaming
// upload holds two chunks (one read from the source while the other is on
// the wire), a download one (plus the one being collected), far below the
// 64 MiB bound, and the server is blocked only for the few milliseconds one
// value takes to copy; yet a chunk is large enough that the round trip per
// chunk costs little (~130 chunks per GiB). The read and write timeouts
// bound one chunk's transfer: 8 MiB in redisIOTimeout needs at least ~0.3
// MiB/s.
const (
	redisChunkSize    = 8 << 20
	redisStreamBuffer = 2 * redisChunkSize
	redisIOTimeout    = 30 * time.Second
	// redisMinUploadTTL is the least lifetime of an uploaded, uncommitted
	// chunk (redisStore.ttl).
	redisMinUploadTTL = time.Hour
	// redisDefaultPrefix is the key prefix when the URL has none.
	redisDefaultPrefix = "snapvisor"
)

func init() {
	// go-redis logs its own view of failures (dial errors, pool state) to
	// stderr, unstructured and unscrubbed, through a process-wide logger:
	// silenced, as every failure reaches the caller as an error (logged with
	// the store's name, scrubbed).
	redis.SetLogger(&logging.VoidLogger{})
	for _, scheme := range []string{"redis", "rediss"} {
		ex := "redis://[user@]host:port/DB?prefix=P"
		if scheme == "rediss" {
			ex = "rediss://[user@]host:port/DB?prefix=P (TLS)"
		}
		register(backend{
			scheme: scheme, order: 5, example: ex,
			credentials: "SNAPVISOR_REDIS_PASSWORD (with the URL's user for an ACL user)",
			check:       checkRedisURL, open: openRedis, streamBuffer: redisStreamBuffer,
		})
	}
}

// checkRedisURL checks a redis:// or rediss:// URL: a host, a valid port, a
// database number as the path, no password, the one parameter prefix.
func checkRedisURL(u *url.URL) error {
	if u.Hostname() == "" {
		return errors.New("missing host: " + u.Scheme + "://[user@]host:port/DB?prefix=P")
	}
	if _, ok := u.User.Password(); ok {
		// The URL is in SNAPVISOR_REMOTES, which the service inherits and logs may show.
		return errors.New("a password does not belong in the URL; use SNAPVISOR_REDIS_PASSWORD (or SNAPVISOR_REDIS_PASSWORD_FILE)")
	}
	if u.Port() != "" {
		if err := checkPort(u.Port()); err != nil {
			return err
		}
	}
	if _, err := redisDB(u.Path); err != nil {
		return err
	}
	for k, vs := range u.Query() {
		switch {
		case k == "prefix":
			if len(vs) != 1 || vs[0] == "" {
				return errors.New("prefix must be given once and not be empty")
			}
		case secretParam().MatchString(k):
			// parseRemote refuses it, naming the credential variables.
		default:
			return fmt.Errorf("unknown parameter %q (accepted: prefix)", k)
		}
	}
	return nil
}

// redisDB parses the database number of a URL path: "", "/" or "/N".
func redisDB(p string) (int, error) {
	s := strings.TrimPrefix(p, "/")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("path %q: expected a database number (/0, /1, ...)", p)
	}
	return n, nil
}

// redisNamespace is the prefix of every key of a store: the URL's prefix
// (default "snapvisor") with ":" added unless it ends in ":" or "/".
func redisNamespace(prefix string) string {
	if prefix == "" {
		prefix = redisDefaultPrefix
	}
	if !strings.HasSuffix(prefix, ":") && !strings.HasSuffix(prefix, "/") {
		prefix += ":"
	}
	return prefix
}

// redisStore is a key prefix in a Redis database:
// redis://[user@]host:port/DB?prefix=P, or rediss:// for TLS (extra CAs from
// SNAPVISOR_REDIS_CA_FILE). The password comes from SNAPVISOR_REDIS_PASSWORD
// (requirepass, or the ACL user's); the user from the URL.
//
// Keys, with <N> the namespace (redisNamespace: P plus ":"):
//
//	<N>meta:<KEY>     a hash: id (upload id), chunks, size, chunk (chunk size), modified (µs since the epoch, server time)
//	<N>chunk:<ID>:<I> chunk I (from 0) of upload ID, a string of chunk bytes (the last one shorter)
//
// Put writes the chunks under a new random upload id, each with an expiry
// (SET ... EX, redisStore.ttl), so that an upload killed midway is removed by
// the server itself; then one Lua script (commitScript) checks that every
// chunk is still there with the expected total length, removes their expiry,
// switches the metadata to the new upload and unlinks the previous upload's
// chunks, atomically: a reader sees the old object or the new one, never
// half of one. An empty object has no chunk. List scans (SCAN MATCH, never
// KEYS) for metadata keys, so only committed objects are listed; Delete
// removes the metadata and then the chunks in one script. Get reads the
// metadata and then the chunks one by one, checking each chunk's presence
// and length: a chunk that vanished (the object replaced or deleted during
// the read, or damaged) fails the read, never ends it early.
//
// Redis keeps everything in memory: a server that persists nothing (no RDB
// save points, no AOF) loses every snapshot when it restarts, and one that
// evicts any key under memory pressure (maxmemory-policy allkeys-*) can
// delete chunks; both are warned about once, on the first connection (when
// the user may run CONFIG GET). Redis Cluster is not supported (the scripts
// touch keys of several hash slots).
type redisStore struct {
	client *redis.Client
	ns     string // key prefix, ending in ":" or "/"
	name   string
	ttl    time.Duration // expiry of uncommitted chunks
	log    *zap.Logger
	scrub  func(string) string

	checkMu sync.Mutex
	checked bool // the server's configuration was looked at (checkServer)
}

var _ Store = (*redisStore)(nil)

func openRedis(_ context.Context, u *url.URL, cfg Config, log *zap.Logger) (Store, error) {
	name := Redact(u.String())
	password := cfg.RedisPassword.Reveal()
	s := &redisStore{
		ns:   redisNamespace(u.Query().Get("prefix")),
		name: name,
		// SNAPVISOR_REMOTE_TIMEOUT bounds an upload: twice it, a live upload's
		// chunks never expire before its commit (if they did, the commit would
		// fail, not commit less), and a killed one's leave the server's memory
		// within hours rather than a day.
		ttl:   max(redisMinUploadTTL, 2*cfg.Timeout),
		log:   log.With(zap.String("remote", name)),
		scrub: scrubber(password),
	}
	if _, ok := u.User.Password(); ok { // parseRemote refuses it; never use one
		return nil, s.permanent("open", errors.New("a password does not belong in the URL; use SNAPVISOR_REDIS_PASSWORD"))
	}
	db, err := redisDB(u.Path)
	if err != nil {
		return nil, s.permanent("open", err)
	}
	port := u.Port()
	if port == "" {
		port = "6379"
	}
	opts := &redis.Options{
		Addr:     net.JoinHostPort(u.Hostname(), port),
		Username: u.User.Username(),
		Password: password,
		DB:       db,
		Protocol: 2, // plain replies; nothing here needs RESP3's push messages
		// Every command a store sends is one an ACL user needs (README): no
		// CLIENT SETINFO, no maintenance-notification handshake.
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		// A few quick request-level retries; WithRetry does the patient ones.
		MaxRetries:            2,
		DialerRetries:         2,
		DialTimeout:           10 * time.Second,
		ReadTimeout:           redisIOTimeout,
		WriteTimeout:          redisIOTimeout,
		ContextTimeoutEnabled: true, // the caller's deadline (SNAPVISOR_REMOTE_TIMEOUT) bounds commands too
		PoolSize:              4,
		PipelinePoolSize:      -1, // List's pipelines share the pool
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			s.checkServer(ctx, cn)
			return nil
		},
	}
	if u.Scheme == "rediss" {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()}
		if cfg.RedisCAFile != "" {
			pool, err := extraRoots(cfg.RedisCAFile, "SNAPVISOR_REDIS_CA_FILE")
			if err != nil {
				return nil, s.permanent("open", err)
			}
			opts.TLSConfig.RootCAs = pool
		}
	}
	s.client = redis.NewClient(opts)
	s.log.Debug("redis store opened", zap.String("addr", opts.Addr), zap.Int("db", db), zap.String("prefix", s.ns),
		zap.Bool("tls", opts.TLSConfig != nil))
	return s, nil
}

func (s *redisStore) Name() string { return s.name }

func (s *redisStore) Close() error { return s.client.Close() }

func (s *redisStore) streamBuffer() int64 { return redisStreamBuffer }

func (s *redisStore) metaKey(key string) string { return s.ns + "meta:" + key }

func (s *redisStore) chunkPrefix() string { return s.ns + "chunk:" }

func (s *redisStore) chunkKey(id string, i int) string {
	return s.chunkPrefix() + id + ":" + strconv.Itoa(i)
}

// checkServer looks at the server's configuration once per store, on the
// first connection that can: it warns when the server persists nothing or
// may evict any key. A user that may not run CONFIG GET (an ACL user, a
// managed Redis) is not an error: the check is skipped with a debug line.
func (s *redisStore) checkServer(ctx context.Context, cn *redis.Conn) {
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	if s.checked {
		return
	}
	conf := map[string]string{}
	for _, p := range []string{"save", "appendonly", "maxmemory-policy"} {
		m, err := cn.ConfigGet(ctx, p).Result()
		if err != nil {
			var re redis.Error
			if errors.As(err, &re) { // an answer: CONFIG is refused or renamed here
				s.checked = true
				s.log.Debug("redis: cannot read the server's configuration; persistence not checked", zap.String("error", s.scrub(err.Error())))
			}
			return // otherwise the next connection tries again
		}
		conf[p] = m[p]
	}
	s.checked = true
	if strings.TrimSpace(conf["save"]) == "" && conf["appendonly"] == "no" {
		s.log.Warn("the Redis server persists nothing (CONFIG GET save is empty and appendonly is no): " +
			"a restart of Redis loses every snapshot stored there; turn on AOF (appendonly yes) or RDB save points")
	}
	if strings.HasPrefix(conf["maxmemory-policy"], "allkeys-") {
		s.log.Warn("the Redis server may evict any key when it reaches maxmemory (maxmemory-policy "+conf["maxmemory-policy"]+"): "+
			"evicted chunks damage snapshots; use noeviction (or a volatile-* policy)", zap.String("policy", conf["maxmemory-policy"]))
	}
}

func (s *redisStore) permanent(op string, err error) error {
	return &Error{Store: s.name, Op: op, Err: err, Permanent: true, scrub: s.scrub}
}

func (s *redisStore) fail(op, key string, err error) error {
	var se *Error
	if errors.As(err, &se) {
		return err // made by this store already
	}
	e := &Error{Store: s.name, Op: op, Key: key, Err: err, scrub: s.scrub}
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var cv *tls.CertificateVerificationError
	switch {
	case errors.Is(err, errBadKey), errors.Is(err, errRedisDamaged), redis.HasErrorPrefix(err, "WRONGTYPE"),
		redis.HasErrorPrefix(err, "DB index is out of range"):
		e.Permanent = true
	case redis.IsAuthError(err), strings.Contains(err.Error(), "without any password configured"):
		e.Permanent = true
		e.Err = fmt.Errorf("%w (check the URL's user and SNAPVISOR_REDIS_PASSWORD)", err)
	case redis.IsPermissionError(err), strings.Contains(err.Error(), "user executing the script can't run"):
		e.Permanent = true
		e.Err = fmt.Errorf("%w (the ACL user needs the store's commands on the keys of its prefix: see README, Remote stores)", err)
	case redis.IsOOMError(err):
		e.Permanent = true // until snapshots are deleted or maxmemory raised: not within a retry's backoff
		e.Err = fmt.Errorf("%w (Redis is full: give it room for the snapshots kept plus one being uploaded)", err)
	case errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci), errors.As(err, &cv):
		e.Permanent = true
		e.Err = fmt.Errorf("%w (a server certificate from a private CA is trusted with SNAPVISOR_REDIS_CA_FILE)", err)
	}
	return e
}

// errRedisDamaged marks an object whose chunks do not match its metadata.
var errRedisDamaged = errors.New("object damaged")

// commitScript makes an upload the object: KEYS[1] is the object's metadata
// key; ARGV: chunk key prefix, upload id, chunk count, size, chunk size. It
// fails, changing nothing, when a chunk is gone (expired, evicted, lost in a
// server restart) or the chunks do not add up to the size. It is idempotent:
// run again for an upload already committed (a retry after a lost reply), it
// does nothing.
var commitScript = redis.NewScript(`
local pre, id, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local cur = redis.call('HMGET', KEYS[1], 'id', 'chunks')
if cur[1] == id then return 0 end
local total = 0
for i = 0, n - 1 do
  local len = redis.call('STRLEN', pre .. id .. ':' .. i)
  if len == 0 then
    return redis.error_reply('chunk ' .. i .. ' of ' .. n .. ' of the upload is gone (expired, evicted, or lost when the server restarted)')
  end
  total = total + len
end
if total ~= tonumber(ARGV[4]) then
  return redis.error_reply('the chunks of the upload hold ' .. total .. ' bytes, expected ' .. ARGV[4])
end
for i = 0, n - 1 do redis.call('PERSIST', pre .. id .. ':' .. i) end
local t = redis.call('TIME')
redis.call('UNLINK', KEYS[1])
redis.call('HSET', KEYS[1], 'id', id, 'chunks', ARGV[3], 'size', ARGV[4], 'chunk', ARGV[5],
  'modified', t[1] .. string.sub('00000' .. t[2], -6))
if cur[1] then
  for i = 0, (tonumber(cur[2]) or 0) - 1 do redis.call('UNLINK', pre .. cur[1] .. ':' .. i) end
end
return 1
`)

// deleteScript removes an object: KEYS[1] its metadata key, ARGV[1] the
// chunk key prefix. The metadata goes first (in the same atomic script), so
// a reader fails cleanly.
var deleteScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'id', 'chunks')
if not cur[1] then return 0 end
redis.call('UNLINK', KEYS[1])
for i = 0, (tonumber(cur[2]) or 0) - 1 do redis.call('UNLINK', ARGV[1] .. cur[1] .. ':' .. i) end
return 1
`)

func (s *redisStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkKey(key); err != nil {
		return s.fail("put", key, err)
	}
	id := randomHex(12)
	n, total, err := s.upload(ctx, id, exactly(r, size), size)
	if err == nil {
		err = commitScript.Eval(ctx, s.client, []string{s.metaKey(key)},
			s.chunkPrefix(), id, n, total, redisChunkSize).Err()
	}
	if err != nil {
		s.discard(ctx, id, n)
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return s.fail("put", key, err)
	}
	return nil
}

// upload writes r as the chunks of upload id, each with the upload expiry,
// and returns how many chunks it started and the bytes in them. One chunk
// is sent while the next is read: two buffers at most (redisStreamBuffer).
func (s *redisStore) upload(ctx context.Context, id string, r io.Reader, size int64) (n int, total int64, err error) {
	bufLen := int64(redisChunkSize)
	if size >= 0 {
		bufLen = min(max(size, 1), redisChunkSize) // 1: reading 0 bytes would not probe for the end
	}
	var bufs [2][]byte
	sent := make(chan error, 1)
	inFlight := false
	defer func() {
		if inFlight {
			if e := <-sent; err == nil {
				err = e
			}
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return n, total, err
		}
		b := &bufs[n%2]
		if *b == nil {
			*b = make([]byte, bufLen)
		}
		got, rerr := io.ReadFull(r, *b)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			return n, total, fmt.Errorf("source: %w", rerr)
		}
		if inFlight {
			inFlight = false
			if err := <-sent; err != nil {
				return n, total, err
			}
		}
		if got > 0 {
			k, data := s.chunkKey(id, n), (*b)[:got]
			inFlight = true
			go func() { sent <- s.client.Set(ctx, k, data, s.ttl).Err() }()
			n++
			total += int64(got)
		}
		if rerr != nil {
			return n, total, nil // the deferred wait collects the last send
		}
	}
}

// discard removes the chunks of a failed upload, as far as it can: what it
// cannot (the context ended, the server went away) expires by itself.
func (s *redisStore) discard(ctx context.Context, id string, n int) {
	for i := 0; i < n; i += 1000 {
		keys := make([]string, 0, 1000)
		for j := i; j < min(n, i+1000); j++ {
			keys = append(keys, s.chunkKey(id, j))
		}
		if err := s.client.Unlink(ctx, keys...).Err(); err != nil {
			s.log.Debug("redis: chunks of a failed upload left to expire", zap.String("upload", id),
				zap.Duration("expiry", s.ttl), zap.String("error", s.scrub(err.Error())))
			return
		}
	}
}

// redisMeta is an object's metadata.
type redisMeta struct {
	id       string
	chunks   int
	size     int64
	chunk    int64
	modified time.Time
}

// meta reads the metadata of key: fs.ErrNotExist when there is no object.
func (s *redisStore) meta(ctx context.Context, op, key string) (redisMeta, error) {
	v, err := s.client.HMGet(ctx, s.metaKey(key), "id", "chunks", "size", "chunk", "modified").Result()
	if err != nil {
		return redisMeta{}, s.fail(op, key, err)
	}
	if v[0] == nil {
		return redisMeta{}, s.fail(op, key, fs.ErrNotExist)
	}
	m, err := parseRedisMeta(v)
	if err != nil {
		return redisMeta{}, s.fail(op, key, err)
	}
	return m, nil
}

// parseRedisMeta reads the values of HMGET id chunks size chunk modified and
// checks that they agree: as many chunks as the size needs.
func parseRedisMeta(v []any) (redisMeta, error) {
	str := func(i int) string { s, _ := v[i].(string); return s }
	var m redisMeta
	m.id = str(0)
	chunks, err1 := strconv.Atoi(str(1))
	size, err2 := strconv.ParseInt(str(2), 10, 64)
	chunk, err3 := strconv.ParseInt(str(3), 10, 64)
	us, err4 := strconv.ParseInt(str(4), 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil || m.id == "" || size < 0 || chunk <= 0 ||
		int64(chunks) != (size+chunk-1)/chunk {
		return m, fmt.Errorf("%w: metadata %q does not describe an object", errRedisDamaged, v)
	}
	m.chunks, m.size, m.chunk, m.modified = chunks, size, chunk, time.UnixMicro(us)
	return m, nil
}

func (s *redisStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, s.fail("get", key, err)
	}
	m, err := s.meta(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	return &redisReader{ctx: ctx, s: s, key: key, m: m}, nil
}

// redisReader reads an object chunk by chunk, checking each one.
type redisReader struct {
	ctx  context.Context
	s    *redisStore
	key  string
	m    redisMeta
	next int    // the next chunk to fetch
	read int64  // bytes fetched
	cur  string // the rest of the current chunk
	err  error
}

func (r *redisReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for r.cur == "" {
		if r.next == r.m.chunks {
			return 0, io.EOF
		}
		if err := r.fetch(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.cur)
	if r.cur = r.cur[n:]; r.cur == "" {
		r.cur = "" // an empty tail may still point into the chunk: let it go before the next one comes
	}
	return n, nil
}

// fetch reads the next chunk into cur, checking its presence and length.
func (r *redisReader) fetch() error {
	i := r.next
	v, err := r.s.client.Get(r.ctx, r.s.chunkKey(r.m.id, i)).Result()
	if errors.Is(err, redis.Nil) {
		return r.gone(i)
	}
	if err != nil {
		if r.ctx.Err() != nil && !errors.Is(err, r.ctx.Err()) {
			err = fmt.Errorf("%w (%v)", r.ctx.Err(), err)
		}
		return r.s.fail("get", r.key, err)
	}
	if want := min(r.m.chunk, r.m.size-r.read); int64(len(v)) != want {
		return r.s.fail("get", r.key, fmt.Errorf("%w: chunk %d of %d holds %d bytes, expected %d",
			errRedisDamaged, i, r.m.chunks, len(v), want))
	}
	r.cur, r.next, r.read = v, i+1, r.read+int64(len(v))
	return nil
}

// gone explains a chunk that is missing: the object was deleted
// (fs.ErrNotExist) or replaced during the read (a new read gets the new
// one), or, when its metadata still names the chunk, it is damaged.
func (r *redisReader) gone(i int) error {
	m, err := r.s.meta(r.ctx, "get", r.key)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return r.s.fail("get", r.key, fmt.Errorf("deleted during the read (chunk %d of %d gone): %w", i, r.m.chunks, fs.ErrNotExist))
	case err != nil:
		return err
	case m.id != r.m.id:
		return r.s.fail("get", r.key, fmt.Errorf("replaced during the read (chunk %d of %d of the old object gone); read it again", i, r.m.chunks))
	}
	return r.s.fail("get", r.key, fmt.Errorf("%w: chunk %d of %d (%s) is missing: deleted by hand, or evicted (maxmemory-policy must be noeviction or volatile-*)",
		errRedisDamaged, i, r.m.chunks, r.s.chunkKey(r.m.id, i)))
}

func (r *redisReader) Close() error {
	r.cur, r.err = "", errors.New("read after close")
	return nil
}

func (s *redisStore) List(ctx context.Context, prefix string) ([]Object, error) {
	metaPrefix := s.metaKey("")
	var keys []string
	seen := map[string]bool{}
	it := s.client.Scan(ctx, 0, globEscape(metaPrefix+prefix)+"*", 1000).Iterator()
	for it.Next(ctx) {
		if k := it.Val(); !seen[k] { // SCAN may return a key twice
			seen[k] = true
			keys = append(keys, k)
		}
	}
	if err := it.Err(); err != nil {
		return nil, s.fail("list", prefix, err)
	}
	sort.Strings(keys)
	out := make([]Object, 0, len(keys))
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 1000)]
		keys = keys[len(batch):]
		cmds := make([]*redis.SliceCmd, len(batch))
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range batch {
				cmds[i] = p.HMGet(ctx, k, "id", "chunks", "size", "chunk", "modified")
			}
			return nil
		})
		if err != nil && !redis.HasErrorPrefix(err, "WRONGTYPE") {
			return nil, s.fail("list", prefix, err)
		}
		for i, c := range cmds {
			v, err := c.Result()
			if err != nil || v[0] == nil {
				continue // deleted since the scan, or not one of ours
			}
			m, err := parseRedisMeta(v)
			if err != nil {
				s.log.Warn("redis: listing skips a damaged object", zap.String("key", batch[i]), zap.Error(err))
				continue
			}
			out = append(out, Object{Key: strings.TrimPrefix(batch[i], metaPrefix), Size: m.size, Modified: m.modified})
		}
	}
	return out, nil
}

// globEscape escapes the glob characters of SCAN MATCH patterns in s.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (s *redisStore) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return s.fail("delete", key, err)
	}
	if err := deleteScript.Eval(ctx, s.client, []string{s.metaKey(key)}, s.chunkPrefix()).Err(); err != nil {
		return s.fail("delete", key, err)
	}
	return nil
}
