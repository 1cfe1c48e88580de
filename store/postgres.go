//go:build !snapvisor_no_postgres

package store

import (
	"context"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgpassfile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/zap"
)

func init() {
	for _, scheme := range []string{"postgres", "postgresql"} {
		b := backend{
			scheme: scheme, order: 7, example: "postgres://user@host:port/db?sslmode=require&table=" + defaultSQLTable,
			credentials: "SNAPVISOR_POSTGRES_PASSWORD, or a line of PGPASSFILE",
			check:       checkPostgresURL, open: openPostgres, streamBuffer: pgStreamBuffer,
		}
		if scheme == "postgresql" {
			b.example = "" // the same store: listed once
		}
		register(b)
	}
}

// pgStreamBuffer: the chunk a Put buffers, the copy pgx encodes of it (the
// parameter) and the copy in its outgoing message (Bind), all live during
// the INSERT of a chunk. (Without a memory limit, the garbage of the copies
// doubles that at the heap's peak: 28 MiB measured for a 100 MiB stream.)
const pgStreamBuffer = 3 * sqlChunkSize

// pgParams are the URL parameters of postgres:// besides table: libpq's
// names, handled by pgx. Others are refused (pgx would send an unknown one to
// the server as a setting, which then refuses the connection).
var pgParams = []string{"sslmode", "sslrootcert", "sslcert", "sslkey", "sslsni", "connect_timeout", "application_name", "table"}

