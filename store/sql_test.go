package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"snapvisor/config"
	"snapvisor/internal/testutil"
	"snapvisor/store"
	"snapvisor/store/storetest"
)

// sqlChunk is the chunk size the SQL tests set: objects of many chunks from little data.
const sqlChunk = 64 << 10

// sqlFixture is one SQL backend with a direct connection to its database,
// for what the tests check or break by hand.
type sqlFixture struct {
	// open opens a fresh store (its own connection pool, as another
	// process would have) on the table pair of prefix.
	open func(t *testing.T, prefix string) store.Store
	db   *sql.DB
	ph   func(q string) string // $n placeholders for db
}

func (f sqlFixture) exec(t *testing.T, q string, args ...any) int64 {
	t.Helper()
	res, err := f.db.ExecContext(storetest.Ctx(t, time.Minute), f.ph(q), args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	n, _ := res.RowsAffected()
	return n
}

func (f sqlFixture) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.QueryRowContext(storetest.Ctx(t, time.Minute), f.ph(q), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// rows checks what the tables of prefix hold for key: the object row, if
// want is not nil, with its chunks and no other chunk row anywhere in the
// chunk table but those of other keys (others).
func (f sqlFixture) rows(t *testing.T, prefix, key string, want []byte, others int) {
	t.Helper()
	o, c := storetest.Table(prefix), storetest.Table(prefix)+"_chunks"
	objects := f.count(t, `SELECT count(*) FROM `+o+` WHERE key = $1`, key)
	chunks := f.count(t, `SELECT count(*) FROM `+c+` WHERE key = $1`, key)
	all := f.count(t, `SELECT count(*) FROM `+c)
	if want == nil {
		if objects != 0 || chunks != 0 {
			t.Errorf("%s: %d object rows and %d chunk rows left, want none", key, objects, chunks)
		}
	} else {
		n := (len(want) + sqlChunk - 1) / sqlChunk
		own := f.count(t, `SELECT count(*) FROM `+c+` c JOIN `+o+` o ON o.upload = c.upload AND o.key = c.key WHERE o.key = $1`, key)
		if objects != 1 || chunks != n || own != n {
			t.Errorf("%s: %d object rows, %d chunk rows of which %d of its upload; want 1 and %d", key, objects, chunks, own, n)
		}
	}
	if all != chunks+others {
		t.Errorf("%d chunk rows in %s, want %d: orphans left behind", all, c, chunks+others)
	}
}

func postgresFixture(t *testing.T) (sqlFixture, *storetest.Postgres) {
	pg := storetest.StartPostgres(t)
	f := sqlFixture{
		open: func(t *testing.T, prefix string) store.Store {
			s := storetest.Open(t, pg.URL(prefix), pg.Config())
			store.SetSQLChunkSize(s, sqlChunk)
			return s
		},
		db: pg.DB(t),
		ph: func(q string) string { return q },
	}
	return f, pg
}

func sqliteFixture(t *testing.T) (sqlFixture, string) {
	file := filepath.Join(t.TempDir(), "snapvisor.db")
	db, err := sql.Open("sqlite", file+"?_pragma=busy_timeout(60000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := sqlFixture{
		open: func(t *testing.T, prefix string) store.Store {
			s := storetest.Open(t, "sqlite://"+file+"?table="+storetest.Table(prefix), store.Config{})
			store.SetSQLChunkSize(s, sqlChunk)
			return s
		},
		db: db,
		ph: func(q string) string { return strings.NewReplacer("$1", "?1", "$2", "?2").Replace(q) },
	}
	return f, file
}

// content is n bytes of pattern seed.
func content(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i/251)
	}
	return b
}

