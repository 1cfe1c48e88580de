package storetest

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for the tests' own statements
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"snapvisor/config"
	"snapvisor/internal/testutil"
	"snapvisor/store"
)

// The test role of StartPostgres and its database.
const (
	PostgresUser     = "snapvisor"
	PostgresPassword = "snapvisor-pg-secret-Q3"
	PostgresDB       = "snapvisor"
)

// Postgres is a PostgreSQL server on 127.0.0.1 for one test, run by the
// unprivileged postgres user (initdb and the server refuse root): its data
// directory and socket in a directory of its own, a password-protected role
// (scram-sha-256 for TCP connections from 127.0.0.1; the superuser postgres
// is trusted on the socket only) owning a database whose default collation
// is ICU's en-US (so that an ORDER BY without COLLATE "C" would not sort
// bytewise). Stopped (fast shutdown) when the test ends.
type Postgres struct {
	Addr string // 127.0.0.1:port
	Base string // socket directory, owned by postgres
	Data string // data directory
	t    testing.TB
	bin  string // the directory of pg_ctl, initdb and postgres
	uid  int
	gid  int
	p    *Proc
}

// StartPostgres starts a server with its data directory in a temporary directory.
func StartPostgres(t testing.TB) *Postgres { return StartPostgresIn(t, "") }

