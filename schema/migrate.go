package schema

import (
	"context"
	"embed"
	"fmt"
	"sync"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/migrate"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migrations are the embedded migrations, read with Discover.
func Migrations() (*migrate.Migrations, error) {
	ms := migrate.NewMigrations()
	if err := ms.Discover(migrationFS); err != nil {
		return nil, fmt.Errorf("schema: read migrations: %w", err)
	}
	return ms, nil
}

// templateData fills the type names the two dialects spell differently.
func templateData(db *bun.DB) (map[string]string, error) {
	switch db.Dialect().Name() {
	case dialect.PG:
		return map[string]string{"Timestamp": "TIMESTAMPTZ"}, nil
	case dialect.SQLite:
		return map[string]string{"Timestamp": "TIMESTAMP"}, nil
	}
	return nil, fmt.Errorf("schema: unsupported dialect %s", db.Dialect().Name())
}

// Migrator is a bun migrator over the embedded migrations for db.
func Migrator(db *bun.DB) (*migrate.Migrator, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	data, err := templateData(db)
	if err != nil {
		return nil, err
	}
	return migrate.NewMigrator(db, ms,
		migrate.WithTableName("trellis_migrations"),
		migrate.WithLocksTableName("trellis_migration_locks"),
		migrate.WithMarkAppliedOnSuccess(true),
		migrate.WithTemplateData(data)), nil
}

// sqliteMu serializes migrations of SQLite databases within the process.
var sqliteMu sync.Mutex

// Migrate applies every migration db lacks and returns their names. It is
// safe to call from several workers at once: on PostgreSQL they take turns
// on a session advisory lock scoped to the current schema, so the second
// finds nothing left to do. The lock holds one connection of db's pool while
// the migrations use another, so db must allow at least two. On SQLite the
// turns are taken within the process only.
func Migrate(ctx context.Context, db *bun.DB) ([]string, error) {
	return run(ctx, db, "migrate", (*migrate.Migrator).Migrate)
}

// Rollback undoes the last group of applied migrations and returns their names.
func Rollback(ctx context.Context, db *bun.DB) ([]string, error) {
	return run(ctx, db, "rollback", (*migrate.Migrator).Rollback)
}

// run takes the migration lock, makes sure bun's migration tables exist and
// moves the schema one way; it returns the names of the migrations applied
// or undone.
func run(ctx context.Context, db *bun.DB, verb string,
	move func(*migrate.Migrator, context.Context, ...migrate.MigrationOption) (*migrate.MigrationGroup, error)) ([]string, error) {
	m, err := Migrator(db)
	if err != nil {
		return nil, err
	}
	unlock, err := lock(ctx, db)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := m.Init(ctx); err != nil {
		return nil, fmt.Errorf("schema: create migration tables: %w", err)
	}
	group, err := move(m, ctx)
	if err != nil {
		return nil, fmt.Errorf("schema: %s: %w", verb, err)
	}
	var names []string
	for _, mig := range group.Migrations {
		names = append(names, mig.Name)
	}
	return names, nil
}

// lock takes the migration lock of db. On PostgreSQL it is an advisory lock
// held by one dedicated connection for the whole migration, keyed by the
// current schema so that separate schemas migrate independently.
func lock(ctx context.Context, db *bun.DB) (func(), error) {
	if db.Dialect().Name() != dialect.PG {
		sqliteMu.Lock()
		return sqliteMu.Unlock, nil
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("schema: migration lock: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(hashtext('trellis.migrate.' || current_schema()))"); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("schema: migration lock: %w", err)
	}
	return func() {
		// Unlock on a fresh context: the caller's may be done, and a lock
		// left behind would block every later migration on this connection.
		_, _ = conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock(hashtext('trellis.migrate.' || current_schema()))")
		_ = conn.Close()
	}, nil
}