func mustPut(t *testing.T, s store.Store, key string, b []byte) {
	t.Helper()
	if err := s.Put(storetest.Ctx(t, time.Minute), key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func mustGet(t *testing.T, s store.Store, key string) []byte {
	t.Helper()
	b, err := readAll(storetest.Ctx(t, time.Minute), s, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return b
}

func readAll(ctx context.Context, s store.Store, key string) ([]byte, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// hookReader reads r and calls hook once, when at bytes have been read.
type hookReader struct {
	r    io.Reader
	at   int64
	n    int64
	hook func() error
}

func (h *hookReader) Read(p []byte) (int, error) {
	if h.hook != nil && h.n+int64(len(p)) > h.at {
		if h.n < h.at {
			p = p[:h.at-h.n]
		} else {
			hook := h.hook
			h.hook = nil
			if err := hook(); err != nil {
				return 0, err
			}
		}
	}
	n, err := h.r.Read(p)
	h.n += int64(n)
	return n, err
}

// testSQLPutFailures: a Put whose source fails, is short, or whose context
// ends midway leaves the previous object, whole, and no chunk row behind.
func testSQLPutFailures(t *testing.T, f sqlFixture) {
	prefix := storetest.FreshPrefix()
	s := f.open(t, prefix)
	v1 := content(1, 3*sqlChunk+100)
	mustPut(t, s, "k", v1)
	v2 := content(2, 5*sqlChunk)
	ctx := storetest.Ctx(t, time.Minute)

	errSource := errors.New("source broke")
	r := &hookReader{r: bytes.NewReader(v2), at: 3 * sqlChunk, hook: func() error { return errSource }}
	if err := s.Put(ctx, "k", r, -1); !errors.Is(err, errSource) {
		t.Errorf("put with a failing source: %v", err)
	}
	if err := s.Put(ctx, "k", bytes.NewReader(v2), int64(len(v2))+1); err == nil {
		t.Errorf("put of a short source succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	r = &hookReader{r: bytes.NewReader(v2), at: 2 * sqlChunk, hook: func() error { cancel(); return nil }}
	if err := s.Put(cctx, "k", r, int64(len(v2))); !errors.Is(err, context.Canceled) {
		t.Errorf("put cancelled midway: %v, want context.Canceled", err)
	}
	if err := s.Put(ctx, "new", bytes.NewReader(v2[:2*sqlChunk]), int64(len(v2))); err == nil {
		t.Errorf("put of a short source succeeded")
	}
	if got := mustGet(t, s, "k"); !bytes.Equal(got, v1) {
		t.Errorf("after failed puts: got %d bytes, want the first version's %d", len(got), len(v1))
	}
	if _, err := s.Get(ctx, "new"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("get of a key whose only put failed: %v", err)
	}
	f.rows(t, prefix, "k", v1, 0)
}

// testSQLConcurrentWriters: two stores (two entrypoints) put the same key at
// once, many times: the result is always exactly one of the two contents,
// and no chunk row of the other is left. With overlap, each waits (up to a
// second) until the other has begun, so that both transactions are open.
func testSQLConcurrentWriters(t *testing.T, f sqlFixture, rounds int, overlap bool) {
	prefix := storetest.FreshPrefix()
	s1, s2 := f.open(t, prefix), f.open(t, prefix)
	ctx := storetest.Ctx(t, 5*time.Minute)
	a, b := content(10, 5*sqlChunk+7), content(20, 3*sqlChunk+11)
	for round := range rounds {
		var started sync.WaitGroup
		started.Add(2)
		gate := func() error {
			started.Done()
			if overlap {
				done := make(chan struct{})
				go func() { started.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(time.Second):
				}
			}
			return nil
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, w := range []struct {
			s    store.Store
			data []byte
		}{{s1, a}, {s2, b}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := &hookReader{r: bytes.NewReader(w.data), at: sqlChunk + int64(round%3)*sqlChunk/2, hook: gate}
				errs[i] = w.s.Put(ctx, "same", r, int64(len(w.data)))
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: writer %d: %v", round, i+1, err)
			}
		}
		got := mustGet(t, s1, "same")
		switch {
		case bytes.Equal(got, a):
			f.rows(t, prefix, "same", a, 0)
		case bytes.Equal(got, b):
			f.rows(t, prefix, "same", b, 0)
		default:
			t.Fatalf("round %d: read back %d bytes that are neither writer's", round, len(got))
		}
		if t.Failed() {
			t.Fatalf("round %d failed", round)
		}
	}
}

// testSQLDamaged: a Get of an object with chunk rows deleted or changed by
// hand fails with a clear, permanent error; it never ends early as if complete.
func testSQLDamaged(t *testing.T, f sqlFixture) {
	prefix := storetest.FreshPrefix()
	s := f.open(t, prefix)
	c := storetest.Table(prefix) + "_chunks"
	v := content(3, 4*sqlChunk+5)
	for _, tc := range []struct{ name, q string }{
		{"middle chunk deleted", `DELETE FROM ` + c + ` WHERE key = $1 AND n = 1`},
		{"last chunk deleted", `DELETE FROM ` + c + ` WHERE key = $1 AND n = 4`},
		{"first chunk deleted", `DELETE FROM ` + c + ` WHERE key = $1 AND n = 0`},
		{"chunk shortened", `UPDATE ` + c + ` SET data = substr(data, 1, 10) WHERE key = $1 AND n = 2`},
		{"all chunks deleted", `DELETE FROM ` + c + ` WHERE key = $1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustPut(t, s, "obj", v)
			if n := f.exec(t, tc.q, "obj"); n == 0 {
				t.Fatalf("%s changed no row", tc.q)
			}
			b, err := readAll(storetest.Ctx(t, time.Minute), s, "obj")
			t.Logf("%d bytes read; error: %v", len(b), err)
			if err == nil || errors.Is(err, fs.ErrNotExist) || !store.IsPermanent(err) ||
				!strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), s.Name()) {
				t.Errorf("get of a damaged object: %d bytes, error %v; want a permanent error naming the store and the damage", len(b), err)
			}
		})
	}
}

// testSQLReadIsolation: a Get in progress reads the version it began with to
// its end while the key is replaced and deleted meanwhile.
func testSQLReadIsolation(t *testing.T, f sqlFixture) {
	prefix := storetest.FreshPrefix()
	s, other := f.open(t, prefix), f.open(t, prefix)
	ctx := storetest.Ctx(t, time.Minute)
	v1, v2 := content(4, 6*sqlChunk+1), content(5, 2*sqlChunk)
	mustPut(t, s, "obj", v1)
	rc, err := s.Get(ctx, "obj")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	head := make([]byte, 100)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	mustPut(t, other, "obj", v2)
	if got := mustGet(t, other, "obj"); !bytes.Equal(got, v2) {
		t.Fatalf("replaced object reads %d bytes", len(got))
	}
	if err := other.Delete(ctx, "obj"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading on after a replace and a delete: %v", err)
	}
	if got := append(head, rest...); !bytes.Equal(got, v1) {
		t.Errorf("a Get begun before a replace read %d bytes, not the version it began with (%d)", len(got), len(v1))
	}
	if _, err := other.Get(ctx, "obj"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("get after delete: %v", err)
	}
	f.rows(t, prefix, "obj", nil, 0)
}

// testSQLList: List sorts bytewise whatever the database's collation, and a
// prefix is a prefix: LIKE's wildcards and SQLite's case folding play no part.
func testSQLList(t *testing.T, f sqlFixture) {
	s := f.open(t, storetest.FreshPrefix())
	keys := []string{"A", "a", "a-b", "a.b", "a/b", "aB", "ab", "a_c", "a%c", "a%", "b", "é", "z", "Z"}
	for _, k := range keys {
		mustPut(t, s, k, []byte(k))
	}
	ctx := storetest.Ctx(t, time.Minute)
	slices.Sort(keys)
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", keys}, {"a_", []string{"a_c"}}, {"a%", []string{"a%", "a%c"}}, {"A", []string{"A"}},
		{"a/", []string{"a/b"}}, {"é", []string{"é"}}, {"x", nil},
	} {
		objs, err := s.List(ctx, tc.prefix)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, o := range objs {
			got = append(got, o.Key)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("list %q = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

// TestPostgres_Store: the SQL store's own promises on PostgreSQL 15.
func TestPostgres_Store(t *testing.T) {
	f, _ := postgresFixture(t)
	t.Run("failedPutsLeaveNothing", func(t *testing.T) { testSQLPutFailures(t, f) })
	t.Run("concurrentWriters", func(t *testing.T) { testSQLConcurrentWriters(t, f, 40, true) })
	t.Run("damagedObject", func(t *testing.T) { testSQLDamaged(t, f) })
	t.Run("readIsolation", func(t *testing.T) { testSQLReadIsolation(t, f) })
	t.Run("listOrder", func(t *testing.T) { testSQLList(t, f) })
}

// TestSQLite_Store: the same on SQLite.
func TestSQLite_Store(t *testing.T) {
	f, _ := sqliteFixture(t)
	t.Run("failedPutsLeaveNothing", func(t *testing.T) { testSQLPutFailures(t, f) })
	t.Run("concurrentWriters", func(t *testing.T) { testSQLConcurrentWriters(t, f, 20, false) })
	t.Run("damagedObject", func(t *testing.T) { testSQLDamaged(t, f) })
	t.Run("readIsolation", func(t *testing.T) { testSQLReadIsolation(t, f) })
	t.Run("listOrder", func(t *testing.T) { testSQLList(t, f) })
}

// configError checks that rawURL is refused as a SNAPVISOR_REMOTES
// configuration error whose text has every string of want and not secret.
func configError(t *testing.T, rawURL, secret string, want ...string) {
	t.Helper()
	err := store.Config{Remotes: []string{rawURL}, Retries: 1, Backoff: time.Second, Timeout: time.Minute, LeaseTTL: time.Minute}.Validate()
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != "SNAPVISOR_REMOTES" {
		t.Errorf("%s: %v, want a SNAPVISOR_REMOTES configuration error", rawURL, err)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not say %q", rawURL, err, w)
		}
	}
	if secret != "" && strings.Contains(err.Error(), secret) {
		t.Errorf("%s: error %q shows the password", rawURL, err)
	}
}

// TestPostgres_URL: postgres:// (and postgresql://) URLs are checked before
// anything connects; a password in one is refused, naming the variable to use.
func TestPostgres_URL(t *testing.T) {
	ok := store.Config{Remotes: []string{
		"postgres://u@db:5432/snap?sslmode=require&table=my_objects",
		"postgresql://u@db/snap",
		"postgres://u@127.0.0.1:1/snap?sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=5&application_name=x",
	}, Retries: 1, Backoff: time.Second, Timeout: time.Minute, LeaseTTL: time.Minute}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid URLs refused: %v", err)
	}
	configError(t, "postgres://u:s3cretPW@db:5432/snap", "s3cretPW", "SNAPVISOR_POSTGRES_PASSWORD", "password does not belong in the URL")
	configError(t, "postgresql://u:s3cretPW@db/snap", "s3cretPW", "SNAPVISOR_POSTGRES_PASSWORD")
	configError(t, "postgres://u@db/snap?password=s3cretPW", "s3cretPW", "SNAPVISOR_POSTGRES_PASSWORD")
	configError(t, "postgres://u@db/snap?sslpassword=s3cretPW", "s3cretPW", "SNAPVISOR_POSTGRES_PASSWORD")
	configError(t, "postgres://db/snap", "", "missing user")
	configError(t, "postgres://u@/snap", "", "missing host")
	configError(t, "postgres://u@db:99999/snap", "", "port")
	configError(t, "postgres://u@db", "", "database name")
	configError(t, "postgres://u@db/a/b", "", "database name")
	configError(t, "postgres://u@db/snap?sslmode=maybe", "", "sslmode")
	configError(t, "postgres://u@db/snap?search_path=x", "", `unknown parameter "search_path"`)
	configError(t, "postgres://u@db/snap?table=Objects", "", "table")
	configError(t, "postgres://u@db/snap?table=a;drop", "", "table")
	configError(t, "postgres://u@db/snap?table="+strings.Repeat("t", 49), "", "table")
}

// TestSQLite_URL: sqlite:// URLs take an absolute file path and a table.
func TestSQLite_URL(t *testing.T) {
	ok := store.Config{Remotes: []string{"sqlite:///var/backups/snap.db", "sqlite:///x.db?table=t_1", "sqlite://localhost/x.db"},
		Retries: 1, Backoff: time.Second, Timeout: time.Minute, LeaseTTL: time.Minute}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid URLs refused: %v", err)
	}
	configError(t, "sqlite://host/x.db", "", "absolute file path")
	configError(t, "sqlite:///var/backups/", "", "missing database file")
	configError(t, "sqlite:///x.db?mode=ro", "", `unknown parameter "mode"`)
	configError(t, "sqlite:///x.db?table=1x", "", "table")
}

// TestPostgres_Credentials: the password comes from
// SNAPVISOR_POSTGRES_PASSWORD or a matching PGPASSFILE line, never from
// PGPASSWORD; refused credentials are a permanent error without the secret.
func TestPostgres_Credentials(t *testing.T) {
	pg := storetest.StartPostgres(t)
	ctx := storetest.Ctx(t, time.Minute)
	dir := t.TempDir()
	passfile := func(lines string) string {
		p := filepath.Join(dir, fmt.Sprintf("pgpass-%d", time.Now().UnixNano()))
		storetest.MustWrite(t, p, []byte(lines))
		return p
	}
	works := func(t *testing.T, cfg store.Config) {
		t.Helper()
		s := storetest.Open(t, pg.URL(storetest.FreshPrefix()), cfg)
		mustPut(t, s, "x", []byte("x"))
		if got := mustGet(t, s, "x"); string(got) != "x" {
			t.Errorf("read back %q", got)
		}
	}
	refused := func(t *testing.T, cfg store.Config) {
		t.Helper()
		s := storetest.Open(t, pg.URL(storetest.FreshPrefix()), cfg)
		err := s.Put(ctx, "x", strings.NewReader("x"), 1)
		t.Logf("error: %v", err)
		if err == nil || !store.IsPermanent(err) || strings.Contains(err.Error(), storetest.PostgresPassword) {
			t.Errorf("put with refused credentials: %v; want a permanent error without the password", err)
		}
	}
	port := storetest.PortOf(pg.Addr)
	t.Run("password", func(t *testing.T) { works(t, pg.Config()) })
	t.Run("passfile", func(t *testing.T) {
		works(t, store.Config{PostgresPassFile: passfile("# comment\nother:1:*:*:nope\n127.0.0.1:" + port + ":" +
			storetest.PostgresDB + ":" + storetest.PostgresUser + ":" + storetest.PostgresPassword + "\n")})
	})
	t.Run("passfileWildcards", func(t *testing.T) {
		works(t, store.Config{PostgresPassFile: passfile("*:*:*:" + storetest.PostgresUser + ":" + storetest.PostgresPassword + "\n")})
	})
	t.Run("passwordBeforePassfile", func(t *testing.T) {
		works(t, store.Config{PostgresPassword: storetest.PostgresPassword, PostgresPassFile: passfile("*:*:*:*:wrong\n")})
	})
	t.Run("passfileWithoutMatch", func(t *testing.T) {
		refused(t, store.Config{PostgresPassFile: passfile("127.0.0.1:1:*:*:" + storetest.PostgresPassword + "\n")})
	})
	t.Run("PGPASSWORDIgnored", func(t *testing.T) {
		t.Setenv("PGPASSWORD", storetest.PostgresPassword)
		t.Setenv("HOME", t.TempDir()) // no ~/.pgpass
		refused(t, store.Config{})
	})
	t.Run("fromEnvironment", func(t *testing.T) {
		// SNAPVISOR_POSTGRES_PASSWORD_FILE through the loader, kept out of the service's environment.
		pwfile := passfile(storetest.PostgresPassword + "\n")
		t.Setenv("SNAPVISOR_POSTGRES_PASSWORD_FILE", pwfile)
		t.Setenv("PGPASSFILE", filepath.Join(dir, "ignored-while-a-password-is-set"))
		var cfg store.Config
		if err := config.Load(&cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.PostgresPassFile == "" {
			t.Errorf("PGPASSFILE not loaded")
		}
		if vars := config.SecretVars(&cfg); !slices.Contains(vars, "SNAPVISOR_POSTGRES_PASSWORD") || !slices.Contains(vars, "SNAPVISOR_POSTGRES_PASSWORD_FILE") {
			t.Errorf("the password variables are not kept from the service: %v", vars)
		}
		works(t, cfg)
	})
	t.Run("wrongPassword", func(t *testing.T) { refused(t, store.Config{PostgresPassword: "wrong-pass-Zq9"}) })
	t.Run("missingPassfile", func(t *testing.T) {
		_, err := store.Open(ctx, pg.URL("x"), store.Config{PostgresPassFile: filepath.Join(dir, "missing")}, nil)
		if err == nil || !strings.Contains(err.Error(), "PGPASSFILE") || !store.IsPermanent(err) {
			t.Errorf("open with a missing PGPASSFILE: %v", err)
		}
	})
}

// TestPostgres_RestartDuringPut: the server restarted (pg_ctl restart -m
// fast) in the middle of a Put: the Put fails, the previous version stays
// whole and alone, and a retry succeeds.
func TestPostgres_RestartDuringPut(t *testing.T) {
	f, pg := postgresFixture(t)
	prefix := storetest.FreshPrefix()
	s := f.open(t, prefix)
	ctx := storetest.Ctx(t, 3*time.Minute)
	v1, v2 := content(6, 3*sqlChunk), content(7, 8*sqlChunk+3)
	mustPut(t, s, "obj", v1)
	r := &hookReader{r: bytes.NewReader(v2), at: 4 * sqlChunk, hook: func() error { pg.Restart(); return nil }}
	err := s.Put(ctx, "obj", r, -1)
	t.Logf("put across a restart: %v", err)
	if err == nil {
		t.Fatal("a put across a server restart succeeded")
	}
	if store.IsPermanent(err) {
		t.Errorf("a restart is not a permanent error: %v", err)
	}
	if got := mustGet(t, s, "obj"); !bytes.Equal(got, v1) {
		t.Errorf("after the failed put: %d bytes, want the first version's %d", len(got), len(v1))
	}
	f.rows(t, prefix, "obj", v1, 0)
	mustPut(t, s, "obj", v2) // the retry
	if got := mustGet(t, s, "obj"); !bytes.Equal(got, v2) {
		t.Errorf("after the retry: %d bytes, want %d", len(got), len(v2))
	}
	f.rows(t, prefix, "obj", v2, 0)
}

// TestPostgres_DiskFull: the server's data directory on a small tmpfs that a
// Put fills: the Put fails with a clear error, nothing of it is visible, the
// earlier objects read back, and once there is space again a Put succeeds.
func TestPostgres_DiskFull(t *testing.T) {
	testutil.RequireRoot(t, "mounting a tmpfs")
	mnt, err := os.MkdirTemp("", "snapvisor-pgfull-") // under /tmp: reachable by the postgres user
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(mnt) })
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() }) // after the server's stop (cleanups run in reverse)
	pg := storetest.StartPostgresIn(t, mnt)
	s := storetest.Open(t, pg.URL("full"), pg.Config())
	ctx := storetest.Ctx(t, 5*time.Minute)
	early := content(8, 1<<20)
	mustPut(t, s, "early", early)

	err = s.Put(ctx, "big", storetest.Gen(9, 512<<20), -1)
	t.Logf("put onto a full disk: %v", err)
	if err == nil {
		t.Fatal("a put of 512 MiB onto a 96 MiB file system succeeded")
	}
	if !strings.Contains(err.Error(), "No space left on device") && !strings.Contains(err.Error(), "53100") {
		t.Errorf("error %q does not say the disk is full", err)
	}
	if out, err := exec.Command("mount", "-o", "remount,size=768m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("grow tmpfs: %v\n%s", err, out)
	}
	// The server may have restarted itself (a full WAL is a PANIC): wait until
	// it answers. Its crash recovery races with the remount above: when it
	// ends before (within ~300 ms of the PANIC), its end-of-recovery
	// checkpoint finds the disk still full and the postmaster shuts down.
	// A supervisor would start it again: so does the test.
	var objs []store.Object
	testutil.Eventually(t, time.Minute, "the server answers again", func() bool {
		if pg.Exited() {
			t.Logf("the server shut down (its recovery found the disk still full); starting it again:\n%s", pg.Output())
			pg.Start()
		}
		objs, err = s.List(ctx, "")
		return err == nil
	})
	if len(objs) != 1 || objs[0].Key != "early" {
		t.Errorf("after the failed put, list = %+v, want only early", objs)
	}
	if got := mustGet(t, s, "early"); !bytes.Equal(got, early) {
		t.Errorf("early object reads %d bytes after the disk filled", len(got))
	}
	big := content(10, 64<<20)
	mustPut(t, s, "big", big)
	if got := mustGet(t, s, "big"); !bytes.Equal(got, big) {
		t.Errorf("big object reads %d bytes", len(got))
	}
}

// TestSQLite_WAL: the database is in WAL mode, so a reader (another
// connection, as another process) sees the last committed object while a
// Put holds the write lock, and the new one once it commits.
func TestSQLite_WAL(t *testing.T) {
	f, file := sqliteFixture(t)
	prefix := storetest.FreshPrefix()
	writer, reader := f.open(t, prefix), f.open(t, prefix)
	v1, v2 := content(11, 3*sqlChunk), content(12, 6*sqlChunk)
	mustPut(t, writer, "obj", v1)
	var mode string
	if err := f.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode of %s = %q, %v; want wal", file, mode, err)
	}
	ctx := storetest.Ctx(t, time.Minute)
	midway, release := make(chan struct{}), make(chan struct{})
	r := &hookReader{r: bytes.NewReader(v2), at: 3 * sqlChunk, hook: func() error {
		close(midway)
		<-release
		return nil
	}}
	done := make(chan error, 1)
	go func() { done <- writer.Put(ctx, "obj", r, int64(len(v2))) }()
	select {
	case <-midway:
	case err := <-done:
		t.Fatalf("put ended early: %v", err)
	}
	got, err := readAll(ctx, reader, "obj")
	objs, lerr := reader.List(ctx, "")
	close(release)
	if err != nil || !bytes.Equal(got, v1) {
		t.Errorf("read during a put: %d bytes, %v; want the old %d", len(got), err, len(v1))
	}
	if lerr != nil || len(objs) != 1 || objs[0].Size != int64(len(v1)) {
		t.Errorf("list during a put: %+v, %v", objs, lerr)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, reader, "obj"); !bytes.Equal(got, v2) {
		t.Errorf("after the put: %d bytes, want %d", len(got), len(v2))
	}
}

// TestSQLite_Directory: the database file's directory must exist (an
// unmounted volume is an error, retried, naming the directory); a missing
// file is created, mode 0600.
func TestSQLite_Directory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	file := filepath.Join(dir, "snap.db")
	s := storetest.Open(t, "sqlite://"+file, store.Config{})
	ctx := storetest.Ctx(t, time.Minute)
	err := s.Put(ctx, "x", strings.NewReader("x"), 1)
	if err == nil || store.IsPermanent(err) || !strings.Contains(err.Error(), dir+" does not exist") {
		t.Errorf("put into a missing directory: %v; want a retryable error naming %s", err, dir)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the directory was created: %v", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "x", []byte("x"))
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("database file: %v, %v; want mode 0600", fi, err)
	}
}

// TestSQLite_StaticBinary: the entrypoint with the SQLite (and PostgreSQL)
// store is still built without cgo and statically linked, and it refuses a
// PostgreSQL password in the URL with exit 78.
func TestSQLite_StaticBinary(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the entrypoint: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "entrypoint")
	build := exec.Command(gobin, "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/entrypoint") // as make build
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(gobin, "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "modernc.org/sqlite", "github.com/jackc/pgx/v5"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("go version -m does not show %q:\n%s", want, out)
		}
	}
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (program header %v)", p.Type)
		}
	}
	if libs, _ := ef.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}

	cmd := exec.Command(bin, "list", "--remote", "postgres://snap:s3cretPW@127.0.0.1:1/snap")
	cmd.Dir, cmd.Env = t.TempDir(), []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	msg, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 78 || !strings.Contains(string(msg), "SNAPVISOR_REMOTES") ||
		!strings.Contains(string(msg), "SNAPVISOR_POSTGRES_PASSWORD") || strings.Contains(string(msg), "s3cretPW") {
		t.Errorf("list --remote with a password in the URL: exit %d, output:\n%s\nwant exit 78 naming SNAPVISOR_REMOTES and SNAPVISOR_POSTGRES_PASSWORD, without the password", code, msg)
	}
}
