//go:build !snapvisor_no_postgres || !snapvisor_no_sqlite

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// The SQL stores (postgres.go, sqlite.go) share this implementation through
// database/sql: one schema, the same statements (placeholders $1, $2, ...
// rewritten by the dialect where needed), the same transactions.
//
// Schema, per objects table T (URL parameter table, default snapvisor_objects):
//
//	T        (key PRIMARY KEY, size, modified, upload)  one row per visible object
//	T_chunks (upload, n, key, data; PRIMARY KEY (upload, n), INDEX (key))
//
// An object's content is the chunk rows of its upload id, n = 0, 1, ...,
// each sqlChunkSize bytes but the last. Chunk rows rather than one large
// value or a PostgreSQL large object: both databases store them alike, a
// Put buffers one chunk, and a Get holds one chunk at a time (a bytea or blob
// value is always read whole).
//
// Put runs in ONE transaction: the chunks are inserted under a fresh random
// upload id, then the object row is upserted (pointing at that upload), then
// the chunks of the key that belong to another upload (the replaced
// version) are deleted, then COMMIT. Anything that fails (the source, a
// size mismatch, the connection, the server, the disk, a cancelled context)
// rolls back: nothing becomes visible and nothing is left behind. Two
// writers of the same key (two entrypoints) under PostgreSQL's READ
// COMMITTED: the second upsert waits for the first writer's row lock until
// it commits; its DELETE then runs on a snapshot that sees the first
// writer's chunks and removes them, and never sees the other's uncommitted
// ones. The last to commit wins, whole, and no chunk row is orphaned.
// SQLite runs one write transaction at a time anyway (BEGIN IMMEDIATE).
//
// Get reads inside one read transaction (REPEATABLE READ on PostgreSQL, a
// WAL read transaction on SQLite), so a replace or delete committed meanwhile
// cannot mix versions; the chunks' count, order and total size are checked
// against the object row before the first byte and again while streaming: a
// chunk row deleted by hand is a clear (permanent) error, never a short read
// taken as complete.

// sqlChunkSize is the size of one chunk row: large enough that the per-row
// and per-statement costs vanish next to the data (26 statements per 100
// MiB), small enough that the one chunk a Put or a Get holds (and the copies
// the driver makes of it) stays far below the 64 MiB memory bound. 4 KiB
// short of 4 MiB: pgx reads a message into a buffer of the next power of
// two, and a chunk of exactly 4 MiB plus its message header would take 8.
const sqlChunkSize = 4<<20 - 4<<10

// defaultSQLTable is the objects table when the URL has no table parameter.
const defaultSQLTable = "snapvisor_objects"

