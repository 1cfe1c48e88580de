//go:build !snapvisor_no_redis

package store_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"snapvisor/config"
	"snapvisor/internal/testutil"
	"snapvisor/store"
	"snapvisor/store/storetest"
)

// The Redis store's key layout, as its doc comment and the README give it:
// <prefix>:meta:<key> (a hash naming the upload id) and <prefix>:chunk:<id>:<i>.
const chunk = 8 << 20 // the chunk size of the Redis store

// chunkKeys lists the chunk keys under the namespace ns ("t1:").
func chunkKeys(t *testing.T, c *redis.Client, ns string) []string {
	t.Helper()
	keys, err := c.Keys(storetest.Ctx(t, time.Minute), ns+"chunk:*").Result() // a test: KEYS is fine here
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// objectChunk is the key of chunk i of the object key under ns.
func objectChunk(t *testing.T, c *redis.Client, ns, key string, i int) string {
	t.Helper()
	id, err := c.HGet(storetest.Ctx(t, time.Minute), ns+"meta:"+key, "id").Result()
	if err != nil {
		t.Fatalf("metadata of %s: %v", key, err)
	}
	return ns + "chunk:" + id + ":" + strconv.Itoa(i)
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

func gen(seed byte, n int64) []byte {
	b, _ := io.ReadAll(storetest.Gen(seed, n))
	return b
}

// TestRedis_ACLUser: an ACL user allowed only storetest.RedisACLCommands on
// its prefix's keys (the least privilege the README documents) can do
// everything (the basic suite, a multi-chunk object replaced and deleted); a
// prefix outside its keys fails with a clear permanent error; and not being
// allowed CONFIG GET neither warns nor fails (a debug line).
func TestRedis_ACLUser(t *testing.T) {
	r := storetest.StartRedisACL(t)
	cfg := store.Config{RedisPassword: storetest.RedisACLPassword}
	t.Run("basic", func(t *testing.T) { // in database 1: SELECT is needed too
		url := strings.Replace(r.URL(storetest.RedisACLUser, storetest.RedisACLPrefix+":basic"), "/0?", "/1?", 1)
		testBasic(t, storetest.Open(t, url, cfg))
	})
	t.Run("chunks", func(t *testing.T) {
		ctx := storetest.Ctx(t, time.Minute)
		core, logs := observer.New(zapcore.DebugLevel)
		s, err := store.Open(ctx, r.URL(storetest.RedisACLUser, storetest.RedisACLPrefix+":chunks"), cfg, zap.New(core))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for i, n := range []int64{2*chunk + 5, chunk, 3} { // replaced twice: more chunks, then fewer
			data := gen(byte(i), n)
			if err := s.Put(ctx, "big", bytes.NewReader(data), -1); err != nil {
				t.Fatalf("put %d bytes: %v", n, err)
			}
			got, err := readAll(ctx, s, "big")
			if err != nil || sum(got) != sum(data) {
				t.Fatalf("get after put of %d bytes: %d bytes, %v", n, len(got), err)
			}
		}
		if keys := chunkKeys(t, r.Client(t), storetest.RedisACLPrefix+":chunks:"); len(keys) != 1 {
			t.Errorf("chunk keys after two replacements: %v, want the one of the last object", keys)
		}
		if err := s.Delete(ctx, "big"); err != nil {
			t.Fatal(err)
		}
		if keys := chunkKeys(t, r.Client(t), storetest.RedisACLPrefix+":chunks:"); len(keys) != 0 {
			t.Errorf("chunk keys after delete: %v", keys)
		}
		if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 0 {
			t.Errorf("%d warnings logged, want none: %v", n, logs.All())
		}
		if logs.FilterMessageSnippet("cannot read the server's configuration").Len() != 1 {
			t.Errorf("no debug line on CONFIG GET refused: %v", logs.All())
		}
	})
	t.Run("otherPrefix", func(t *testing.T) {
		s := storetest.Open(t, r.URL(storetest.RedisACLUser, "other"), cfg)
		err := s.Put(storetest.Ctx(t, time.Minute), "a", strings.NewReader("a"), 1)
		t.Logf("put outside the user's keys: %v", err)
		if err == nil || !store.IsPermanent(err) || !strings.Contains(err.Error(), "NOPERM") || !strings.Contains(err.Error(), s.Name()) {
			t.Errorf("put outside the ACL user's keys: %v (permanent %v)", err, store.IsPermanent(err))
		}
	})
}

// TestRedis_PasswordInURL: a password in the URL is a configuration error
// (exit 78) naming SNAPVISOR_REMOTES and the variable to use, which never
// shows the password; so are the other malformed URLs.
func TestRedis_PasswordInURL(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"redis://snap:Xy7Qz-secret@127.0.0.1:6379/0?prefix=p", "SNAPVISOR_REDIS_PASSWORD"},
		{"rediss://:Xy7Qz-secret@127.0.0.1:6379/0", "SNAPVISOR_REDIS_PASSWORD"},
		{"redis://127.0.0.1:6379/0?password=Xy7Qz-secret", "SNAPVISOR_REDIS_PASSWORD"},
		{"redis://127.0.0.1:6379/zero", "database number"},
		{"redis://127.0.0.1:6379/-1", "database number"},
		{"redis://127.0.0.1:6379/0/x", "database number"},
		{"redis://127.0.0.1:99999/0", "port"},
		{"redis:///0", "missing host"},
		{"redis://127.0.0.1/0?prefix=", "prefix"},
		{"redis://127.0.0.1/0?db=1", "unknown parameter"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := store.Open(context.Background(), tc.url, store.Config{}, nil)
			var ce *config.Error
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), "SNAPVISOR_REMOTES") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("open %s: %v; want a configuration error naming SNAPVISOR_REMOTES and %q", tc.url, err, tc.want)
			}
			if strings.Contains(err.Error(), "Xy7Qz") {
				t.Errorf("error shows the password: %v", err)
			}
			if err := (store.Config{Remotes: []string{tc.url}, Retries: 1, Backoff: time.Second, Timeout: time.Hour, LeaseTTL: time.Minute}).Validate(); !errors.As(err, &ce) {
				t.Errorf("Validate: %v, want a configuration error", err)
			}
		})
	}
	for _, ok := range []string{"redis://127.0.0.1", "redis://snap@127.0.0.1:6380/3?prefix=a:b", "rediss://[::1]:6379/?prefix=x*y"} {
		if _, err := store.Open(context.Background(), ok, store.Config{}, nil); err != nil {
			t.Errorf("open %s: %v", ok, err)
		}
	}
}

