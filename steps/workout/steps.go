package workout

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/steprun"
)

// Result is what a workout step returns: the entity it touched and what it did.
type Result struct {
	Entity string `json:"entity"` // plan, phase, session or exercise
	ID     string `json:"id"`
	// Action is created, updated, unchanged (a create of a row that was
	// there already, where the message puts it, with the message's data:
	// nothing was written), deleted, absent (a delete of a row that was not
	// there) or superseded (a create of a full plan save whose tree a save
	// enqueued later has replaced: nothing was written).
	Action string `json:"action"`
}

// FullSaveResult is what WORKOUT_PLAN_FULL_SAVE returns once it saved the
// plan and expanded the rest.
type FullSaveResult struct {
	PlanID    string `json:"planId"`
	Action    string `json:"action"` // the plan row: created or updated
	Phases    int    `json:"phases"`
	Sessions  int    `json:"sessions"`
	Exercises int    `json:"exercises"`
	// Pruned counts the rows under the plan that the message no longer
	// contains and that were deleted (phases, sessions and exercises).
	Pruned int `json:"pruned"`
}

// Steps returns one step for each of the twelve workout message types,
// writing through db. Register them all with one call:
//
//	r.Register(workout.Steps(db)...)
func Steps(db bun.IDB) []flow.Step {
	return []flow.Step{
		steprun.Step(db, workoutUpdate),
		steprun.BatchStep(db, CreateBatching, planCreates),
		steprun.BatchStep(db, CreateBatching, creates(phaseCreation)),
		steprun.Step(db, phaseUpdate),
		steprun.Step(db, phaseDelete),
		steprun.BatchStep(db, CreateBatching, creates(sessionCreation)),
		steprun.Step(db, sessionUpdate),
		steprun.Step(db, sessionDelete),
		steprun.BatchStep(db, CreateBatching, creates(exerciseCreation)),
		steprun.Step(db, exerciseUpdate),
		steprun.Step(db, exerciseDelete),
		fullSaveStep(db),
	}
}

