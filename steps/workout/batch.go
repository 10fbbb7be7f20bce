package workout

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/internal/rowvalue"
	"github.com/trellisflow/trellis/steps/steprun"
)

// CreateBatching is how runners group the creates of plans, phases,
// sessions and exercises: up to 200 ready jobs of a type in one
// transaction, run at once (no linger, which a save alone would wait
// out), so a full plan save's 120 exercises go in one batch. Larger
// batches gained little in the bench's fullplansave-pg and make a failed
// batch's item-by-item rerun longer.
var CreateBatching = flow.Batching{Size: 200}

// planCreates is planCreate for a batch: one multi-row insert of the
// plans, then planCreate's way for those that were there already.
func planCreates(ctx context.Context, tx bun.Tx, items []flow.Item[PlanCreate]) ([]flow.ItemResult[Result], error) {
	out := make([]flow.ItemResult[Result], len(items))
	if len(items) == 1 {
		res, err := planCreate(ctx, tx, items[0].Msg)
		return out, settled(&out[0], res, err)
	}
	rows, ids := make([]*schema.Plan, len(items)), make([]string, len(items))
	for i, it := range items {
		rows[i], ids[i] = planRow(it.Msg), it.Msg.PlanID
	}
	created, err := insertNew(ctx, tx, rows, ids, nil)
	if err != nil {
		return nil, err
	}
	for i, it := range items {
		if created[i] {
			out[i].Value = Result{Entity: "plan", ID: it.Msg.PlanID, Action: "created"}
			continue
		}
		res, err := planSettle(ctx, tx, rows[i], it.Msg)
		if err := settled(&out[i], res, err); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// creates is the batch handler of the creates that build with build (a
// phase, session or exercise under its parent): createUnder for a batch.
// One statement reads which items' parents are where their paths put
// them (on PostgreSQL holding their plans, as savedPlan does), one
// multi-row insert writes the rows of those whose parent is there and
// whose save, if any, still owns the plan; every other item (a row that
// is there already, a superseded save, an ID twice in the batch, a missing
// parent) goes createUnder's way after the insert, in the same
// transaction.
func creates[M flow.Message, T any](build func(M) creation[T]) steprun.BatchFunc[M, Result] {
	return func(ctx context.Context, tx bun.Tx, items []flow.Item[M]) ([]flow.ItemResult[Result], error) {
		out := make([]flow.ItemResult[Result], len(items))
		cs := make([]creation[T], len(items))
		for i, it := range items {
			cs[i] = build(it.Msg)
		}
		result := func(i int, action string, err error) error {
			return settled(&out[i], Result{Entity: cs[i].p.leaf(), ID: cs[i].p.id(), Action: action}, err)
		}
		if len(items) == 1 {
			c := cs[0]
			action, err := createUnder(ctx, tx, c.row, c.p, c.save, c.cols...)
			return out, result(0, action, err)
		}
		owners, err := parentsThere(ctx, tx, cs)
		if err != nil {
			return nil, err
		}
		rows, ids := make([]*T, len(cs)), make([]string, len(cs))
		for i, c := range cs {
			rows[i], ids[i] = c.row, c.p.id()
		}
		created, err := insertNew(ctx, tx, rows, ids, func(i int) bool {
			owner, ok := owners[i]
			return ok && (cs[i].save == "" || owner == cs[i].save)
		})
		if err != nil {
			return nil, err
		}
		for i, c := range cs {
			if created[i] {
				out[i].Value = Result{Entity: c.p.leaf(), ID: c.p.id(), Action: "created"}
				continue
			}
			// A parent missing when the batch looked may have come since:
			// such an item tries its own insert first. A save that lost its
			// plan never gets it back.
			do := settle
			if _, there := owners[i]; !there {
				do = createUnder
			}
			action, err := do(ctx, tx, c.row, c.p, c.save, c.cols...)
			if err := result(i, action, err); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
}

// settled sets o to res or, when err is the create's own outcome, to err;
// any other error (a statement's) it returns, to fail the batch.
func settled(o *flow.ItemResult[Result], res Result, err error) error {
	switch {
	case err == nil:
		o.Value = res
	case itemError(err):
		o.Err = err
	default:
		return err
	}
	return nil
}

// itemError says whether err is a create's own outcome, which wrote
// nothing (a missing parent, a misplaced row, a row that changed under
// it), rather than a statement's failure, which fails the transaction.
func itemError(err error) bool {
	var nf *NotFoundError
	var oe *OwnershipError
	var ce *changedError
	return errors.As(err, &nf) || errors.As(err, &oe) || errors.As(err, &ce)
}

// parentsThere reads, in one statement, the parents of cs that are where
// cs's paths put them: for each such item, by index, the full plan save
// that owns its plan ("" for none). On PostgreSQL it holds those plans FOR
// SHARE until the transaction ends, so a later save's claimPlan waits for
// the batch to commit and then prunes what it wrote.
func parentsThere[T any](ctx context.Context, tx bun.Tx, cs []creation[T]) (map[int]string, error) {
	type parent struct {
		Plan    string `bun:"plan"`
		Phase   string `bun:"phase"`
		Session string `bun:"session"`
		Client  string `bun:"client"`
		Trainer string `bun:"trainer"`
		Owner   string `bun:"owner"`
	}
	type key struct{ plan, phase, session string }
	// the parent's key of each item: the path above its row
	keyOf := func(p path) key {
		switch p.leaf() {
		case "phase":
			return key{plan: p.plan}
		case "session":
			return key{plan: p.plan, phase: p.phase}
		}
		return key{p.plan, p.phase, p.session}
	}
	var keys [][]any // each parent once: a session's exercises share it
	seen := make(map[key]bool, len(cs))
	for _, c := range cs {
		k := keyOf(c.p)
		if seen[k] {
			continue
		}
		seen[k] = true
		switch c.p.leaf() {
		case "phase":
			keys = append(keys, []any{k.plan})
		case "session":
			keys = append(keys, []any{k.phase, k.plan})
		default:
			keys = append(keys, []any{k.session, k.phase, k.plan})
		}
	}
	var q *bun.SelectQuery
	switch cs[0].p.leaf() {
	case "phase":
		q = tx.NewSelect().TableExpr("workout_plans AS pl").
			ColumnExpr("pl.id AS plan, pl.client_id AS client, pl.trainer_id AS trainer, pl.full_save_job AS owner").
			Where("pl.id IN (?)", rowvalue.Values(keys))
	case "session":
		q = tx.NewSelect().TableExpr("workout_phases AS ph").Join("JOIN workout_plans AS pl ON pl.id = ph.plan_id").
			ColumnExpr("ph.plan_id AS plan, ph.id AS phase, pl.full_save_job AS owner").
			Where("(ph.id, ph.plan_id) IN (?)", rowvalue.Values(keys))
	case "exercise":
		q = tx.NewSelect().TableExpr("workout_sessions AS s").Join("JOIN workout_phases AS ph ON ph.id = s.phase_id").
			Join("JOIN workout_plans AS pl ON pl.id = ph.plan_id").
			ColumnExpr("ph.plan_id AS plan, s.phase_id AS phase, s.id AS session, pl.full_save_job AS owner").
			Where("(s.id, s.phase_id, ph.plan_id) IN (?)", rowvalue.Values(keys))
	default:
		return nil, fmt.Errorf("workout: no batch create of a %s", cs[0].p.leaf())
	}
	if tx.Dialect().Name() == dialect.PG {
		q = q.For("SHARE OF pl")
	}
	var found []parent
	if err := q.Scan(ctx, &found); err != nil {
		return nil, fmt.Errorf("workout: look up the parents of %d %ss: %w", len(cs), cs[0].p.leaf(), err)
	}
	byKey := make(map[key]parent, len(found))
	for _, f := range found {
		byKey[key{f.Plan, f.Phase, f.Session}] = f
	}
	owners := make(map[int]string, len(cs))
	for i, c := range cs {
		f, ok := byKey[keyOf(c.p)]
		if c.p.leaf() == "phase" {
			ok = ok && (c.p.client == "" || c.p.client == f.Client) && (c.p.trainer == "" || c.p.trainer == f.Trainer)
		}
		if ok {
			owners[i] = f.Owner
		}
	}
	return owners, nil
}

// insertNew inserts the rows, whose IDs are ids, for which want says so
// (all with want nil), each ID once, in one multi-row INSERT … ON CONFLICT
// (id) DO NOTHING, and says by index which went in. The rows go in ID
// order, so that two batches that share rows lock them in the same order.
func insertNew[T any](ctx context.Context, tx bun.Tx, rows []*T, ids []string, want func(i int) bool) ([]bool, error) {
	created := make([]bool, len(rows))
	var pick []int
	seen := make(map[string]bool, len(rows))
	for i := range rows {
		if (want == nil || want(i)) && !seen[ids[i]] {
			seen[ids[i]] = true
			pick = append(pick, i)
		}
	}
	if len(pick) == 0 {
		return created, nil
	}
	sort.Slice(pick, func(a, b int) bool { return ids[pick[a]] < ids[pick[b]] })
	batch := make([]*T, len(pick))
	for k, i := range pick {
		batch[k] = rows[i]
	}
	var got []string
	if _, err := tx.NewInsert().Model(&batch).On("CONFLICT (id) DO NOTHING").Returning("id").Exec(ctx, &got); err != nil {
		return nil, fmt.Errorf("workout: insert %d rows: %w", len(batch), err)
	}
	in := make(map[string]bool, len(got))
	for _, id := range got {
		in[id] = true
	}
	for _, i := range pick {
		created[i] = in[ids[i]]
	}
	return created, nil
}