// TestRedis_TLS: rediss:// to a redis-server with a certificate of a private
// CA works when SNAPVISOR_REDIS_CA_FILE holds the CA, and fails with a clear,
// permanent error naming the variable without it.
func TestRedis_TLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeCerts(t, dir)
	r := storetest.StartRedis(t, storetest.RedisConfig{TLS: true, Args: []string{
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no"}})
	ctx := storetest.Ctx(t, time.Minute)
	url := r.URL("", "tls")
	if !strings.HasPrefix(url, "rediss://") {
		t.Fatal(url)
	}

	s := storetest.Open(t, url, store.Config{RedisCAFile: ca})
	if err := s.Put(ctx, "a", strings.NewReader("over TLS"), -1); err != nil {
		t.Fatalf("put with the CA trusted: %v", err)
	}
	if got, err := readAll(ctx, s, "a"); err != nil || string(got) != "over TLS" {
		t.Fatalf("get with the CA trusted: %q, %v", got, err)
	}

	s = storetest.Open(t, url, store.Config{})
	_, err := s.List(ctx, "")
	t.Logf("without the CA: %v", err)
	if err == nil || !store.IsPermanent(err) || !strings.Contains(err.Error(), "certificate") ||
		!strings.Contains(err.Error(), "SNAPVISOR_REDIS_CA_FILE") || !strings.Contains(err.Error(), s.Name()) {
		t.Errorf("list without the CA: %v (permanent %v)", err, store.IsPermanent(err))
	}

	// Plain text to the TLS port fails too (and does not hang).
	s = storetest.Open(t, strings.Replace(url, "rediss://", "redis://", 1), store.Config{})
	if _, err := s.List(storetest.Ctx(t, 20*time.Second), ""); err == nil {
		t.Error("plain redis:// to a TLS port succeeded")
	}

	_, err = store.Open(ctx, url, store.Config{RedisCAFile: filepath.Join(dir, "missing.pem")}, nil)
	if err == nil || !strings.Contains(err.Error(), "SNAPVISOR_REDIS_CA_FILE") {
		t.Errorf("open with a missing CA file: %v", err)
	}
}

// writeCerts writes a new CA and a server certificate for 127.0.0.1 signed
// by it (PEM) into dir, and returns the CA, certificate and key files.
func writeCerts(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "snapvisor test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, cert, key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	storetest.MustWrite(t, ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	storetest.MustWrite(t, cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}))
	storetest.MustWrite(t, key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	return ca, cert, key
}

// TestRedis_PersistenceWarning: a server that persists nothing (save "" and
// appendonly no) is warned about once per store, however many connections
// and operations; one with RDB save points or AOF is not; an evicting
// maxmemory-policy (allkeys-*) is warned about too.
func TestRedis_PersistenceWarning(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // snippet of the one warning, "" for none
	}{
		{"nothing", nil, "persists nothing"},
		{"rdb", []string{"--save", "3600 1"}, ""},
		{"aof", []string{"--appendonly", "yes"}, ""},
		{"allkeysLRU", []string{"--appendonly", "yes", "--maxmemory-policy", "allkeys-lru"}, "may evict any key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := storetest.StartRedis(t, storetest.RedisConfig{Args: tc.args})
			ctx := storetest.Ctx(t, time.Minute)
			core, logs := observer.New(zapcore.WarnLevel)
			s, err := store.Open(ctx, r.URL("", "w"), store.Config{}, zap.New(core))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if logs.Len() != 0 {
				t.Errorf("warned before connecting: %v", logs.All())
			}
			// Several connections at once (the pool opens one per concurrent call).
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := "k" + strconv.Itoa(i)
					if err := s.Put(ctx, key, strings.NewReader("x"), 1); err != nil {
						t.Error(err)
					}
					if _, err := s.List(ctx, ""); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			var msgs []string
			for _, e := range logs.All() {
				msgs = append(msgs, e.Message)
			}
			switch {
			case tc.want == "" && len(msgs) != 0:
				t.Errorf("warnings %q, want none", msgs)
			case tc.want != "" && (len(msgs) != 1 || !strings.Contains(msgs[0], tc.want)):
				t.Errorf("warnings %q, want one saying %q", msgs, tc.want)
			}
		})
	}
}

// gateReader yields the bytes of r and stops before each offset of at:
// it sends the offset on reached and waits on release.
type gateReader struct {
	r       io.Reader
	off     int64
	at      []int64
	reached chan int64
	release chan struct{}
}

func newGate(r io.Reader, at ...int64) *gateReader {
	return &gateReader{r: r, at: at, reached: make(chan int64), release: make(chan struct{})}
}

func (g *gateReader) Read(p []byte) (int, error) {
	if len(g.at) > 0 && g.off == g.at[0] {
		g.reached <- g.off
		<-g.release
		g.at = g.at[1:]
	}
	if len(g.at) > 0 && g.off+int64(len(p)) > g.at[0] {
		p = p[:g.at[0]-g.off]
	}
	n, err := g.r.Read(p)
	g.off += int64(n)
	return n, err
}

// await waits for the gate to be reached.
func (g *gateReader) await(t *testing.T) {
	t.Helper()
	select {
	case <-g.reached:
	case <-time.After(time.Minute):
		t.Fatal("the upload did not reach the gate")
	}
}

// TestRedis_RestartDuringPut: the server restarted in the middle of a Put.
// Down until the Put gave up: it fails, nothing is visible after the
// restart (the chunks it left expire), and a retry succeeds. Back at once
// but with chunks the Put wrote lost (a crash after the last RDB save): the
// commit finds them gone and fails, nothing visible. Shut down cleanly with
// AOF and back at once: the Put goes on and the object is whole.
func TestRedis_RestartDuringPut(t *testing.T) {
	const size = 6 * chunk
	data := gen(7, size)
	check := func(t *testing.T, s store.Store, c *redis.Client, want []byte) {
		t.Helper()
		ctx := storetest.Ctx(t, time.Minute)
		objs, err := s.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		got, gerr := readAll(ctx, s, "obj")
		if want == nil {
			if len(objs) != 0 || !errors.Is(gerr, fs.ErrNotExist) {
				t.Errorf("after the failed put: list %+v, get %d bytes, %v; want nothing", objs, len(got), gerr)
			}
			for _, k := range chunkKeys(t, c, "r:") {
				if ttl := c.PTTL(ctx, k).Val(); ttl <= 0 {
					t.Errorf("chunk %s left without expiry (%v)", k, ttl)
				}
			}
			return
		}
		if len(objs) != 1 || objs[0].Size != int64(len(want)) || gerr != nil || sum(got) != sum(want) {
			t.Errorf("list %+v, get %d bytes, %v; want the whole object", objs, len(got), gerr)
		}
	}

	t.Run("downUntilPutFails", func(t *testing.T) {
		// appendfsync always: with everysec (the default), a write to the
		// AOF is postponed while a background fsync is still running and
		// the replies go out anyway, so a kill -9 loses acknowledged SETs
		// (2 runs in 40 under disk load lost chunk 2).
		r := storetest.StartRedis(t, storetest.RedisConfig{Args: []string{"--appendonly", "yes", "--appendfsync", "always"}})
		c := r.Client(t)
		s := storetest.Open(t, r.URL("", "r"), store.Config{})
		ctx := storetest.Ctx(t, 2*time.Minute)
		g := newGate(bytes.NewReader(data), 2*chunk)
		done := make(chan error, 1)
		go func() { done <- s.Put(ctx, "obj", g, -1) }()
		g.await(t)
		testutil.Eventually(t, 30*time.Second, "two chunks stored", func() bool { return len(chunkKeys(t, c, "r:")) == 2 })
		r.Kill()
		close(g.release)
		err := <-done
		t.Logf("put across the crash: %v", err)
		if err == nil {
			t.Fatal("put succeeded with the server down")
		}
		r.Start()
		// The client's pool, after failed dials, dials again once a second.
		testutil.Eventually(t, 10*time.Second, "the store reconnected", func() bool {
			_, err := s.List(ctx, "")
			return err == nil
		})
		check(t, s, c, nil)
		if n := len(chunkKeys(t, c, "r:")); n != 2 {
			t.Errorf("%d chunks left after the crash, want the 2 written before (in the AOF, expiring)", n)
		}
		if err := s.Put(ctx, "obj", bytes.NewReader(data), size); err != nil {
			t.Fatalf("retry: %v", err)
		}
		check(t, s, c, data)
	})

	t.Run("chunksLost", func(t *testing.T) {
		r := storetest.StartRedis(t, storetest.RedisConfig{}) // RDB by SAVE below only
		c := r.Client(t)
		s := storetest.Open(t, r.URL("", "r"), store.Config{})
		ctx := storetest.Ctx(t, 2*time.Minute)
		g := newGate(bytes.NewReader(data), 2*chunk, 4*chunk)
		done := make(chan error, 1)
		go func() { done <- s.Put(ctx, "obj", g, -1) }()
		g.await(t)
		testutil.Eventually(t, 30*time.Second, "two chunks stored", func() bool { return len(chunkKeys(t, c, "r:")) == 2 })
		if err := c.Save(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		g.release <- struct{}{}
		g.await(t)
		testutil.Eventually(t, 30*time.Second, "four chunks stored", func() bool { return len(chunkKeys(t, c, "r:")) == 4 })
		// A key is visible as soon as its SET ran; the reply is written at
		// the end of that event-loop pass. One more round trip makes sure
		// chunk 3's reply reached the client: killed before that, the
		// client retries the SET against the restarting server and gets
		// LOADING (seen in CI) instead of reaching the commit.
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		r.Kill() // chunks 2 and 3 were acknowledged, but are not in the dump
		r.Start()
		close(g.release)
		err := <-done
		t.Logf("put across the restart: %v", err)
		if err == nil || !strings.Contains(err.Error(), "gone") {
			t.Fatalf("put whose chunks 2 and 3 were lost: %v; want the commit to find them gone", err)
		}
		check(t, s, c, nil)
		if err := s.Put(ctx, "obj", bytes.NewReader(data), size); err != nil {
			t.Fatalf("retry: %v", err)
		}
		check(t, s, c, data)
	})

	t.Run("cleanRestart", func(t *testing.T) {
		r := storetest.StartRedis(t, storetest.RedisConfig{Args: []string{"--appendonly", "yes"}})
		c := r.Client(t)
		s := storetest.Open(t, r.URL("", "r"), store.Config{})
		ctx := storetest.Ctx(t, 2*time.Minute)
		g := newGate(bytes.NewReader(data), 3*chunk)
		done := make(chan error, 1)
		go func() { done <- s.Put(ctx, "obj", g, -1) }()
		g.await(t)
		testutil.Eventually(t, 30*time.Second, "three chunks stored", func() bool { return len(chunkKeys(t, c, "r:")) == 3 })
		r.Stop()
		r.Start()
		close(g.release)
		if err := <-done; err != nil {
			t.Fatalf("put across a clean restart with AOF: %v", err)
		}
		check(t, s, c, data)
	})
}

// TestRedis_DamagedObject: a Get of an object with a chunk deleted or
// truncated by hand fails with a clear, permanent error after the chunks
// before it, never a short read taken as complete (the last chunk missing
// included); an object deleted during the read fails as fs.ErrNotExist, one
// replaced during the read with an error that a new read cures.
func TestRedis_DamagedObject(t *testing.T) {
	r := storetest.StartRedis(t, storetest.RedisConfig{})
	c := r.Client(t)
	s := storetest.Open(t, r.URL("", "d"), store.Config{})
	ctx := storetest.Ctx(t, 2*time.Minute)
	data := gen(3, 2*chunk+1000)
	put := func(t *testing.T) {
		t.Helper()
		if err := s.Put(ctx, "obj", bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		chunk int
		harm  func(k string) error
		want  string
	}{
		{"middleDeleted", 1, func(k string) error { return c.Del(ctx, k).Err() }, "chunk 1 of 3"},
		{"lastDeleted", 2, func(k string) error { return c.Del(ctx, k).Err() }, "chunk 2 of 3"},
		{"lastTruncated", 2, func(k string) error { return c.Set(ctx, k, "short", 0).Err() }, "holds 5 bytes, expected 1000"},
		{"firstGrown", 0, func(k string) error { return c.Append(ctx, k, "x").Err() }, "expected 8388608"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			put(t)
			if err := tc.harm(objectChunk(t, c, "d:", "obj", tc.chunk)); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(ctx, s, "obj")
			t.Logf("read %d bytes: %v", len(got), err)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "damaged") ||
				!store.IsPermanent(err) || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), s.Name()) {
				t.Errorf("read of a damaged object: %d bytes, %v; want a permanent error saying %q", len(got), err, tc.want)
			}
			if len(got) != tc.chunk*chunk || !bytes.Equal(got, data[:len(got)]) {
				t.Errorf("read %d bytes before the error, want the %d of the intact chunks", len(got), tc.chunk*chunk)
			}
		})
	}

	// During a read: after the first chunk, the object is replaced or deleted.
	for _, tc := range []struct {
		name     string
		change   func() error
		notExist bool
	}{
		{"replaced", func() error { return s.Put(ctx, "obj", strings.NewReader("new"), 3) }, false},
		{"deleted", func() error { return s.Delete(ctx, "obj") }, true},
	} {
		t.Run(tc.name+"DuringRead", func(t *testing.T) {
			put(t)
			rc, err := s.Get(ctx, "obj")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			first := make([]byte, chunk)
			if _, err := io.ReadFull(rc, first); err != nil {
				t.Fatal(err)
			}
			if err := tc.change(); err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(rc)
			t.Logf("read on: %d bytes, %v", len(rest), err)
			if err == nil || errors.Is(err, fs.ErrNotExist) != tc.notExist || store.IsPermanent(err) != tc.notExist {
				t.Errorf("read of an object %s during the read: %v (not exist %v, permanent %v)", tc.name, err,
					errors.Is(err, fs.ErrNotExist), store.IsPermanent(err))
			}
		})
	}
}