// NotFoundError is the retryable error of a step whose parent row does not
// exist (yet): the "plan <id> not found" race: a child's create running before its parent's.
type NotFoundError struct {
	Entity string
	ID     string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %s not found", e.Entity, e.ID) }

func now() time.Time { return time.Now().UTC() }

// planQuery finds the plan.
func planQuery(db bun.IDB, planID string) *bun.SelectQuery {
	return db.NewSelect().Model((*schema.Plan)(nil)).ColumnExpr("1").Where("id = ?", planID)
}

func planExists(ctx context.Context, db bun.IDB, planID string) (bool, error) {
	return planQuery(db, planID).Exists(ctx)
}

// parentQuery finds the parent row of the row p ends at, where p puts it:
// the plan (of the client and trainer p names, if any), the phase in the
// plan, or the session in the phase of the plan.
func parentQuery(tx bun.IDB, p path) *bun.SelectQuery {
	switch p.leaf() {
	case "exercise":
		return tx.NewSelect().ColumnExpr("1").TableExpr("workout_sessions AS s").
			Join("JOIN workout_phases AS p ON p.id = s.phase_id").
			Where("s.id = ? AND s.phase_id = ? AND p.plan_id = ?", p.session, p.phase, p.plan)
	case "session":
		return tx.NewSelect().Model((*schema.Phase)(nil)).ColumnExpr("1").Where("id = ? AND plan_id = ?", p.phase, p.plan)
	}
	q := planQuery(tx, p.plan)
	if p.client != "" {
		q = q.Where("client_id = ?", p.client)
	}
	if p.trainer != "" {
		q = q.Where("trainer_id = ?", p.trainer)
	}
	return q
}

// savedPlan finds the plan while full plan save job save owns its tree. On
// PostgreSQL it locks the plan row for the rest of the transaction, so a
// later save's claimPlan waits for this create to commit and then prunes
// what it wrote; SQLite runs one writing transaction at a time anyway.
func savedPlan(tx bun.IDB, planID, save string) *bun.SelectQuery {
	q := tx.NewSelect().Model((*schema.Plan)(nil)).ColumnExpr("1").Where("id = ? AND full_save_job = ?", planID, save)
	if tx.Dialect().Name() == dialect.PG {
		q = q.For("SHARE")
	}
	return q
}

// ofSave narrows parent, a query for a create's parent row, to a plan that
// full plan save job save still owns (no narrowing for a create of its own).
func ofSave(tx bun.IDB, parent *bun.SelectQuery, planID, save string) *bun.SelectQuery {
	if save == "" {
		return parent
	}
	return parent.Where("EXISTS (?)", savedPlan(tx, planID, save))
}

// planCreate inserts the plan, or else holds it to its client and trainer
// and rewrites its name and state.
func planCreate(ctx context.Context, tx bun.Tx, m PlanCreate) (Result, error) {
	row := planRow(m)
	n, err := affected(tx.NewInsert().Model(row).On("CONFLICT (id) DO NOTHING").Exec(ctx))
	if err != nil || n == 1 {
		return Result{Entity: "plan", ID: m.PlanID, Action: "created"}, err
	}
	return planSettle(ctx, tx, row, m)
}

func planRow(m PlanCreate) *schema.Plan {
	t := now()
	return &schema.Plan{ID: m.PlanID, Name: m.Name, ClientID: m.ClientID, TrainerID: m.TrainerID, IsActive: m.IsActive,
		CreatedAt: t, UpdatedAt: t}
}

// planSettle is planCreate for a plan whose row did not go in: it is there.
func planSettle(ctx context.Context, tx bun.Tx, row *schema.Plan, m PlanCreate) (Result, error) {
	p := path{client: m.ClientID, trainer: m.TrainerID, plan: m.PlanID}
	if err := check(ctx, tx, p, false, true); err != nil {
		return Result{}, err
	}
	action, err := rewrite(ctx, tx, row, p, "name", "is_active", "updated_at")
	return Result{Entity: "plan", ID: m.PlanID, Action: action}, err
}

// creation is a create of a row under its parent as its message says it:
// the row, where it goes, the full plan save it belongs to ("" for none)
// and the columns a create of a row that is there already rewrites.
type creation[T any] struct {
	row  *T
	p    path
	save string
	cols []string
}

func phaseCreation(m phaseCreateJob) creation[schema.Phase] {
	t := now()
	return creation[schema.Phase]{
		row: &schema.Phase{ID: m.Phase.ID, PlanID: m.PlanID, Name: m.Phase.Name, OrderNumber: m.Phase.OrderNumber,
			IsActive: m.Phase.IsActive, CreatedAt: t, UpdatedAt: t},
		p:    path{client: m.ClientID, trainer: m.TrainerID, plan: m.PlanID, phase: m.Phase.ID},
		save: m.FullSave,
		cols: []string{"plan_id", "name", "order_number", "is_active", "updated_at"},
	}
}

func sessionCreation(m sessionCreateJob) creation[schema.Session] {
	t := now()
	return creation[schema.Session]{
		row: &schema.Session{ID: m.Session.ID, PhaseID: m.PhaseID, Name: m.Session.Name, OrderNumber: m.Session.OrderNumber,
			CreatedAt: t, UpdatedAt: t},
		p:    path{plan: m.PlanID, phase: m.PhaseID, session: m.Session.ID},
		save: m.FullSave,
		cols: []string{"phase_id", "name", "order_number", "updated_at"},
	}
}

func exerciseCreation(m exerciseCreateJob) creation[schema.Exercise] {
	e, t := m.Exercise, now()
	return creation[schema.Exercise]{
		row: &schema.Exercise{ID: e.ID, SessionID: m.SessionID, Name: e.Name, OrderNumber: e.OrderNumber,
			Sets: e.Sets, Reps: e.Reps, Weight: e.Weight, RestSeconds: e.Rest, Tempo: e.Tempo, Notes: e.Notes,
			CreatedAt: t, UpdatedAt: t},
		p:    path{plan: m.PlanID, phase: m.PhaseID, session: m.SessionID, exercise: e.ID},
		save: m.FullSave,
		cols: []string{"session_id", "name", "order_number", "sets", "reps", "weight", "rest_seconds", "tempo", "notes", "updated_at"},
	}
}

// createUnder creates row, the row p ends at, under its parent, which must
// exist where p puts it. Creates are the common case and cost one
// statement: INSERT … SELECT … WHERE EXISTS (the parent) ON CONFLICT (id)
// DO NOTHING, which cannot touch another plan's row. Only when nothing went
// in does it ask why (check): a row named elsewhere than p puts it is a
// permanent *OwnershipError, a missing parent a retryable *NotFoundError,
// and a row that exists where p puts it gets cols rewritten ("updated" or
// "unchanged"). A create of full plan save job save (not "") writes only
// while that save owns the plan, and is "superseded" otherwise; it may move
// its row to another parent of the same plan.
func createUnder(ctx context.Context, tx bun.Tx, row any, p path, save string, cols ...string) (string, error) {
	t := tx.Dialect().Tables().Get(reflect.TypeOf(row).Elem())
	v := reflect.ValueOf(row).Elem()
	names := make([]string, len(t.Fields))
	args := make([]any, 0, len(t.Fields)+1)
	for i, f := range t.Fields {
		names[i] = string(f.SQLName)
		args = append(args, f.Value(v).Interface())
	}
	args = append(args, ofSave(tx, parentQuery(tx, p), p.plan, save))
	q := "INSERT INTO " + string(t.SQLName) + " (" + strings.Join(names, ", ") + ") SELECT " +
		strings.TrimSuffix(strings.Repeat("?, ", len(names)), ", ") + " WHERE EXISTS (?) ON CONFLICT (id) DO NOTHING"
	n, err := affected(tx.ExecContext(ctx, q, args...))
	if err != nil || n == 1 {
		return "created", err
	}
	return settle(ctx, tx, row, p, save, cols...)
}

// settle is createUnder for a create whose row did not go in: a save that
// no longer owns the plan is "superseded", a misplaced row or a missing
// parent an error (check), and a row where p puts it is rewritten.
func settle(ctx context.Context, tx bun.Tx, row any, p path, save string, cols ...string) (string, error) {
	if save != "" {
		ok, err := savedPlan(tx, p.plan, save).Exists(ctx)
		if err != nil {
			return "", err
		}
		if !ok {
			return "superseded", nil
		}
	}
	if err := check(ctx, tx, p, save != "", false); err != nil {
		return "", err
	}
	return rewrite(ctx, tx, row, p, cols...)
}

func phaseUpdate(ctx context.Context, tx bun.Tx, _ *flow.StepContext, m PhaseUpdate) (Result, error) {
	p := path{plan: m.PlanID, phase: m.PhaseID}
	q := tx.NewUpdate().Model((*schema.Phase)(nil)).Set("updated_at = ?", now())
	c := m.Changes
	if c.Name != nil {
		q.Set("name = ?", *c.Name)
	}
	if c.OrderNumber != nil {
		q.Set("order_number = ?", *c.OrderNumber)
	}
	if c.IsActive != nil {
		q.Set("is_active = ?", *c.IsActive)
	}
	return updated(ctx, tx, q, p)
}

// updated runs q, an update of the row p ends at, narrowed to where p puts
// it. When it changes nothing it asks why: a row named elsewhere is a
// permanent *OwnershipError, a missing one (the row or one above it) a
// retryable *NotFoundError, since its create may still be on its way.
func updated(ctx context.Context, tx bun.Tx, q *bun.UpdateQuery, p path) (Result, error) {
	where, args := p.at()
	n, err := affected(q.Where(where, args...).Exec(ctx))
	if err != nil {
		return Result{}, err
	}
	if n == 0 {
		if err := check(ctx, tx, p, false, true); err != nil {
			return Result{}, err
		}
		return Result{}, errChanged(p)
	}
	return Result{Entity: p.leaf(), ID: p.id(), Action: "updated"}, nil
}

// deleted deletes the row p ends at, where p puts it. A missing row is
// fine (deletes are idempotent: "absent"); a row named elsewhere than p
// puts it (or a named parent elsewhere) is a permanent *OwnershipError.
func deleted(ctx context.Context, tx bun.Tx, model any, p path) (Result, error) {
	where, args := p.at()
	n, err := affected(tx.NewDelete().Model(model).Where(where, args...).Exec(ctx))
	if err != nil {
		return Result{}, err
	}
	res := Result{Entity: p.leaf(), ID: p.id(), Action: "deleted"}
	if n == 0 {
		if err := check(ctx, tx, p, false, false); err != nil {
			var nf *NotFoundError
			if !errors.As(err, &nf) {
				return Result{}, err
			}
		}
		res.Action = "absent"
	}
	return res, nil
}

func phaseDelete(ctx context.Context, tx bun.Tx, _ *flow.StepContext, m PhaseDelete) (Result, error) {
	return deleted(ctx, tx, (*schema.Phase)(nil), path{plan: m.PlanID, phase: m.PhaseID})
}

func sessionUpdate(ctx context.Context, tx bun.Tx, _ *flow.StepContext, m SessionUpdate) (Result, error) {
	q := tx.NewUpdate().Model((*schema.Session)(nil)).Set("updated_at = ?", now())
	if m.Changes.Name != nil {
		q.Set("name = ?", *m.Changes.Name)
	}
	if m.Changes.OrderNumber != nil {
		q.Set("order_number = ?", *m.Changes.OrderNumber)
	}
	return updated(ctx, tx, q, path{plan: m.PlanID, phase: m.PhaseID, session: m.SessionID})
}

func sessionDelete(ctx context.Context, tx bun.Tx, _ *flow.StepContext, m SessionDelete) (Result, error) {
	return deleted(ctx, tx, (*schema.Session)(nil), path{plan: m.PlanID, phase: m.PhaseID, session: m.SessionID})
}

func updateExercise(ctx context.Context, tx bun.Tx, p path, c ExerciseChanges) (Result, error) {
	q := tx.NewUpdate().Model((*schema.Exercise)(nil)).Set("updated_at = ?", now())
	if c.Name != nil {
		q.Set("name = ?", *c.Name)
	}
	if c.OrderNumber != nil {
		q.Set("order_number = ?", *c.OrderNumber)
	}
	if c.Sets != nil {
		q.Set("sets = ?", *c.Sets)
	}
	if c.Reps != nil {
		q.Set("reps = ?", *c.Reps)
	}
	if c.Weight != nil {
		q.Set("weight = ?", *c.Weight)
	}
	if c.Rest != nil {
		q.Set("rest_seconds = ?", *c.Rest)
	}
	if c.Tempo != nil {
		q.Set("tempo = ?", *c.Tempo)
	}
	if c.Notes != nil {
		q.Set("notes = ?", *c.Notes)
	}
	return updated(ctx, tx, q, p)
}

func exerciseUpdate(ctx context.Context, tx bun.Tx, _ *flow.StepContext, m ExerciseUpdate) (Result, error) {
	return updateExercise(ctx, tx, path{plan: m.PlanID, phase: m.PhaseID, session: m.SessionID, exercise: m.ExerciseID}, m.Changes)
}

func workoutUpdate(ctx context.Context, tx bun.Tx, _ *flow.StepContext, m WorkoutUpdate) (Result, error) {
	return updateExercise(ctx, tx, path{plan: m.ExercisePlanID, phase: m.PhaseID, session: m.SessionID, exercise: m.ExerciseID}, m.Changes)
}

func exerciseDelete(ctx context.Context, tx bun.Tx, _ *flow.StepContext, m ExerciseDelete) (Result, error) {
	return deleted(ctx, tx, (*schema.Exercise)(nil), path{plan: m.PlanID, phase: m.PhaseID, session: m.SessionID, exercise: m.ExerciseID})
}

// fullSaveStep saves the plan row and prunes what the message no longer
// holds, in one transaction with the step record; the phases, sessions and
// exercises become a sub-graph. The sub-graph is handed to Expand first, so
// one the engine refuses (too many nodes) fails the job before anything is
// written; and it is handed over on a replay too, because the engine writes
// it only with the job's completion, which a crash loses.
func fullSaveStep(db bun.IDB) flow.Step {
	return flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m PlanFullSave) (FullSaveResult, error) {
		if g := FullSaveGraph(sc.JobID, m, &flow.NodeOpts{UserID: sc.Envelope.UserID, Metadata: sc.Envelope.Metadata}); g.Len() > 0 {
			if err := sc.Expand(g); err != nil {
				return FullSaveResult{}, flow.Permanent(fmt.Errorf("expand full plan save: %w", err))
			}
		}
		res, _, err := steprun.Do(ctx, db, sc, func(ctx context.Context, tx bun.Tx) (FullSaveResult, error) {
			return savePlanRow(ctx, tx, m, sc.JobID, sc.Envelope.Enqueued().UnixNano())
		})
		return res, err
	})
}

