package schema_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/schema/schematest"
)

func TestMigrateUpDownUp(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		// Each migrated already: a second Migrate has nothing to do.
		names, err := schema.Migrate(ctx, db)
		require.NoError(t, err)
		require.Empty(t, names)

		names, err = schema.Rollback(ctx, db)
		require.NoError(t, err)
		require.ElementsMatch(t, []string{"20261126000001", "20261126000002", "20261127000003", "20261128170002", "20261201170001"}, names)
		_, err = db.NewSelect().Model((*schema.Plan)(nil)).Count(ctx)
		require.Error(t, err, "the tables are gone after rollback")

		names, err = schema.Migrate(ctx, db)
		require.NoError(t, err)
		require.Equal(t, []string{"20261126000001", "20261126000002", "20261127000003", "20261128170002", "20261201170001"}, names)
		n, err := db.NewSelect().Model((*schema.Plan)(nil)).Count(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

// The delivery columns: rows stored before them come out sent or
// delivered when they were, and undelivered otherwise, so that a
// redelivery finds the ones never sent.
func TestDeliveryColumnsMigration(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		exec := func(file string) {
			t.Helper()
			raw, err := os.ReadFile(filepath.Join("migrations", file))
			require.NoError(t, err)
			for _, stmt := range strings.Split(string(raw), "--bun:split") {
				_, err := db.ExecContext(ctx, stmt)
				require.NoError(t, err, stmt)
			}
		}
		exec("20261128170002_delivery.tx.down.sql")
		for _, q := range []string{
			"INSERT INTO email_outbox (id, to_address, subject, body, sent_at) VALUES ('e-sent', 'a@example.com', 's', 'b', CURRENT_TIMESTAMP)",
			"INSERT INTO email_outbox (id, to_address, subject, body) VALUES ('e-unsent', 'a@example.com', 's', 'b')",
			"INSERT INTO notifications (id, user_id, title, message, type, delivered_at) VALUES ('n-done', 'u', 't', 'm', 'info', CURRENT_TIMESTAMP)",
			"INSERT INTO notifications (id, user_id, title, message, type) VALUES ('n-stored', 'u', 't', 'm', 'info')",
		} {
			_, err := db.ExecContext(ctx, q)
			require.NoError(t, err, q)
		}
		exec("20261128170002_delivery.tx.up.sql")
		var emails []schema.Email
		require.NoError(t, db.NewSelect().Model(&emails).Order("id").Scan(ctx))
		require.Len(t, emails, 2)
		require.Equal(t, []string{schema.EmailSent, schema.OutboxUndelivered}, []string{emails[0].Status, emails[1].Status})
		require.Equal(t, "stored before deliveries were tracked", emails[1].LastError)
		var notes []schema.Notification
		require.NoError(t, db.NewSelect().Model(&notes).Order("id").Scan(ctx))
		require.Len(t, notes, 2)
		require.Equal(t, []string{schema.NotificationDone, schema.OutboxUndelivered}, []string{notes[0].Status, notes[1].Status})
		require.Zero(t, notes[1].Attempts)
		require.Zero(t, notes[1].ClaimedUntil)
	})
}

// Several workers starting at once each call Migrate: exactly one applies
// the migrations and nobody fails.
func TestConcurrentMigrate(t *testing.T) {
	t.Parallel()
	u := schematest.PostgresURL(t)
	const workers = 6
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied [][]string
		errs    []error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := schema.Open(u)
			if err == nil {
				defer db.Close()
				var names []string
				names, err = schema.Migrate(context.Background(), db)
				mu.Lock()
				applied = append(applied, names)
				mu.Unlock()
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Empty(t, errs)
	nonEmpty := 0
	for _, a := range applied {
		if len(a) > 0 {
			nonEmpty++
		}
	}
	require.Equal(t, 1, nonEmpty, "exactly one worker applied the migrations: %v", applied)
}

// Deleting a phase removes its sessions and exercises; a phase cannot
// reference a missing plan.
func TestCascadesAndForeignKeys(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		now := time.Now().UTC()
		_, err := db.NewInsert().Model(&schema.Phase{ID: "orphan", PlanID: "nope", Name: "x", CreatedAt: now, UpdatedAt: now}).Exec(ctx)
		require.Error(t, err, "foreign key on plan_id")

		_, err = db.NewInsert().Model(&schema.Plan{ID: "p", Name: "P", ClientID: "c", TrainerID: "t", IsActive: true, CreatedAt: now, UpdatedAt: now}).Exec(ctx)
		require.NoError(t, err)
		_, err = db.NewInsert().Model(&schema.Phase{ID: "ph", PlanID: "p", Name: "x", CreatedAt: now, UpdatedAt: now}).Exec(ctx)
		require.NoError(t, err)
		_, err = db.NewInsert().Model(&schema.Session{ID: "s", PhaseID: "ph", Name: "x", CreatedAt: now, UpdatedAt: now}).Exec(ctx)
		require.NoError(t, err)
		_, err = db.NewInsert().Model(&schema.Exercise{ID: "e", SessionID: "s", Name: "x", Sets: 3, Reps: 5, Weight: 60.5, CreatedAt: now, UpdatedAt: now}).Exec(ctx)
		require.NoError(t, err)
		_, err = db.NewInsert().Model(&schema.Exercise{ID: "bad", SessionID: "s", Name: "x", Sets: -1, CreatedAt: now, UpdatedAt: now}).Exec(ctx)
		require.Error(t, err, "sets must not be negative")

		var p schema.Plan
		require.NoError(t, db.NewSelect().Model(&p).Where("id = ?", "p").Scan(ctx))
		require.True(t, p.IsActive)
		require.WithinDuration(t, now, p.CreatedAt, time.Second)
		var e schema.Exercise
		require.NoError(t, db.NewSelect().Model(&e).Where("id = ?", "e").Scan(ctx))
		require.Equal(t, 60.5, e.Weight)

		_, err = db.NewDelete().Model((*schema.Phase)(nil)).Where("id = ?", "ph").Exec(ctx)
		require.NoError(t, err)
		for _, m := range []any{(*schema.Session)(nil), (*schema.Exercise)(nil)} {
			n, err := db.NewSelect().Model(m).Count(ctx)
			require.NoError(t, err)
			require.Zero(t, n, "%T rows remain after the phase was deleted", m)
		}
	})
}

