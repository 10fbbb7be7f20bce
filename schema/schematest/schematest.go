// Package schematest gives tests a fresh, migrated database: a PostgreSQL
// schema of its own (DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable) created and
// dropped by the test, or a SQLite file in the test's temporary directory.
// Each runs one test body against both: the conformance suite of the steps.
package schematest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/schema"
)

// DefaultURL is the PostgreSQL the tests use when DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Each runs fn as two parallel subtests, "postgres" and "sqlite", each on a
// fresh migrated database.
func Each(t *testing.T, fn func(t *testing.T, db *bun.DB)) {
	t.Helper()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, Postgres(t))
	})
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, SQLite(t))
	})
}

// Postgres returns a migrated database whose search_path is a schema made
// for this test and dropped at cleanup.
func Postgres(t testing.TB) *bun.DB {
	t.Helper()
	db, err := schema.Open(PostgresURL(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	_, err = schema.Migrate(context.Background(), db)
	require.NoError(t, err)
	return db
}

// PostgresURL creates an empty schema for this test (dropped at cleanup)
// and returns a URL whose connections use it.
func PostgresURL(t testing.TB) string {
	t.Helper()
	admin := adminDB(t)
	name := SchemaName(t.Name())
	_, err := admin.ExecContext(context.Background(), "CREATE SCHEMA "+name)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := admin.ExecContext(context.Background(), "DROP SCHEMA IF EXISTS "+name+" CASCADE")
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	u, err := url.Parse(baseURL())
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// SQLite returns a migrated SQLite database in a file of the test's
// temporary directory.
func SQLite(t testing.TB) *bun.DB {
	t.Helper()
	db, err := schema.Open(filepath.Join(t.TempDir(), "trellis.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	_, err = schema.Migrate(context.Background(), db)
	require.NoError(t, err)
	return db
}

var nonName = regexp.MustCompile(`[^a-z0-9]+`)

// SchemaName turns a test name into a unique, valid PostgreSQL schema name.
func SchemaName(testName string) string {
	s := nonName.ReplaceAllString(strings.ToLower(testName), "_")
	if len(s) > 48 {
		s = s[len(s)-48:]
	}
	return fmt.Sprintf("t_%s_%08x", strings.Trim(s, "_"), rand.Uint32())
}

func baseURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

var (
	adminOnce sync.Once
	admin     *bun.DB
	adminErr  error
)

func adminDB(t testing.TB) *bun.DB {
	t.Helper()
	adminOnce.Do(func() {
		admin, adminErr = schema.Open(baseURL())
		if adminErr == nil {
			adminErr = admin.PingContext(context.Background())
		}
	})
	require.NoError(t, adminErr, "the tests need PostgreSQL at DATABASE_URL (default %s); `make test` starts it", DefaultURL)
	return admin
}