// savePlanRow makes full plan save job (enqueued at, Unix ns) the owner
// of the plan's tree and prunes the rows the message no longer holds; a
// save enqueued before the plan's owner writes nothing ("superseded").
func savePlanRow(ctx context.Context, tx bun.Tx, m PlanFullSave, job string, at int64) (FullSaveResult, error) {
	if err := foreignRows(ctx, tx, m); err != nil {
		return FullSaveResult{}, err
	}
	action, err := claimPlan(ctx, tx, m, job, at)
	if err != nil {
		return FullSaveResult{}, err
	}
	res := FullSaveResult{PlanID: m.PlanID, Action: action}
	if action == "superseded" {
		return res, nil
	}

	var phases, sessions, exercises []string
	for _, p := range m.Phases {
		phases = append(phases, p.ID)
		for _, s := range p.Sessions {
			sessions = append(sessions, s.ID)
			for _, e := range s.Exercises {
				exercises = append(exercises, e.ID)
			}
		}
	}
	res.Phases, res.Sessions, res.Exercises = len(phases), len(sessions), len(exercises)

	// Prune: a full save replaces the plan's tree. Rows moved to another
	// parent in the message are kept here and re-parented by their create.
	prune := func(model any, parent string, parentArg any, keep []string) error {
		q := tx.NewDelete().Model(model).Where(parent, parentArg)
		if len(keep) > 0 {
			q.Where("id NOT IN (?)", bun.List(keep))
		}
		n, err := affected(q.Exec(ctx))
		res.Pruned += n
		return err
	}
	if action == "created" {
		return res, nil // a new plan has nothing under it to prune (foreign keys)
	}
	if err := prune((*schema.Phase)(nil), "plan_id = ?", m.PlanID, phases); err != nil {
		return res, err
	}
	if len(phases) > 0 {
		if err := prune((*schema.Session)(nil), "phase_id IN (?)", bun.List(phases), sessions); err != nil {
			return res, err
		}
	}
	if len(sessions) > 0 {
		if err := prune((*schema.Exercise)(nil), "session_id IN (?)", bun.List(sessions), exercises); err != nil {
			return res, err
		}
	}
	return res, nil
}