func TestOpenRejectsUnknownURLs(t *testing.T) {
	t.Parallel()
	_, err := schema.Open("mysql://user:secret@host/db")
	require.ErrorContains(t, err, "unsupported database URL")
	require.NotContains(t, err.Error(), "secret")
	db, err := schema.Open("sqlite::memory:")
	require.NoError(t, err)
	defer db.Close()
	_, err = schema.Migrate(context.Background(), db)
	require.NoError(t, err)
}

func TestOpenSQLiteURLForms(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, u := range []string{
		"sqlite://" + dir + "/a.db",
		"sqlite:" + dir + "/b.db",
		"file:" + dir + "/c.db",
		dir + "/d.sqlite",
	} {
		db, err := schema.Open(u)
		require.NoError(t, err, u)
		_, err = schema.Migrate(context.Background(), db)
		require.NoError(t, err, u)
		require.Equal(t, "sqlite", db.Dialect().Name().String(), u)
		var fk int
		require.NoError(t, db.QueryRowContext(context.Background(), "PRAGMA foreign_keys").Scan(&fk))
		require.Equal(t, 1, fk, "%s: foreign keys on, so deletes cascade", u)
		require.NoError(t, db.Close())
	}
	// The file persists: reopening finds the migrations applied.
	db, err := schema.Open("sqlite://" + dir + "/a.db")
	require.NoError(t, err)
	defer db.Close()
	names, err := schema.Migrate(context.Background(), db)
	require.NoError(t, err)
	require.Empty(t, names)
}

// The VARCHAR bounds in limits.go are the migrations': every VARCHAR
// column of PostgreSQL is listed here with the constant the messages
// check it by, so a new or resized column cannot go unchecked.
func TestBoundsMatchTheColumns(t *testing.T) {
	t.Parallel()
	db := schematest.Postgres(t)
	want := map[string]int{
		"workout_plans.id": schema.MaxID, "workout_plans.client_id": schema.MaxID, "workout_plans.trainer_id": schema.MaxID,
		"workout_plans.full_save_job": schema.MaxJobID,
		"workout_phases.id":           schema.MaxID, "workout_phases.plan_id": schema.MaxID,
		"workout_sessions.id": schema.MaxID, "workout_sessions.phase_id": schema.MaxID,
		"workout_exercises.id": schema.MaxID, "workout_exercises.session_id": schema.MaxID,
		"user_actions.id": schema.MaxJobID, "user_actions.user_id": schema.MaxID,
		"notifications.id": schema.MaxJobID, "notifications.user_id": schema.MaxID,
		"notifications.type": 32, // one of four words, checked as such
		"email_outbox.id":    schema.MaxJobID,
		"data_sync_runs.id":  schema.MaxJobID, "data_sync_runs.plan_id": schema.MaxID,
		"data_sync_runs.direction": 16, // export or import
		"trellis_step_runs.job_id": schema.MaxJobID,
		// written by steprun, not by a message: a registered type's name
		// and an RFC 3339 time
		"trellis_step_runs.message_type": 128, "trellis_step_runs.enqueued_at": 64,
		// written by the delivery code: pending, sent, undelivered, …
		"email_outbox.status": 16, "notifications.status": 16,
	}
	rows, err := db.QueryContext(context.Background(), `SELECT table_name, column_name, character_maximum_length
		FROM information_schema.columns WHERE table_schema = current_schema() AND data_type = 'character varying'
		AND table_name NOT LIKE 'trellis_migration%'`)
	require.NoError(t, err)
	defer rows.Close()
	got := map[string]int{}
	for rows.Next() {
		var table, column string
		var n int
		require.NoError(t, rows.Scan(&table, &column, &n))
		got[table+"."+column] = n
	}
	require.NoError(t, rows.Err())
	require.Equal(t, want, got)
}