// sqlTableRE is a plain identifier: the objects table's name, also the stem of
// the chunk table's and its index's (T_chunks_key), within PostgreSQL's 63
// bytes. Lower case only: the statements quote it, and a quoted name is
// the same as the unquoted one a user types in psql only in lower case.
var sqlTableRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`) })

// errDamaged marks an object whose chunk rows do not add up to its size.
var errDamaged = errors.New("object damaged")

// sqlTable returns the objects table named by the URL's table parameter
// (defaultSQLTable if none), checked.
func sqlTable(u *url.URL) (string, error) {
	t := u.Query().Get("table")
	if !u.Query().Has("table") {
		return defaultSQLTable, nil
	}
	if !sqlTableRE().MatchString(t) {
		return "", fmt.Errorf("table %q: expected a plain lower-case identifier (letters, digits, _; at most 48 characters), e.g. %s", t, defaultSQLTable)
	}
	return t, nil
}

// sqlDialect is what differs between the SQL backends.
type sqlDialect struct {
	// schema returns the statements creating the tables if they do not exist.
	schema func(objects, chunks string) []string
	// lockSchema, if set, runs first in the schema transaction (serialises
	// two processes creating the tables at once).
	lockSchema string
	// exists, if set, reports whether both tables exist (then the schema is
	// not touched: a role without CREATE can use tables made for it).
	exists func(ctx context.Context, db *sql.DB, objects, chunks string) (bool, error)
	// placeholder rewrites $n into the driver's placeholder; nil: $n as is.
	placeholder func(q string) string
	readTx      sql.TxOptions // Get's transaction: one consistent snapshot
	writeTx     sql.TxOptions // Put's and Delete's
	// permanent reports driver errors that retrying cannot help.
	permanent func(err error) bool
	// prepare, if set, runs before the schema is set up (SQLite: the
	// directory exists); its errors are the store's.
	prepare func() error
}

// sqlStore is a Store on a SQL database (PostgreSQL, SQLite).
type sqlStore struct {
	name        string
	db          *sql.DB
	d           sqlDialect
	objects     string // quoted table names
	chunks      string
	scrub       func(string) string
	streamBuf   int64
	chunkSize   int
	q           sqlQueries
	objectsName string // unquoted, for exists
	chunksName  string
	mu          sync.Mutex
	schemaReady bool
}

// sqlQueries are the statements, built once per store.
type sqlQueries struct {
	insertChunk, upsert, deleteOld, object, chunkStats, chunk, list, deleteObject, deleteChunks string
}

var _ Store = (*sqlStore)(nil)

// newSQLStore returns the store on db for the objects table.
func newSQLStore(name string, db *sql.DB, d sqlDialect, table string, scrub func(string) string, streamBuf int64) *sqlStore {
	s := &sqlStore{name: name, db: db, d: d, scrub: scrub, streamBuf: streamBuf, chunkSize: sqlChunkSize,
		objectsName: table, chunksName: table + "_chunks"}
	s.objects, s.chunks = `"`+s.objectsName+`"`, `"`+s.chunksName+`"`
	p := d.placeholder
	if p == nil {
		p = func(q string) string { return q }
	}
	o, c := s.objects, s.chunks
	s.q = sqlQueries{
		insertChunk: p(`INSERT INTO ` + c + ` (upload, n, key, data) VALUES ($1, $2, $3, $4)`),
		upsert: p(`INSERT INTO ` + o + ` (key, size, modified, upload) VALUES ($1, $2, $3, $4)
			ON CONFLICT (key) DO UPDATE SET size = excluded.size, modified = excluded.modified, upload = excluded.upload`),
		deleteOld:    p(`DELETE FROM ` + c + ` WHERE key = $1 AND upload <> $2`),
		object:       p(`SELECT size, upload FROM ` + o + ` WHERE key = $1`),
		chunkStats:   p(`SELECT count(*), coalesce(sum(length(data)), 0), coalesce(max(n), -1) FROM ` + c + ` WHERE upload = $1`),
		chunk:        p(`SELECT data FROM ` + c + ` WHERE upload = $1 AND n = $2`),
		list:         p(`SELECT key, size, modified FROM ` + o + ` WHERE key >= $1 ORDER BY key`),
		deleteObject: p(`DELETE FROM ` + o + ` WHERE key = $1`),
		deleteChunks: p(`DELETE FROM ` + c + ` WHERE key = $1`),
	}
	return s
}

func (s *sqlStore) Name() string        { return s.name }
func (s *sqlStore) Close() error        { return s.db.Close() }
func (s *sqlStore) streamBuffer() int64 { return s.streamBuf }

func (s *sqlStore) fail(op, key string, err error) error {
	e := &Error{Store: s.name, Op: op, Key: key, Err: err, scrub: s.scrub}
	switch {
	case errors.Is(err, errBadKey), errors.Is(err, errDamaged), errors.Is(err, fs.ErrPermission):
		e.Permanent = true
	case s.d.permanent != nil && s.d.permanent(err):
		e.Permanent = true
	}
	return e
}

// ready sets up the schema once (lazily: Open connects to nothing). A failure
// is returned and tried again at the next operation.
func (s *sqlStore) ready(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.schemaReady {
		return nil
	}
	if s.d.prepare != nil {
		if err := s.d.prepare(); err != nil {
			return err
		}
	}
	if s.d.exists != nil {
		ok, err := s.d.exists(ctx, s.db, s.objectsName, s.chunksName)
		if err != nil {
			return err
		}
		if ok {
			s.schemaReady = true
			return nil
		}
	}
	err := s.inTx(ctx, s.d.writeTx, func(tx *sql.Tx) error {
		if s.d.lockSchema != "" {
			if _, err := tx.ExecContext(ctx, s.d.lockSchema); err != nil {
				return err
			}
		}
		for _, q := range s.d.schema(s.objects, s.chunks) {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("creating the tables %s and %s: %w", s.objectsName, s.chunksName, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.schemaReady = true
	return nil
}

// inTx runs fn in a transaction, committed if fn succeeds, else rolled back.
func (s *sqlStore) inTx(ctx context.Context, opts sql.TxOptions, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &opts)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // the error that matters is fn's; a dead connection is discarded by database/sql
		return err
	}
	return tx.Commit()
}

func (s *sqlStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkKey(key); err != nil {
		return s.fail("put", key, err)
	}
	if err := s.ready(ctx); err != nil {
		return s.fail("put", key, err)
	}
	// One chunk buffered; a small object of known size needs less (the
	// .sha256 and lease objects). At least one byte: exactly probes the end.
	n := int64(s.chunkSize)
	if size >= 0 && size < n {
		n = max(size, 1)
	}
	buf := make([]byte, n)
	upload := randomHex(16)
	src := exactly(ctxReader{ctx, r}, size)
	err := s.inTx(ctx, s.d.writeTx, func(tx *sql.Tx) error {
		var total int64
		for i := 0; ; i++ {
			m, rerr := io.ReadFull(src, buf)
			if m > 0 {
				if _, err := tx.ExecContext(ctx, s.q.insertChunk, upload, i, key, buf[:m]); err != nil {
					return err
				}
				total += int64(m)
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF { // the source's end (exactly reports a short one as an error)
				break
			}
			if rerr != nil {
				return rerr
			}
		}
		if size >= 0 && total != size {
			return errShort(total, size)
		}
		if _, err := tx.ExecContext(ctx, s.q.upsert, key, total, time.Now().UTC(), upload); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q.deleteOld, key, upload)
		return err
	})
	if err != nil {
		return s.fail("put", key, ctxErr(ctx, err))
	}
	return nil
}

// ctxErr adds the context's error to err when the context has ended (the
// drivers report a cancelled statement in their own words).
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

func (s *sqlStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, s.fail("get", key, err)
	}
	if err := s.ready(ctx); err != nil {
		return nil, s.fail("get", key, err)
	}
	tx, err := s.db.BeginTx(ctx, &s.d.readTx)
	if err != nil {
		return nil, s.fail("get", key, ctxErr(ctx, err))
	}
	r := &sqlReader{s: s, ctx: ctx, tx: tx, key: key}
	if err := r.open(); err != nil {
		_ = tx.Rollback()
		return nil, s.fail("get", key, ctxErr(ctx, err))
	}
	return r, nil
}

// sqlReader streams an object's chunks inside the read transaction tx,
// checking each chunk's presence and the total size against the object row.
type sqlReader struct {
	s      *sqlStore
	ctx    context.Context
	tx     *sql.Tx
	key    string
	upload string
	size   int64 // from the object row
	count  int   // chunk rows
	n      int   // the next chunk
	read   int64 // bytes of the chunks fetched so far
	rows   *sql.Rows
	cur    []byte // the unread rest of the current chunk, owned by rows
	err    error
}

// open reads the object row and checks its chunk rows add up to it.
func (r *sqlReader) open() error {
	err := r.tx.QueryRowContext(r.ctx, r.s.q.object, r.key).Scan(&r.size, &r.upload)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w (no such object)", fs.ErrNotExist)
	}
	if err != nil {
		return err
	}
	var sum int64
	var last int
	if err := r.tx.QueryRowContext(r.ctx, r.s.q.chunkStats, r.upload).Scan(&r.count, &sum, &last); err != nil {
		return err
	}
	if last != r.count-1 || sum != r.size {
		return fmt.Errorf("%w: its row says %d bytes, its chunk rows hold %d bytes in %d rows numbered up to %d, not 0, 1, 2, ... without a gap (rows deleted or changed by hand?)",
			errDamaged, r.size, sum, r.count, last)
	}
	return nil
}

func (r *sqlReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for len(r.cur) == 0 {
		if r.n == r.count {
			if r.read != r.size {
				r.err = r.s.fail("get", r.key, fmt.Errorf("%w: read %d bytes of %d", errDamaged, r.read, r.size))
				return 0, r.err
			}
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			r.err = r.s.fail("get", r.key, ctxErr(r.ctx, err))
			return 0, r.err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// next fetches chunk r.n. Its bytes stay the driver's (sql.RawBytes, no
// copy) until the chunk is read and its rows are closed: one chunk is held
// at a time.
func (r *sqlReader) next() error {
	if err := r.closeRows(); err != nil {
		return err
	}
	rows, err := r.tx.QueryContext(r.ctx, r.s.q.chunk, r.upload, r.n)
	if err != nil {
		return err
	}
	r.rows = rows
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return fmt.Errorf("%w: chunk %d of %d is missing", errDamaged, r.n, r.count)
	}
	var data sql.RawBytes
	if err := rows.Scan(&data); err != nil {
		return err
	}
	r.read += int64(len(data))
	if len(data) == 0 || r.read > r.size {
		return fmt.Errorf("%w: chunk %d of %d makes %d bytes of %d", errDamaged, r.n, r.count, r.read, r.size)
	}
	r.cur = data
	r.n++
	return nil
}

func (r *sqlReader) closeRows() error {
	r.cur = nil
	if r.rows == nil {
		return nil
	}
	err := r.rows.Close()
	r.rows = nil
	return err
}

// Close ends the read transaction.
func (r *sqlReader) Close() error {
	_ = r.closeRows()
	if err := r.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return r.s.fail("get", r.key, err)
	}
	return nil
}

func (s *sqlStore) List(ctx context.Context, prefix string) ([]Object, error) {
	if err := s.ready(ctx); err != nil {
		return nil, s.fail("list", prefix, err)
	}
	// A range scan from prefix, stopping at the first key without it: no
	// LIKE pattern (its wildcards and SQLite's case folding) involved. Keys
	// compare bytewise (COLLATE "C" on PostgreSQL, BINARY on SQLite), as Go's.
	rows, err := s.db.QueryContext(ctx, s.q.list, prefix)
	if err != nil {
		return nil, s.fail("list", prefix, ctxErr(ctx, err))
	}
	defer rows.Close()
	var out []Object
	for rows.Next() {
		var o Object
		if err := rows.Scan(&o.Key, &o.Size, &o.Modified); err != nil {
			return nil, s.fail("list", prefix, err)
		}
		if !strings.HasPrefix(o.Key, prefix) {
			break
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("list", prefix, ctxErr(ctx, err))
	}
	return out, nil
}

func (s *sqlStore) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return s.fail("delete", key, err)
	}
	if err := s.ready(ctx); err != nil {
		return s.fail("delete", key, err)
	}
	err := s.inTx(ctx, s.d.writeTx, func(tx *sql.Tx) error {
		// The object row first: a Put of the key in progress holds its lock,
		// and its chunks are then deleted on a snapshot that sees them.
		if _, err := tx.ExecContext(ctx, s.q.deleteObject, key); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q.deleteChunks, key)
		return err
	})
	if err != nil {
		return s.fail("delete", key, ctxErr(ctx, err))
	}
	return nil
}
