package schema

import (
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/trellisflow/trellis/embedded"
)

// PostgresIdleConns is how many idle connections Open keeps to PostgreSQL.
const PostgresIdleConns = 64

// Open connects to the database named by rawURL:
//
//   - postgres://… or postgresql://… — PostgreSQL through pgx and bun's
//     pgdialect; every query parameter pgx does not know is sent as a
//     run-time parameter (e.g. search_path=myschema);
//   - sqlite:///abs/path.db, sqlite://rel/path.db, sqlite::memory:,
//     file:path.db, or a path ending in .db / .sqlite — SQLite through
//     embedded.OpenSQLite (the embedded default, not for production).
func Open(rawURL string) (*bun.DB, error) {
	switch {
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		sqldb, err := sql.Open("pgx", withSimpleProtocol(rawURL))
		if err != nil {
			return nil, fmt.Errorf("schema: open PostgreSQL: %w", err)
		}
		// database/sql keeps 2 idle connections by default: under a runner
		// with tens of concurrent steps, every other step would pay for a
		// new PostgreSQL connection. Keep what the load used, for a while.
		sqldb.SetMaxIdleConns(PostgresIdleConns)
		sqldb.SetConnMaxIdleTime(5 * time.Minute)
		return bun.NewDB(sqldb, pgdialect.New()), nil
	case rawURL == "sqlite::memory:":
		return embedded.OpenSQLite(":memory:")
	case strings.HasPrefix(rawURL, "sqlite://"):
		return embedded.OpenSQLite(strings.TrimPrefix(rawURL, "sqlite://"))
	case strings.HasPrefix(rawURL, "sqlite:"):
		return embedded.OpenSQLite(strings.TrimPrefix(rawURL, "sqlite:"))
	case strings.HasPrefix(rawURL, "file:"), strings.HasSuffix(rawURL, ".db"), strings.HasSuffix(rawURL, ".sqlite"):
		return embedded.OpenSQLite(strings.TrimPrefix(rawURL, "file:"))
	}
	return nil, fmt.Errorf("schema: unsupported database URL %q: want postgres://…, sqlite://… or a .db file", redact(rawURL))
}

// withSimpleProtocol makes pgx send bun's queries with the simple protocol
// unless the URL chooses a mode. bun inlines every value into the SQL text,
// so pgx's default (prepare and cache each distinct statement) would spend
// an extra round trip preparing nearly every query and churn its cache.
func withSimpleProtocol(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL // pgx reports the problem
	}
	q := u.Query()
	if q.Get("default_query_exec_mode") == "" {
		q.Set("default_query_exec_mode", "simple_protocol")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// redact hides a password in a URL for error messages.
func redact(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		if at := strings.Index(rest, "@"); at >= 0 {
			return u[:i+3] + "…@" + rest[at+1:]
		}
	}
	return u
}