// pgSSLModes are the accepted values of sslmode (libpq's).
var pgSSLModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// checkPostgresURL checks a postgres:// URL: a user, a host, a valid port, a
// database, known parameters, and no password.
func checkPostgresURL(u *url.URL) error {
	if _, ok := u.User.Password(); ok {
		// The URL is in SNAPVISOR_REMOTES, which the service inherits and logs may show.
		return errors.New("a password does not belong in the URL; use SNAPVISOR_POSTGRES_PASSWORD (or _FILE), or a line of PGPASSFILE")
	}
	if u.Hostname() == "" {
		return errors.New("missing host: postgres://user@host:port/db")
	}
	if u.User.Username() == "" {
		return errors.New("missing user: postgres://user@host:port/db")
	}
	if u.Port() != "" {
		if err := checkPort(u.Port()); err != nil {
			return err
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db == "" || strings.Contains(db, "/") {
		return errors.New("expected one database name as the path: postgres://user@host:port/db")
	}
	q := u.Query()
	for k := range q {
		if !slices.Contains(pgParams, k) && !secretParam().MatchString(k) { // a credential: refused by parseRemote, naming the variables
			return fmt.Errorf("unknown parameter %q (accepted: %s)", k, strings.Join(pgParams, ", "))
		}
	}
	if m := q.Get("sslmode"); q.Has("sslmode") && !slices.Contains(pgSSLModes, m) {
		return fmt.Errorf("sslmode %q: expected one of %s", m, strings.Join(pgSSLModes, ", "))
	}
	if t := q.Get("connect_timeout"); q.Has("connect_timeout") {
		if n, err := strconv.Atoi(t); err != nil || n < 0 {
			return fmt.Errorf("connect_timeout %q: expected whole seconds", t)
		}
	}
	_, err := sqlTable(u)
	return err
}

// pgConnectTimeout bounds a connection attempt unless the URL's connect_timeout says otherwise.
const pgConnectTimeout = 15 * time.Second

// openPostgres opens a postgres:// store: a table pair in a PostgreSQL
// database, reached with pgx through database/sql. The password comes from
// SNAPVISOR_POSTGRES_PASSWORD or, when it is empty, from the first matching
// line of PGPASSFILE (default ~/.pgpass), as libpq reads it; PGPASSWORD is
// not read (it is not kept out of the service's environment). The other
// libpq variables (PGSSLMODE, PGSSLROOTCERT, ...) apply where the URL is
// silent. It connects at the first operation.
func openPostgres(_ context.Context, u *url.URL, cfg Config, log *zap.Logger) (Store, error) {
	name := Redact(u.String())
	table, err := sqlTable(u)
	if err != nil { // check refused it already
		return nil, &Error{Store: name, Op: "open", Err: err, Permanent: true}
	}
	cu := *u
	q := cu.Query()
	q.Del("table")
	cu.RawQuery = q.Encode()
	cu.Scheme = "postgres"
	pc, err := pgx.ParseConfig(cu.String())
	if err != nil {
		return nil, &Error{Store: name, Op: "open", Err: err, Permanent: true}
	}
	password := cfg.PostgresPassword.Reveal()
	if password == "" {
		password, err = pgPassfile(cfg.PostgresPassFile, pc)
		if err != nil {
			return nil, &Error{Store: name, Op: "open", Err: err, Permanent: true}
		}
	}
	pc.Password = password // set or cleared: never PGPASSWORD
	if pc.ConnectTimeout == 0 {
		pc.ConnectTimeout = pgConnectTimeout
	}
	if _, ok := pc.RuntimeParams["application_name"]; !ok {
		pc.RuntimeParams["application_name"] = "snapvisor"
	}
	db := stdlib.OpenDB(*pc)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := newSQLStore(name, db, pgDialect, table, scrubber(password), pgStreamBuffer)
	log.Debug("postgres store opened", zap.String("remote", name), zap.String("table", table))
	return s, nil
}

// pgPassfile returns the password of the first line of the libpq password
// file (file, or ~/.pgpass) matching the connection; "" when the default
// file does not exist or no line matches. A file named by PGPASSFILE must
// be readable.
func pgPassfile(file string, pc *pgx.ConnConfig) (string, error) {
	explicit := file != ""
	if !explicit {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", nil
		}
		file = filepath.Join(home, ".pgpass")
	}
	pf, err := pgpassfile.ReadPassfile(file)
	if err != nil {
		if !explicit && errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", fmt.Errorf("PGPASSFILE: %w", err)
	}
	host := pc.Host
	if strings.HasPrefix(host, "/") {
		host = "localhost" // libpq's name for a Unix socket
	}
	return pf.FindPassword(host, strconv.Itoa(int(pc.Port)), pc.Database, pc.User), nil
}

// pgDialect is PostgreSQL's: keys in the "C" collation (bytewise order, as
// List promises), REPEATABLE READ for a Get, READ COMMITTED (the default) for
// writes, and the tables created under an advisory lock (two processes
// creating them at once would otherwise collide in the catalog).
var pgDialect = sqlDialect{
	schema: func(o, c string) []string {
		idx := `"` + strings.Trim(c, `"`) + `_key"`
		return []string{
			`CREATE TABLE IF NOT EXISTS ` + o + ` (
				key text COLLATE "C" PRIMARY KEY,
				size bigint NOT NULL,
				modified timestamptz NOT NULL,
				upload text NOT NULL)`,
			`CREATE TABLE IF NOT EXISTS ` + c + ` (
				upload text NOT NULL,
				n integer NOT NULL,
				key text COLLATE "C" NOT NULL,
				data bytea NOT NULL,
				PRIMARY KEY (upload, n))`,
			`CREATE INDEX IF NOT EXISTS ` + idx + ` ON ` + c + ` (key)`,
		}
	},
	lockSchema: `SELECT pg_advisory_xact_lock(7428309151)`,
	exists: func(ctx context.Context, db *sql.DB, o, c string) (bool, error) {
		var ok bool
		err := db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL`,
			`"`+o+`"`, `"`+c+`"`).Scan(&ok)
		return ok, err
	},
	readTx:    sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	writeTx:   sql.TxOptions{Isolation: sql.LevelReadCommitted},
	permanent: pgPermanent,
}

// pgPermanent: refused credentials or privileges, a missing database, a
// server certificate that does not verify.
func pgPermanent(err error) bool {
	var (
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
	)
	if errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "28"), // invalid authorization (28P01: wrong password)
			pe.Code == "42501", // insufficient privilege
			pe.Code == "3D000": // no such database
			return true
		}
	}
	return false
}