// TestRedis_KilledUpload: an upload stopped midway (its context cancelled,
// as a killed process would stop) leaves no object, and the chunks it wrote
// carry an expiry, so that the server removes them by itself.
func TestRedis_KilledUpload(t *testing.T) {
	r := storetest.StartRedis(t, storetest.RedisConfig{})
	c := r.Client(t)
	s := storetest.Open(t, r.URL("", "k"), store.Config{Timeout: 3 * time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := newGate(storetest.Gen(1, 10*chunk), 2*chunk+chunk/2)
	done := make(chan error, 1)
	go func() { done <- s.Put(ctx, "obj", g, -1) }()
	g.await(t)
	cancel()
	close(g.release)
	err := <-done
	t.Logf("cancelled put: %v", err)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled put: %v, want context.Canceled", err)
	}
	tctx := storetest.Ctx(t, time.Minute)
	if objs, err := s.List(tctx, ""); err != nil || len(objs) != 0 {
		t.Errorf("list after the killed upload: %+v, %v", objs, err)
	}
	if _, err := s.Get(tctx, "obj"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("get after the killed upload: %v", err)
	}
	keys := chunkKeys(t, c, "k:")
	if len(keys) == 0 {
		t.Fatal("no chunk left: nothing to check the expiry of")
	}
	for _, k := range keys {
		// Twice SNAPVISOR_REMOTE_TIMEOUT: longer than any upload may take.
		if ttl := c.TTL(tctx, k).Val(); ttl <= 5*time.Hour || ttl > 6*time.Hour {
			t.Errorf("chunk %s expires in %v, want 6h", k, ttl)
		}
	}
}

// TestRedis_PrefixGlob: a prefix with SCAN's glob characters lists its own
// objects only (they are escaped), and keys with them are stored as given.
func TestRedis_PrefixGlob(t *testing.T) {
	r := storetest.StartRedis(t, storetest.RedisConfig{})
	ctx := storetest.Ctx(t, time.Minute)
	glob := storetest.Open(t, r.URL("", `a*[b]?\`), store.Config{})
	other := storetest.Open(t, r.URL("", `axb`), store.Config{})
	for _, k := range []string{"x", "y*", "[z]"} {
		if err := other.Put(ctx, k, strings.NewReader(k), -1); err != nil {
			t.Fatal(err)
		}
	}
	if err := glob.Put(ctx, "y*", strings.NewReader("mine"), -1); err != nil {
		t.Fatal(err)
	}
	objs, err := glob.List(ctx, "")
	if err != nil || len(objs) != 1 || objs[0].Key != "y*" {
		t.Errorf("list of the glob prefix: %+v, %v; want only its own y*", objs, err)
	}
	objs, err = other.List(ctx, "y*")
	if err != nil || len(objs) != 1 || objs[0].Key != "y*" {
		t.Errorf("list y* = %+v, %v", objs, err)
	}
	if objs, _ := other.List(ctx, "["); len(objs) != 1 || objs[0].Key != "[z]" {
		t.Errorf("list [ = %+v", objs)
	}
}

// TestRedis_PasswordFile: the password also comes from
// SNAPVISOR_REDIS_PASSWORD_FILE through the configuration loader (a Docker
// or Kubernetes secret), and both variables are secret ones (kept out of the
// service's environment, never printed).
func TestRedis_PasswordFile(t *testing.T) {
	r := storetest.StartRedisACL(t)
	file := filepath.Join(t.TempDir(), "redis-password")
	storetest.MustWrite(t, file, []byte(storetest.RedisACLPassword+"\n"))
	url := r.URL(storetest.RedisACLUser, storetest.RedisACLPrefix+":file")
	t.Setenv("SNAPVISOR_REMOTES", url)
	t.Setenv("SNAPVISOR_REDIS_PASSWORD_FILE", file)
	var cfg store.Config
	if err := config.Load(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := storetest.Open(t, url, cfg)
	ctx := storetest.Ctx(t, time.Minute)
	if err := s.Put(ctx, "a", strings.NewReader("a"), 1); err != nil {
		t.Fatalf("put with the password from the file: %v", err)
	}
	vars := config.SecretVars(&cfg)
	for _, v := range []string{"SNAPVISOR_REDIS_PASSWORD", "SNAPVISOR_REDIS_PASSWORD_FILE"} {
		if !slices.Contains(vars, v) {
			t.Errorf("%s is not a secret variable: %v", v, vars)
		}
	}
	if strings.Contains(fmt.Sprintf("%v %+v", cfg, cfg), storetest.RedisACLPassword) {
		t.Error("printing the configuration shows the password")
	}
}

// TestRedis_OutOfMemory: a Put that does not fit in the server's maxmemory
// fails at once (a permanent error saying Redis is full), leaves nothing
// visible and takes its chunks back; the object stored before stays whole.
func TestRedis_OutOfMemory(t *testing.T) {
	r := storetest.StartRedis(t, storetest.RedisConfig{Args: []string{"--maxmemory", "24mb", "--maxmemory-policy", "noeviction"}})
	c := r.Client(t)
	s := storetest.Open(t, r.URL("", "m"), store.Config{})
	ctx := storetest.Ctx(t, time.Minute)
	small := gen(1, chunk/2)
	if err := s.Put(ctx, "obj", bytes.NewReader(small), -1); err != nil {
		t.Fatal(err)
	}
	err := s.Put(ctx, "obj", storetest.Gen(2, 5*chunk), -1)
	t.Logf("put beyond maxmemory: %v", err)
	if err == nil || !store.IsPermanent(err) || !strings.Contains(err.Error(), "OOM") || !strings.Contains(err.Error(), "Redis is full") {
		t.Fatalf("put beyond maxmemory: %v (permanent %v); want a permanent error saying Redis is full", err, store.IsPermanent(err))
	}
	if got, err := readAll(ctx, s, "obj"); err != nil || sum(got) != sum(small) {
		t.Errorf("the object stored before: %d bytes, %v", len(got), err)
	}
	if keys := chunkKeys(t, c, "m:"); len(keys) != 1 {
		t.Errorf("chunk keys after the failed put: %v, want the stored object's one", keys)
	}
}
