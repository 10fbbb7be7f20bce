package workout

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"strings"

	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/flow"
)

// OwnershipError is the permanent error of a message that names a row
// under another parent than the one it belongs to: a phase of another
// plan, a session of another phase, a plan of another client or trainer.
// Nothing is written. A row never moves to another plan, and a plan never
// to another client or trainer.
type OwnershipError struct {
	Entity string // plan, phase, session or exercise
	ID     string
	Parent string // client, trainer, plan, phase or session
	Owner  string // the parent the row belongs to
	Named  string // the parent the message named
}

func (e *OwnershipError) Error() string {
	return fmt.Sprintf("%s %q belongs to %s %q, not %q", e.Entity, e.ID, e.Parent, e.Owner, e.Named)
}

// path is where a message puts a row: its plan (with the plan's client
// and trainer when the message names them) and the IDs down to the row,
// "" below it. Every create, update and delete holds the rows it names to
// their path with the same check (resolve, then mismatch and missing).
type path struct {
	client, trainer                string
	plan, phase, session, exercise string
}

// leaf is the kind of row the path ends at.
func (p path) leaf() string {
	switch {
	case p.exercise != "":
		return "exercise"
	case p.session != "":
		return "session"
	case p.phase != "":
		return "phase"
	}
	return "plan"
}

// found is where the rows a path names are: for each named row that
// exists, its parent and its plan; NULL for a row that does not.
type found struct {
	planClient, planTrainer       sql.NullString
	phasePlan                     sql.NullString
	sessionPhase, sessionPlan     sql.NullString
	exerciseSession, exercisePlan sql.NullString
}

// The plan of a session and of an exercise, by the row's ID.
const (
	sessionPlanSQL  = "SELECT p.plan_id FROM workout_sessions AS s JOIN workout_phases AS p ON p.id = s.phase_id WHERE s.id = ?"
	exercisePlanSQL = "SELECT p.plan_id FROM workout_exercises AS e JOIN workout_sessions AS s ON s.id = e.session_id " +
		"JOIN workout_phases AS p ON p.id = s.phase_id WHERE e.id = ?"
)

// resolve reads, in one statement, where the rows p names are.
func resolve(ctx context.Context, tx bun.IDB, p path) (found, error) {
	var f found
	err := tx.QueryRowContext(ctx, "SELECT "+
		"(SELECT client_id FROM workout_plans WHERE id = ?), (SELECT trainer_id FROM workout_plans WHERE id = ?), "+
		"(SELECT plan_id FROM workout_phases WHERE id = ?), "+
		"(SELECT phase_id FROM workout_sessions WHERE id = ?), ("+sessionPlanSQL+"), "+
		"(SELECT session_id FROM workout_exercises WHERE id = ?), ("+exercisePlanSQL+")",
		p.plan, p.plan, p.phase, p.session, p.session, p.exercise, p.exercise,
	).Scan(&f.planClient, &f.planTrainer, &f.phasePlan, &f.sessionPhase, &f.sessionPlan, &f.exerciseSession, &f.exercisePlan)
	if err != nil {
		return f, fmt.Errorf("workout: look up %s %s: %w", p.leaf(), p.id(), err)
	}
	return f, nil
}

// id is the ID of the row the path ends at.
func (p path) id() string {
	return map[string]string{"plan": p.plan, "phase": p.phase, "session": p.session, "exercise": p.exercise}[p.leaf()]
}

// mismatch returns the *OwnershipError of the first row of p, from the
// plan down, that exists elsewhere than p puts it. With leafMoves the row
// p ends at may sit under another parent of the same plan (a full plan
// save moves rows within its plan); never in another plan.
func (p path) mismatch(f found, leafMoves bool) error {
	differs := func(got sql.NullString, named string) bool { return got.Valid && got.String != named }
	leaf := p.leaf()
	switch {
	case p.client != "" && differs(f.planClient, p.client):
		return &OwnershipError{Entity: "plan", ID: p.plan, Parent: "client", Owner: f.planClient.String, Named: p.client}
	case p.trainer != "" && differs(f.planTrainer, p.trainer):
		return &OwnershipError{Entity: "plan", ID: p.plan, Parent: "trainer", Owner: f.planTrainer.String, Named: p.trainer}
	case p.phase != "" && differs(f.phasePlan, p.plan):
		return &OwnershipError{Entity: "phase", ID: p.phase, Parent: "plan", Owner: f.phasePlan.String, Named: p.plan}
	case p.session != "" && differs(f.sessionPlan, p.plan):
		return &OwnershipError{Entity: "session", ID: p.session, Parent: "plan", Owner: f.sessionPlan.String, Named: p.plan}
	case p.session != "" && differs(f.sessionPhase, p.phase) && (!leafMoves || leaf != "session"):
		return &OwnershipError{Entity: "session", ID: p.session, Parent: "phase", Owner: f.sessionPhase.String, Named: p.phase}
	case p.exercise != "" && differs(f.exercisePlan, p.plan):
		return &OwnershipError{Entity: "exercise", ID: p.exercise, Parent: "plan", Owner: f.exercisePlan.String, Named: p.plan}
	case p.exercise != "" && differs(f.exerciseSession, p.session) && (!leafMoves || leaf != "exercise"):
		return &OwnershipError{Entity: "exercise", ID: p.exercise, Parent: "session", Owner: f.exerciseSession.String, Named: p.session}
	}
	return nil
}

