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

// pgReady says whether PostgreSQL can be reached, and when not, that
// scenario, which needs it, is skipped.
func (b *bench) pgReady(ctx context.Context, scenario string) bool {
	if err := b.pgPing(ctx); err != nil {
		b.status("%s with the real workout steps: SKIPPED — PostgreSQL at -db: %v", scenario, err)
		return false
	}
	return true
}

// workoutRun starts a Trellis run of scenario, n nodes, with the real
// workout steps (timed) on a fresh PostgreSQL schema and a runner of
// concurrency c; end stops the progress, the run and drops the schema.
func (b *bench) workoutRun(ctx context.Context, scenario string, n, c int) (t *trellisRun, db *bun.DB, end func(), err error) {
	db, drop, err := b.pgSchema(ctx, c)
	if err != nil {
		return nil, nil, nil, err
	}
	t, err = b.newTrellisRun(scenario, n)
	if err != nil {
		drop()
		return nil, nil, nil, err
	}
	stop := b.progress(fmt.Sprintf("trellis %s C=%d", scenario, c), int64(n), t.rec.done.Load)
	end = func() { stop(); t.close(); drop() }
	var steps []flow.Step
	for _, s := range workout.Steps(db) {
		steps = append(steps, timedStep(s, t.rec))
	}
	if err := t.startRunnerWith(ctx, c, runner.Config{}, steps); err != nil {
		end()
		return nil, nil, nil, err
	}
	return t, db, end, nil
}

// fullPlanSavePG is fullPlanSave with the real workout steps writing to a
// fresh PostgreSQL schema.
func (b *bench) fullPlanSavePG(ctx context.Context, plans, c int) (Result, error) {
	n := plans * planNodes
	t, db, end, err := b.workoutRun(ctx, "fullplansave-pg", n, c)
	if err != nil {
		return Result{}, err
	}
	defer end()
	rec := t.rec
	m, err := b.runLive(ctx, t, n, plans, planGraph(rec))
	if err != nil {
		return Result{}, err
	}
	rows, err := countRows(ctx, db)
	if err != nil {
		return Result{}, err
	}
	if rows != n {
		return Result{}, fmt.Errorf("%d rows written, want %d", rows, n)
	}
	r := b.result("fullplansave-pg", fmt.Sprintf("%d plans × %d, workout steps on PostgreSQL", plans, planNodes), c, n)
	m.fill(&r, n, plans)
	rec.fill(&r)
	return r, nil
}

// planRows are plan k's rows, as addPlan's messages describe them.
type planRows struct {
	plan      *schema.Plan
	phases    []*schema.Phase
	sessions  []*schema.Session
	exercises []*schema.Exercise
}

func rowsOf(k int) planRows {
	now := time.Now().UTC()
	planID := fmt.Sprintf("plan-%d", k)
	r := planRows{plan: &schema.Plan{ID: planID, Name: fmt.Sprintf("Strength block %d", k), ClientID: "client-1", TrainerID: "trainer-1", IsActive: true, CreatedAt: now, UpdatedAt: now}}
	for p := 0; p < planPhases; p++ {
		phaseID := fmt.Sprintf("%s-ph%d", planID, p)
		r.phases = append(r.phases, &schema.Phase{ID: phaseID, PlanID: planID, Name: fmt.Sprintf("Phase %d", p+1), OrderNumber: p + 1, IsActive: p == 0, CreatedAt: now, UpdatedAt: now})
		for s := 0; s < planSessions; s++ {
			sessionID := fmt.Sprintf("%s-s%d", phaseID, s)
			r.sessions = append(r.sessions, &schema.Session{ID: sessionID, PhaseID: phaseID, Name: fmt.Sprintf("Day %d", s+1), OrderNumber: s + 1, CreatedAt: now, UpdatedAt: now})
			for e := 0; e < planExercises; e++ {
				r.exercises = append(r.exercises, &schema.Exercise{ID: fmt.Sprintf("%s-e%d", sessionID, e), SessionID: sessionID, Name: "Back squat", OrderNumber: e + 1,
					Sets: 4, Reps: 8, Weight: 80, RestSeconds: 120, Tempo: "3-1-1-0", CreatedAt: now, UpdatedAt: now})
			}
		}
	}
	return r
}

// The two floors the engine's full plan save is compared against: the
// same rows written straight through bun, without an engine, by c
// goroutines each taking whole plans.
const (
	// bunRows inserts a plan's rows one statement (and transaction) at a
	// time, parents first: what a plain loop over the messages does.
	bunRows = "bun-rows"
	// bunBulk writes a plan in one transaction with one multi-row INSERT
	// per table: the least a hand-written save does.
	bunBulk = "bun-bulk"
)

// bunFloor writes plans plans' rows the way engine (bunRows or bunBulk)
// says, with c goroutines.
func (b *bench) bunFloor(ctx context.Context, engine string, plans, c int) (Result, error) {
	db, drop, err := b.pgSchema(ctx, c)
	if err != nil {
		return Result{}, err
	}
	defer drop()
	n := plans * planNodes
	var done counter
	stop := b.progress(fmt.Sprintf("%s floor C=%d", engine, c), int64(n), done.Load)
	defer stop()
	write := func(k int) error {
		r := rowsOf(k)
		if engine == bunBulk {
			return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				for _, m := range []any{r.plan, &r.phases, &r.sessions, &r.exercises} {
					if _, err := tx.NewInsert().Model(m).On("CONFLICT (id) DO NOTHING").Exec(ctx); err != nil {
						return err
					}
				}
				done.Add(planNodes)
				return nil
			})
		}
		insert := func(m any) error {
			_, err := db.NewInsert().Model(m).On("CONFLICT (id) DO NOTHING").Exec(ctx)
			done.Add(1)
			return err
		}
		for _, m := range append(append(append([]any{r.plan}, anys(r.phases)...), anys(r.sessions)...), anys(r.exercises)...) {
			if err := insert(m); err != nil {
				return err
			}
		}
		return nil
	}
	t0 := time.Now()
	if err := parallel(ctx, plans, c, write); err != nil {
		return Result{}, err
	}
	secs := time.Since(t0).Seconds()
	rows, err := countRows(ctx, db)
	if err != nil {
		return Result{}, err
	}
	if rows != n {
		return Result{}, fmt.Errorf("%s: %d rows written, want %d", engine, rows, n)
	}
	how := "one INSERT per row"
	if engine == bunBulk {
		how = "one transaction per plan, one multi-row INSERT per table"
	}
	r := b.result("fullplansave-pg", fmt.Sprintf("%d plans × %d rows straight through bun, %s", plans, planNodes, how), c, n)
	r.Engine = engine
	r.Seconds = secs
	r.NodesPerSec = float64(n) / secs
	r.FlowsPerSec = float64(plans) / secs
	return r, nil
}

func anys[T any](xs []T) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

// countRows counts the rows of the four workout tables.
func countRows(ctx context.Context, db bun.IDB) (int, error) {
	var rows int
	for _, model := range []any{(*schema.Plan)(nil), (*schema.Phase)(nil), (*schema.Session)(nil), (*schema.Exercise)(nil)} {
		k, err := db.NewSelect().Model(model).Count(ctx)
		if err != nil {
			return 0, err
		}
		rows += int(k)
	}
	return rows, nil
}