// foreignRows refuses a full plan save that names a phase, session or
// exercise of another plan, with the permanent *OwnershipError of the
// first one (by its path in the message). Its creates would refuse it
// too, one by one, after the plan's tree was pruned; this refuses the
// whole save before anything is written.
func foreignRows(ctx context.Context, tx bun.Tx, m PlanFullSave) error {
	where := map[string]string{}
	var phases, sessions, exercises []string
	for i, p := range m.Phases {
		where["phase "+p.ID] = fmt.Sprintf("phases[%d].id", i)
		phases = append(phases, p.ID)
		for j, s := range p.Sessions {
			where["session "+s.ID] = fmt.Sprintf("phases[%d].sessions[%d].id", i, j)
			sessions = append(sessions, s.ID)
			for k, e := range s.Exercises {
				where["exercise "+e.ID] = fmt.Sprintf("phases[%d].sessions[%d].exercises[%d].id", i, j, k)
				exercises = append(exercises, e.ID)
			}
		}
	}
	// One statement for the three kinds: each part finds the rows of the
	// message's IDs whose plan is another; normally none.
	var parts []string
	var args []any
	for _, k := range []struct {
		entity, id, from string
		ids              []string
	}{
		{"phase", "p.id", "workout_phases AS p", phases},
		{"session", "x.id", "workout_sessions AS x JOIN workout_phases AS p ON p.id = x.phase_id", sessions},
		{"exercise", "x.id", "workout_exercises AS x JOIN workout_sessions AS s ON s.id = x.session_id JOIN workout_phases AS p ON p.id = s.phase_id", exercises},
	} {
		if len(k.ids) > 0 {
			parts = append(parts, "SELECT '"+k.entity+"' AS entity, "+k.id+" AS id, p.plan_id AS plan_id FROM "+k.from+
				" WHERE "+k.id+" IN (?) AND p.plan_id <> ?")
			args = append(args, bun.List(k.ids), m.PlanID)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	type foreign struct {
		Entity string `bun:"entity"`
		ID     string `bun:"id"`
		Plan   string `bun:"plan_id"`
	}
	var rows []foreign
	if err := tx.NewRaw(strings.Join(parts, " UNION ALL "), args...).Scan(ctx, &rows); err != nil {
		return fmt.Errorf("workout: look up the rows of full plan save %s: %w", m.PlanID, err)
	}
	if len(rows) == 0 {
		return nil
	}
	rank := map[string]int{"phase": 0, "session": 1, "exercise": 2}
	first := slices.MinFunc(rows, func(a, b foreign) int {
		return cmp.Or(rank[a.Entity]-rank[b.Entity], strings.Compare(a.ID, b.ID))
	})
	return flow.Permanent(fmt.Errorf("%s: %w", where[first.Entity+" "+first.ID],
		&OwnershipError{Entity: first.Entity, ID: first.ID, Parent: "plan", Owner: first.Plan, Named: m.PlanID}))
}

// claimPlan writes the plan row of full plan save job, enqueued at (Unix
// ns), as the owner of the plan's tree: created, or updated unless a save
// enqueued later owns it already (superseded). A plan of another client
// or trainer is a permanent *OwnershipError. On PostgreSQL the update
// waits for the creates of the previous owner that are writing now.
func claimPlan(ctx context.Context, tx bun.Tx, m PlanFullSave, job string, at int64) (string, error) {
	t := now()
	row := &schema.Plan{ID: m.PlanID, Name: m.Name, ClientID: m.ClientID, TrainerID: m.TrainerID, IsActive: m.IsActive,
		CreatedAt: t, UpdatedAt: t, FullSaveJob: job, FullSaveAt: at}
	n, err := affected(tx.NewInsert().Model(row).On("CONFLICT (id) DO NOTHING").Exec(ctx))
	if err != nil || n == 1 {
		return "created", err
	}
	p := path{client: m.ClientID, trainer: m.TrainerID, plan: m.PlanID}
	if err := check(ctx, tx, p, false, true); err != nil {
		return "", err
	}
	where, args := p.inPlan()
	n, err = affected(tx.NewUpdate().Model(row).
		Column("name", "is_active", "updated_at", "full_save_job", "full_save_at").
		Where(where, args...).Where("full_save_at <= ?", at).Exec(ctx))
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "superseded", nil
	}
	return "updated", nil
}

func affected(res interface{ RowsAffected() (int64, error) }, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// The retry policy of the workout creates and updates, unless the caller's
// options set one (see DefaultOpts). The create race: a phase create that
// runs before its plan exists (or a session's before its phase, an update
// before its row's create) fails with a retryable *NotFoundError and is
// retried until the row is there. 20 attempts 2s, 4s, 8s, 16s, then every
// 30s, with equal jitter, give the row 4 to 8 minutes to arrive, where the
// engine's default of 3 attempts gave it 6 s.
const RaceAttempts = 20

// RaceBackoff goes with RaceAttempts: exponential from 2s, capped at 30s,
// with jitter.
var RaceBackoff = flow.Exponential(2 * time.Second).WithMax(30 * time.Second).WithJitter()

// RaceOpts returns a copy of opts (nil for none) with RaceAttempts and
// RaceBackoff where it sets no attempts or backoff.
func RaceOpts(opts *flow.NodeOpts) flow.NodeOpts { return withRetry(opts, RaceAttempts, RaceBackoff) }

// withRetry returns a copy of opts (nil for none) with attempts and
// backoff where it sets none.
func withRetry(opts *flow.NodeOpts, attempts int, backoff dag.Backoff) flow.NodeOpts {
	o := flow.NodeOpts{}
	if opts != nil {
		o = *opts
	}
	if o.Attempts == 0 {
		o.Attempts = attempts
	}
	if o.Backoff == nil {
		o.Backoff = &backoff
	}
	return o
}

// The retry policy of full plan saves and the jobs they expand into, unless
// the caller's options set one. A job of the sub-graph that gives up leaves
// the plan half saved, so these ride out a database restart: 10 attempts
// over roughly 75–150 s instead of the engine's default 3 over 6 s.
const SturdyAttempts = 10

// SturdyBackoff goes with SturdyAttempts: 1s, 2s, 4s… capped at 30s, with jitter
// so that the jobs of a big plan do not all retry at the same moment.
var SturdyBackoff = flow.Exponential(time.Second).WithMax(30 * time.Second).WithJitter()

// SturdyOpts returns a copy of opts (nil for none) with SturdyAttempts and
// SturdyBackoff where it sets no attempts or backoff.
func SturdyOpts(opts *flow.NodeOpts) flow.NodeOpts {
	return withRetry(opts, SturdyAttempts, SturdyBackoff)
}

// FullSaveGraph is the sub-graph a full plan save expands into: a
// WORKOUT_PHASE_CREATE node per phase, a WORKOUT_SESSION_CREATE node per
// session after its phase's node, and a WORKOUT_EXERCISE_CREATE node per
// exercise after its session's node. Phases are independent of each other,
// and so are the sessions of a phase and the exercises of a session, so
// they run in parallel. Node IDs derive from jobID and the entity IDs (see
// FullSaveNodeID), so a replay expands into the same nodes. Nodes get the
// sturdy retry policy (SturdyOpts) unless opts sets one.
func FullSaveGraph(jobID string, m PlanFullSave, opts *flow.NodeOpts) *flow.Graph {
	base := SturdyOpts(opts)
	with := func(id string) *flow.NodeOpts { o := base; o.ID = id; return &o }
	g := flow.New()
	for _, p := range m.Phases {
		pn := g.Add(phaseCreateJob{PhaseCreate{PlanID: m.PlanID, ClientID: m.ClientID, TrainerID: m.TrainerID, Phase: p.PhaseData}, jobID},
			with(FullSaveNodeID(jobID, "phase", p.ID)))
		for _, s := range p.Sessions {
			sn := g.Add(sessionCreateJob{SessionCreate{PlanID: m.PlanID, PhaseID: p.ID, Session: s.SessionData}, jobID},
				with(FullSaveNodeID(jobID, "session", s.ID))).After(pn)
			for _, e := range s.Exercises {
				g.Add(exerciseCreateJob{ExerciseCreate{PlanID: m.PlanID, PhaseID: p.ID, SessionID: s.ID, Exercise: e}, jobID},
					with(FullSaveNodeID(jobID, "exercise", e.ID))).After(sn)
			}
		}
	}
	return g
}

// FullSaveNodeID is the node ID of one entity of a full plan save:
// "<jobID>/<kind>/<entityID>", or a hash of it when that would pass the
// engine's 256-byte limit.
func FullSaveNodeID(jobID, kind, entityID string) string {
	id := jobID + "/" + kind + "/" + entityID
	if len(id) <= 256 {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "fullsave-" + kind + "-" + hex.EncodeToString(sum[:])
}