// missing returns the retryable *NotFoundError of the first row of p, from
// the plan down, that does not exist: of the rows above the leaf, and of
// the leaf itself with leafToo. Their creates may still be on their way.
func (p path) missing(f found, leafToo bool) error {
	leaf := p.leaf()
	for _, r := range []struct {
		entity, id string
		exists     bool
	}{
		{"plan", p.plan, f.planClient.Valid},
		{"phase", p.phase, f.phasePlan.Valid},
		{"session", p.session, f.sessionPlan.Valid},
		{"exercise", p.exercise, f.exercisePlan.Valid},
	} {
		if r.id == "" || r.entity == leaf && !leafToo {
			break
		}
		if !r.exists {
			return &NotFoundError{Entity: r.entity, ID: r.id}
		}
	}
	return nil
}

// check resolves p and holds it to where its rows are: a row elsewhere is
// a permanent *OwnershipError, a missing one above the leaf (and the leaf
// with leafToo) a retryable *NotFoundError.
func check(ctx context.Context, tx bun.IDB, p path, leafMoves, leafToo bool) error {
	f, err := resolve(ctx, tx, p)
	if err != nil {
		return err
	}
	if err := p.mismatch(f, leafMoves); err != nil {
		return flow.Permanent(err)
	}
	return p.missing(f, leafToo)
}

// at is the condition that the row p ends at sits exactly where p puts it,
// for the one-statement updates and deletes (the table's own columns go
// unqualified).
func (p path) at() (string, []any) {
	switch p.leaf() {
	case "exercise":
		return "id = ? AND session_id = ? AND EXISTS (SELECT 1 FROM workout_sessions AS s JOIN workout_phases AS p " +
			"ON p.id = s.phase_id WHERE s.id = ? AND s.phase_id = ? AND p.plan_id = ?)", []any{p.exercise, p.session, p.session, p.phase, p.plan}
	case "session":
		return "id = ? AND phase_id = ? AND EXISTS (SELECT 1 FROM workout_phases AS p WHERE p.id = ? AND p.plan_id = ?)",
			[]any{p.session, p.phase, p.phase, p.plan}
	case "phase":
		return "id = ? AND plan_id = ?", []any{p.phase, p.plan}
	}
	return "id = ?", []any{p.plan}
}

// inPlan is the condition that the row p ends at belongs to p's plan (and,
// for a plan, to its client and trainer), wherever in the plan it sits.
func (p path) inPlan() (string, []any) {
	switch p.leaf() {
	case "exercise":
		return "id = ? AND session_id IN (SELECT s.id FROM workout_sessions AS s JOIN workout_phases AS p " +
			"ON p.id = s.phase_id WHERE p.plan_id = ?)", []any{p.exercise, p.plan}
	case "session":
		return "id = ? AND phase_id IN (SELECT p.id FROM workout_phases AS p WHERE p.plan_id = ?)", []any{p.session, p.plan}
	case "phase":
		return "id = ? AND plan_id = ?", []any{p.phase, p.plan}
	}
	return "id = ? AND client_id = ? AND trainer_id = ?", []any{p.plan, p.client, p.trainer}
}

// errChanged is the retryable error of a write whose row changed between
// the check and the write (a concurrent create or delete).
func errChanged(p path) error { return &changedError{p} }

type changedError struct{ p path }

func (e *changedError) Error() string {
	return fmt.Sprintf("workout: %s %s changed while this job wrote it; retrying", e.p.leaf(), e.p.id())
}

// rewrite sets the cols of row, which exists in p's plan (check passed),
// to row's values: "updated", or "unchanged" when it held them already
// (nothing is written then, updated_at included).
func rewrite(ctx context.Context, tx bun.IDB, row any, p path, cols ...string) (string, error) {
	t := tx.Dialect().Tables().Get(reflect.TypeOf(row).Elem())
	v := reflect.ValueOf(row).Elem()
	var same []string
	var vals []any
	for _, c := range cols {
		if c == "updated_at" {
			continue
		}
		f, err := t.Field(c)
		if err != nil {
			return "", err
		}
		same = append(same, "? = ?")
		vals = append(vals, bun.Ident(c), f.Value(v).Interface())
	}
	where, args := p.inPlan()
	q := tx.NewUpdate().Model(row).Column(cols...).Where(where, args...)
	if len(same) > 0 {
		q = q.Where("NOT ("+strings.Join(same, " AND ")+")", vals...)
	}
	n, err := affected(q.Exec(ctx))
	if err != nil || n == 1 {
		return "updated", err
	}
	ok, err := tx.NewSelect().Model(row).ColumnExpr("1").Where(where, args...).Exists(ctx)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", errChanged(p)
	}
	return "unchanged", nil
}
