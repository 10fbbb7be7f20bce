package embedded

import (
	"database/sql"
	"fmt"
	"net/url"
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	_ "modernc.org/sqlite" // the pure-Go driver, registered as "sqlite"
)

// OpenSQLite opens (creating if needed) the SQLite database file at path
// through bun's sqlitedialect, with foreign keys on (so deletes cascade),
// WAL journaling and a busy timeout. path ":memory:" is a private in-memory
// database. For the examples, `trellis dev` and tests; production uses
// PostgreSQL.
//
// The pool holds one connection: SQLite has one writer at a time, and one
// connection turns contention into queueing instead of "database is locked".
// Callers must therefore not use the *bun.DB while they hold one of its
// transactions open.
func OpenSQLite(path string) (*bun.DB, error) {
	if path == "" {
		return nil, fmt.Errorf("embedded: SQLite path is empty")
	}
	q := url.Values{}
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Set("_txlock", "immediate")
	if path != ":memory:" {
		q.Add("_pragma", "journal_mode(WAL)")
	}
	dsn := "file:" + strings.TrimPrefix(path, "file:") + "?" + q.Encode()
	sqldb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("embedded: open SQLite %s: %w", path, err)
	}
	sqldb.SetMaxOpenConns(1)
	sqldb.SetMaxIdleConns(1)
	sqldb.SetConnMaxLifetime(0)
	sqldb.SetConnMaxIdleTime(0)
	if err := sqldb.Ping(); err != nil {
		_ = sqldb.Close()
		return nil, fmt.Errorf("embedded: open SQLite %s: %w", path, err)
	}
	return bun.NewDB(sqldb, sqlitedialect.New()), nil
}
