package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/workout"
)

// pgCreateSchema creates the PostgreSQL schema name and returns a func
// that drops it with everything in it.
func (b *bench) pgCreateSchema(ctx context.Context, name string) (drop func(), err error) {
	admin, err := schema.Open(b.opt.dbURL)
	if err != nil {
		return nil, err
	}
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		return nil, err
	}
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+name); err != nil {
		admin.Close()
		return nil, err
	}
	return func() {
		if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA IF EXISTS "+name+" CASCADE"); err != nil {
			b.warnf("dropping schema %s: %v", name, err)
		}
		admin.Close()
	}, nil
}

// pgSchema makes a fresh, migrated PostgreSQL schema and returns a pool of
// at most maxConns connections that use it, and a func that drops it.
func (b *bench) pgSchema(ctx context.Context, maxConns int) (*bun.DB, func(), error) {
	name := fmt.Sprintf("bench_%08x", rand.Uint32())
	drop, err := b.pgCreateSchema(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(b.opt.dbURL)
	if err != nil {
		drop()
		return nil, nil, err
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	db, err := schema.Open(u.String())
	if err != nil {
		drop()
		return nil, nil, err
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	if _, err := schema.Migrate(ctx, db); err != nil {
		db.Close()
		drop()
		return nil, nil, fmt.Errorf("migrate: %w", err)
	}
	return db, func() { db.Close(); drop() }, nil
}

// pgPing says whether PostgreSQL at -db answers.
func (b *bench) pgPing(ctx context.Context) error {
	db, err := schema.Open(b.opt.dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}

// pgReady says whether PostgreSQL can be reached, and when not, that the
// rows with the real workout steps are skipped.
func (b *bench) pgReady(ctx context.Context) bool {
	if err := b.pgPing(ctx); err != nil {
		b.status("fullplansave with the real workout steps: SKIPPED — PostgreSQL at -db: %v", err)
		return false
	}
	return true
}

// fullPlanSavePG is fullPlanSave with the real workout steps writing to a
// fresh PostgreSQL schema.
func (b *bench) fullPlanSavePG(ctx context.Context, plans, c int) (Result, error) {
	db, drop, err := b.pgSchema(ctx, c)
	if err != nil {
		return Result{}, err
	}
	defer drop()
	n := plans * planNodes
	t, err := b.newTrellisRun("fullplansave-pg", n)
	if err != nil {
		return Result{}, err
	}
	defer t.close()
	rec := t.rec
	stop := b.progress(fmt.Sprintf("trellis fullplansave-pg C=%d", c), int64(n), rec.done.Load)
	defer stop()
	var steps []flow.Step
	for _, s := range workout.Steps(db) {
		steps = append(steps, timed{Step: s, rec: rec})
	}
	if err := t.startRunnerWith(ctx, c, runner.Config{}, steps); err != nil {
		return Result{}, err
	}
	m, err := b.runLive(ctx, t, n, plans, planGraph(rec))
	if err != nil {
		return Result{}, err
	}
	var rows int
	for _, model := range []any{(*schema.Plan)(nil), (*schema.Phase)(nil), (*schema.Session)(nil), (*schema.Exercise)(nil)} {
		k, err := db.NewSelect().Model(model).Count(ctx)
		if err != nil {
			return Result{}, err
		}
		rows += int(k)
	}
	if rows != n {
		return Result{}, fmt.Errorf("%d rows written, want %d", rows, n)
	}
	r := b.result("fullplansave-pg", fmt.Sprintf("%d plans × %d, workout steps on PostgreSQL", plans, planNodes), c, n)
	m.fill(&r, n, plans)
	rec.fill(&r)
	return r, nil
}

// bunFloor writes the same rows straight through bun, without an engine:
// c goroutines, each taking whole plans and inserting a plan's rows one
// statement at a time, parents first. It is the floor the engine's
// full plan save is compared against.
func (b *bench) bunFloor(ctx context.Context, plans, c int) (Result, error) {
	db, drop, err := b.pgSchema(ctx, c)
	if err != nil {
		return Result{}, err
	}
	defer drop()
	n := plans * planNodes
	var done counter
	stop := b.progress(fmt.Sprintf("bun floor C=%d", c), int64(n), done.Load)
	defer stop()
	insert := func(m any) error {
		_, err := db.NewInsert().Model(m).On("CONFLICT (id) DO NOTHING").Exec(ctx)
		done.Add(1)
		return err
	}
	t0 := time.Now()
	err = parallel(ctx, plans, c, func(k int) error {
		now := time.Now().UTC()
		planID := fmt.Sprintf("plan-%d", k)
		if err := insert(&schema.Plan{ID: planID, Name: fmt.Sprintf("Strength block %d", k), ClientID: "client-1", TrainerID: "trainer-1", IsActive: true, CreatedAt: now, UpdatedAt: now}); err != nil {
			return err
		}
		for p := 0; p < planPhases; p++ {
			phaseID := fmt.Sprintf("%s-ph%d", planID, p)
			if err := insert(&schema.Phase{ID: phaseID, PlanID: planID, Name: fmt.Sprintf("Phase %d", p+1), OrderNumber: p + 1, IsActive: p == 0, CreatedAt: now, UpdatedAt: now}); err != nil {
				return err
			}
			for s := 0; s < planSessions; s++ {
				sessionID := fmt.Sprintf("%s-s%d", phaseID, s)
				if err := insert(&schema.Session{ID: sessionID, PhaseID: phaseID, Name: fmt.Sprintf("Day %d", s+1), OrderNumber: s + 1, CreatedAt: now, UpdatedAt: now}); err != nil {
					return err
				}
				for e := 0; e < planExercises; e++ {
					if err := insert(&schema.Exercise{ID: fmt.Sprintf("%s-e%d", sessionID, e), SessionID: sessionID, Name: "Back squat", OrderNumber: e + 1,
						Sets: 4, Reps: 8, Weight: 80, RestSeconds: 120, Tempo: "3-1-1-0", CreatedAt: now, UpdatedAt: now}); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	secs := time.Since(t0).Seconds()
	r := b.result("fullplansave-pg", fmt.Sprintf("%d plans × %d rows straight through bun", plans, planNodes), c, n)
	r.Engine = "bun"
	r.Seconds = secs
	r.NodesPerSec = float64(n) / secs
	r.FlowsPerSec = float64(plans) / secs
	return r, nil
}