// StartPostgresIn starts a server whose data directory is data, an empty or
// missing directory (a tmpfs mount point, say); "" for one in the temporary
// directory.
func StartPostgresIn(t testing.TB, data string) *Postgres {
	t.Helper()
	pgctl := Tool(t, "postgres")
	testutil.RequireRoot(t, "running PostgreSQL as the postgres user")
	pu, err := user.Lookup("postgres")
	if err != nil {
		testutil.Unavailable(t, "no postgres user (scripts/servers.sh install postgres creates it): %v", err)
	}
	uid, _ := strconv.Atoi(pu.Uid)
	gid, _ := strconv.Atoi(pu.Gid)
	// Not t.TempDir: its parents are 0700 root, closed to the postgres user.
	base, err := os.MkdirTemp("", "snapvisor-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if data == "" {
		data = filepath.Join(base, "data")
		if err := os.Mkdir(data, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{base, data} {
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	pg := &Postgres{Base: base, Data: data, t: t, bin: filepath.Dir(pgctl), uid: uid, gid: gid}
	pg.asPostgres("initdb", "-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256",
		"-E", "UTF8", "--locale=C.UTF-8", "-N")
	t.Cleanup(pg.Stop)
	onFreePort(t, &pg.Addr, pg.start)
	pg.Super(t, "postgres", "CREATE ROLE "+PostgresUser+" LOGIN PASSWORD '"+PostgresPassword+"'")
	pg.Super(t, "postgres", "CREATE DATABASE "+PostgresDB+" OWNER "+PostgresUser+
		" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
	return pg
}

// asPostgres runs one of the server's programs as the postgres user, to completion.
func (pg *Postgres) asPostgres(prog string, args ...string) {
	pg.t.Helper()
	cmd := exec.Command(filepath.Join(pg.bin, prog), args...)
	cmd.Dir = pg.Base
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(pg.uid), Gid: uint32(pg.gid)}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		pg.t.Fatalf("%s: %v", prog, err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			pg.t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out.String())
		}
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		pg.t.Fatalf("%s %s: still running after 2 minutes\n%s", prog, strings.Join(args, " "), out.String())
	}
}

// Start starts the server (again) and waits until it accepts queries.
func (pg *Postgres) Start() {
	pg.t.Helper()
	if err := pg.start(); err != nil {
		pg.t.Fatal(err)
	}
}

func (pg *Postgres) start() error {
	pg.t.Helper()
	cmd := exec.Command(filepath.Join(pg.bin, "postgres"), "-D", pg.Data, "-c", "listen_addresses=127.0.0.1",
		"-p", PortOf(pg.Addr), "-k", pg.Base, "-c", "max_connections=30", "-c", "shared_buffers=32MB")
	cmd.Dir = pg.Base
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// A child of the test (not daemonized by pg_ctl): killed with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL,
		Credential: &syscall.Credential{Uid: uint32(pg.uid), Gid: uint32(pg.gid)}}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	p := &Proc{Name: "postgres", Cmd: cmd, Out: out, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	pg.p = p
	return waitReady(p, pg.Addr, 60*time.Second, func() error {
		db, err := sql.Open("pgx", pg.superDSN("postgres"))
		if err != nil {
			return err
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return db.PingContext(ctx)
	})
}

// Exited reports whether the server has ended (a postmaster that gave up,
// say, after its crash recovery failed); Start starts it again.
func (pg *Postgres) Exited() bool { return pg.p == nil || pg.p.Exited() }

// Output is what the server wrote to its stdout and stderr (the first MiB).
func (pg *Postgres) Output() string {
	if pg.p == nil {
		return ""
	}
	return pg.p.Out.String()
}

// Stop shuts the server down fast (SIGINT: sessions are ended, their
// transactions rolled back, as pg_ctl stop -m fast), killing it after 30 s.
func (pg *Postgres) Stop() {
	if pg.p == nil || pg.p.Exited() {
		return
	}
	_ = pg.p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-pg.p.done:
	case <-time.After(30 * time.Second):
		pg.p.Stop(0)
	}
}

// Restart is pg_ctl restart -m fast: pg_ctl stops the server (fast
// shutdown: every session is terminated), then it is started again on the
// same port and data.
func (pg *Postgres) Restart() {
	pg.t.Helper()
	pg.asPostgres("pg_ctl", "stop", "-D", pg.Data, "-m", "fast", "-w", "-t", "60")
	select {
	case <-pg.p.done:
	case <-time.After(10 * time.Second):
		pg.t.Fatalf("postgres still running after pg_ctl stop:\n%s", pg.p.Out.String())
	}
	pg.Start()
}

// Log is the server's output so far.
func (pg *Postgres) Log() string { return pg.p.Out.String() }

func (pg *Postgres) superDSN(db string) string {
	return fmt.Sprintf("host=%s port=%s user=postgres dbname=%s sslmode=disable connect_timeout=5", pg.Base, PortOf(pg.Addr), db)
}

// DB is a connection pool to the test database as the superuser (through
// the socket), closed when the test ends: for changes by hand.
func (pg *Postgres) DB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", pg.superDSN(PostgresDB))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Super runs statement q in database db as the superuser.
func (pg *Postgres) Super(t testing.TB, db, q string) {
	t.Helper()
	c, err := sql.Open("pgx", pg.superDSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.ExecContext(ctx, q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// Table is the objects table for a test prefix: snapvisor_<prefix>, made a
// plain identifier.
func Table(prefix string) string {
	return "snapvisor_" + regexp.MustCompile(`[^a-z0-9_]`).ReplaceAllString(strings.ToLower(prefix), "_")
}

// URL is the postgres:// remote URL of the objects table of prefix (Table).
func (pg *Postgres) URL(prefix string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable&table=%s", PostgresUser, pg.Addr, PostgresDB, Table(prefix))
}

// Config is the store configuration with the role's password.
func (pg *Postgres) Config() store.Config {
	return store.Config{PostgresPassword: config.Secret(PostgresPassword)}
}

// Env is the environment giving an entrypoint process the role's password.
func (pg *Postgres) Env() []string {
	return []string{"SNAPVISOR_POSTGRES_PASSWORD=" + PostgresPassword}
}

// PostgresBackend is postgres:// on a PostgreSQL 15 server, a table pair per prefix.
func PostgresBackend(t *testing.T) Backend {
	pg := StartPostgres(t)
	return Backend{
		Name: "postgres",
		Open: func(t *testing.T, prefix string) store.Store { return Open(t, pg.URL(prefix), pg.Config()) },
		BadCreds: func(t *testing.T) (store.Store, string) {
			cfg := pg.Config()
			cfg.PostgresPassword = "wrong-password-Xy7Qz"
			return Open(t, pg.URL("bad"), cfg), "wrong-password-Xy7Qz"
		},
		Down: func(t *testing.T) store.Store {
			return Open(t, fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", PostgresUser, DeadAddr(t), PostgresDB), pg.Config())
		},
		Remote: func(t *testing.T, prefix string) (string, []string) { return pg.URL(prefix), pg.Env() },
	}
}

// SQLiteBackend is sqlite:// in a temporary directory, a database file per prefix.
func SQLiteBackend(t *testing.T) Backend {
	dir := t.TempDir()
	url := func(prefix string) string { return "sqlite://" + filepath.Join(dir, prefix+".db") }
	return Backend{
		Name: "sqlite",
		Open: func(t *testing.T, prefix string) store.Store { return Open(t, url(prefix), store.Config{}) },
		// No server: the counterpart of one that is down is a directory that is not there (an unmounted volume).
		Down: func(t *testing.T) store.Store {
			return Open(t, "sqlite://"+filepath.Join(dir, "unmounted", "x.db"), store.Config{})
		},
		Remote: func(t *testing.T, prefix string) (string, []string) { return url(prefix), nil },
	}
}
