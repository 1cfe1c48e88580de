//go:build !snapvisor_no_sqlite

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

func init() {
	register(backend{
		scheme: "sqlite", order: 8, example: "sqlite:///path/to/file.db",
		check: checkSQLiteURL, open: openSQLite, streamBuffer: sqliteStreamBuffer,
	})
}

// sqliteStreamBuffer: the chunk a Put buffers, the copy SQLite binds (C
// memory, outside the Go heap) and its page cache (2 MiB by default).
const sqliteStreamBuffer = 2*sqlChunkSize + 2<<20

// sqliteBusyTimeout is how long a write waits for another writer's lock
// (another process's Put, which holds it for its whole upload) before it
// fails (and is retried by SNAPVISOR_REMOTE_RETRIES).
const sqliteBusyTimeout = time.Minute

// sqliteWALLimit truncates the write-ahead log back to this size after a
// checkpoint (a Put's whole content passes through it).
const sqliteWALLimit = 64 << 20

// checkSQLiteURL checks a sqlite:// URL: an absolute file path, no host, only
// the table parameter.
func checkSQLiteURL(u *url.URL) error {
	if (u.Host != "" && u.Host != "localhost") || u.User != nil {
		return errors.New("sqlite URLs take an absolute file path: sqlite:///path/to/file.db")
	}
	if u.Path == "" || u.Path[len(u.Path)-1] == '/' {
		return errors.New("missing database file: sqlite:///path/to/file.db")
	}
	for k := range u.Query() {
		if k != "table" {
			return fmt.Errorf("unknown parameter %q (accepted: table)", k)
		}
	}
	_, err := sqlTable(u)
	return err
}

// openSQLite opens a sqlite:// store: a table pair in a SQLite database file,
// through modernc.org/sqlite (pure Go: the binary stays static). The file's
// directory must exist (a missing one is an unmounted volume more often than
// not: the operations fail, and are retried, until it is there); a missing
// file is created (mode 0600), like file:// creates its directory. The
// database is in WAL mode with synchronous=FULL: readers (a Get) never wait
// for a writer and see the last committed version, and a committed Put
// survives a power loss. It is for one writer at a time: a Put holds the
// file's write lock for its whole upload, and another writer (another
// process, or this one's lease renewal) waits up to sqliteBusyTimeout for it.
func openSQLite(_ context.Context, u *url.URL, _ Config, log *zap.Logger) (Store, error) {
	name := Redact(u.String())
	table, err := sqlTable(u)
	if err != nil { // check refused it already
		return nil, &Error{Store: name, Op: "open", Err: err, Permanent: true}
	}
	file := filepath.Clean(u.Path)
	dsn := "file:" + (&url.URL{Path: file}).EscapedPath() + "?" + url.Values{
		"_pragma": {
			"busy_timeout(" + strconv.Itoa(int(sqliteBusyTimeout/time.Millisecond)) + ")",
			"journal_mode(WAL)",
			"synchronous(FULL)",
			"journal_size_limit(" + strconv.Itoa(sqliteWALLimit) + ")",
		},
		"_txlock":      {"immediate"}, // writes take the lock at BEGIN: no deadlocked lock upgrade
		"_time_format": {"sqlite"},
	}.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, &Error{Store: name, Op: "open", Err: err, Permanent: true}
	}
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(5 * time.Minute)
	d := sqliteDialect
	d.prepare = func() error { return sqlitePrepare(file) }
	log.Debug("sqlite store opened", zap.String("remote", name), zap.String("table", table))
	return newSQLStore(name, db, d, table, nil, sqliteStreamBuffer), nil
}

// sqlitePrepare checks that file's directory exists and creates the file
// (0600) if it does not exist.
func sqlitePrepare(file string) error {
	dir := filepath.Dir(file)
	if fi, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("directory %s does not exist: create it or mount its volume (only the database file is created)", dir)
		}
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		return f.Close()
	}
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	return err
}

// placeholderRE finds PostgreSQL's $n placeholders; SQLite's equivalent is ?n.
var placeholderRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\$(\d+)`) })

// sqliteDialect is SQLite's: BINARY collation (bytewise) for keys, one
// writer at a time (BEGIN IMMEDIATE through _txlock), a plain deferred
// transaction for a Get (a consistent WAL snapshot from its first read).
var sqliteDialect = sqlDialect{
	schema: func(o, c string) []string {
		return []string{
			`CREATE TABLE IF NOT EXISTS ` + o + ` (
				key TEXT NOT NULL PRIMARY KEY,
				size INTEGER NOT NULL,
				modified TIMESTAMP NOT NULL,
				upload TEXT NOT NULL)`,
			`CREATE TABLE IF NOT EXISTS ` + c + ` (
				upload TEXT NOT NULL,
				n INTEGER NOT NULL,
				key TEXT NOT NULL,
				data BLOB NOT NULL,
				PRIMARY KEY (upload, n))`,
			`CREATE INDEX IF NOT EXISTS "` + c[1:len(c)-1] + `_key" ON ` + c + ` (key)`,
		}
	},
	// Checked first, without the write lock: creating the tables waits
	// for it, which another writer's Put may hold for minutes.
	exists: func(ctx context.Context, db *sql.DB, o, c string) (bool, error) {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?1, ?2)`, o, c).Scan(&n)
		return n == 2, err
	},
	placeholder: func(q string) string { return placeholderRE().ReplaceAllString(q, "?$1") },
	readTx:      sql.TxOptions{ReadOnly: true},
	permanent:   sqlitePermanent,
}

// sqlitePermanent: a file that is not a database, or a damaged, read-only
// or forbidden one.
func sqlitePermanent(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH:
		return true
	}
	return false
}
