// Package sqlite is the embedded backend of store.Store: one SQLite file,
// through the pure-Go modernc.org/sqlite driver, so the lode binary needs no
// cgo and no database server.
//
// SQLite takes one writer at a time. The Store therefore writes through a
// single connection whose transactions begin IMMEDIATE: writers in this
// process queue on that connection, writers in other processes wait on the
// file lock (busy_timeout), and none fails with SQLITE_BUSY halfway through
// a transaction. Reads run on a separate pool and, in WAL mode, never wait
// for the writer.
//
// Create methods store the IDs and times they are given. A zero state or
// creation time is filled in (active pool, ready node, queued job, the wall
// clock), and set on the argument too, as are its times cut to the
// millisecond in UTC, so that the argument equals what a later read returns.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"lode.dev/lode/internal/store"
)

var _ store.Store = (*Store)(nil)

// busyTimeout is how long a connection waits for another process's lock
// before giving up with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Store is a store.Store in one SQLite database file.
type Store struct {
	w *sql.DB // one connection: every write transaction
	r *sql.DB // a pool of read-only connections
}

// Open opens the database at path, creating it (mode 0600, in a directory
// created with mode 0700) when it does not exist, and brings its schema up to
// date. A database written by a newer version of Lode is refused with an
// error wrapping ErrSchemaNewer.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: no database path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite: database path %q: must not contain '?' or '#'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	// Create the file ourselves so that it never exists with looser
	// permissions; SQLite gives its -wal and -shm files the same mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}

	params := url.Values{}
	params.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	params.Set("_foreign_keys", "on")
	params.Set("_synchronous", "NORMAL") // durable enough with WAL: a crash loses at most the last commits, never consistency
	w, err := sql.Open("sqlite", path+"?"+params.Encode()+"&_journal_mode=WAL&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)

	s := &Store{w: w}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}

	// The read pool opens after the writer has switched the file to WAL.
	params.Set("_query_only", "on")
	r, err := sql.Open("sqlite", path+"?"+params.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	s.r = r
	return s, nil
}

// Close closes the database. It is safe to call more than once.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// write runs fn in one write transaction and commits it when fn returns nil.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return dbErr(err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return dbErr(err)
	}
	return dbErr(tx.Commit())
}

// read runs fn in one read transaction, so that what it reads in several
// queries is one consistent snapshot.
func (s *Store) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return dbErr(err)
	}
	defer tx.Rollback()
	return dbErr(fn(tx))
}

// dbErr maps SQLite's errors to the store's at the edge: a unique or
// primary-key violation is store.ErrConflict, a foreign-key violation
// store.ErrNotFound. Other errors, and errors mapped already, pass unchanged.
func dbErr(err error) error {
	var (
		se *sqlite.Error
		be *backendError
	)
	if err == nil || errors.As(err, &be) || !errors.As(err, &se) {
		return err
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return &backendError{kind: store.ErrConflict, err: err}
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return &backendError{kind: store.ErrNotFound, err: err}
	}
	return &backendError{err: err}
}

// backendError is an error of SQLite's as the store reports it: wrapping
// the store's sentinel it maps to, if any, and SQLite's own error.
type backendError struct {
	kind error // a store sentinel, or nil
	err  error
}

func (e *backendError) Error() string {
	if e.kind != nil {
		return e.kind.Error() + ": " + e.err.Error()
	}
	return "sqlite: " + e.err.Error()
}

func (e *backendError) Unwrap() []error {
	if e.kind != nil {
		return []error{e.kind, e.err}
	}
	return []error{e.err}
}

// notFound turns sql.ErrNoRows into store.ErrNotFound, naming what was
// missing.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf(format+": %w", append(args, store.ErrNotFound)...)
	}
	return err
}

// Times are stored as BIGINT milliseconds since the Unix epoch, NULL where
// the time is not set.

func msec(t time.Time) int64 { return t.UnixMilli() }

func nullMsec(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func fromMsec(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func fromNullMsec(ms sql.NullInt64) time.Time {
	if !ms.Valid {
		return time.Time{}
	}
	return fromMsec(ms.Int64)
}

// utc drops the monotonic reading and sub-millisecond part of a time the way
// the database will, so that what a method sets on its argument is what a
// later read returns.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return fromMsec(t.UnixMilli())
}

// nowOr returns t, or the wall clock when the caller passed no time.
func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return utc(t)
}

// placeholders returns "?, ?, ?" for n arguments.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// scanner is what *sql.Row and *sql.Rows share.
type scanner interface {
	Scan(dest ...any) error
}

// collect scans every row with scan and closes rows.
func collect[T any](rows *sql.Rows, scan func(scanner) (*T, error)) ([]*T, error) {
	defer rows.Close()
	var out []*T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, dbErr(err)
		}
		out = append(out, v)
	}
	return out, dbErr(rows.Err())
}

// queryStrings runs a query of one text column and returns its values.
func queryStrings(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
