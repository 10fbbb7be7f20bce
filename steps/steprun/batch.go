package steprun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/internal/rowvalue"
)

// BatchFunc applies the effects of items inside tx and returns one result
// per item, in their order. An item it fails must have written nothing:
// DoBatch commits the effects of the batch together, without a record for
// the failed items, which then run again. An error instead of results
// (or a statement that fails) rolls the whole batch back.
type BatchFunc[M flow.Message, R any] func(ctx context.Context, tx bun.Tx, items []flow.Item[M]) ([]flow.ItemResult[R], error)

// batchRedos bounds how often DoBatch runs a batch again because another
// attempt of one of its jobs committed while it ran.
const batchRedos = 3

// DoBatch is Do for a batch: fn runs in one transaction on db together
// with the step-run records of the items it succeeded. An item whose job
// an earlier attempt committed gets that attempt's stored result
// (replayed[i] true) and is not given to fn; a record left by an older job
// with the same ID is replaced. If another attempt of an item's job
// commits while the batch runs, the batch rolls back and runs again, which
// replays that item.
//
// If the batch's transaction fails (fn's error, a statement the database
// refuses), each item runs again alone, in a transaction of its own, so
// that one bad item fails only itself. A database that cannot be reached
// fails every item with flow.Unavailable instead, and a cancelled ctx
// fails the batch with ctx's error.
func DoBatch[M flow.Message, R any](ctx context.Context, db bun.IDB, items []flow.Item[M], fn BatchFunc[M, R]) (res []flow.ItemResult[R], replayed []bool, err error) {
	res, replayed, err = batchInTx(ctx, db, items, fn)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil, nil, ctx.Err()
	case Unreachable(err) || flow.IsUnavailable(err):
		res, replayed = make([]flow.ItemResult[R], len(items)), make([]bool, len(items))
		for i := range res {
			res[i].Err = unavailable(err)
		}
	case len(items) == 1:
		res, replayed = []flow.ItemResult[R]{{Err: err}}, []bool{false}
	default:
		// One item may be why: each runs alone and fails only itself.
		res, replayed = make([]flow.ItemResult[R], len(items)), make([]bool, len(items))
		for i := range items {
			one, again, err := batchInTx(ctx, db, items[i:i+1], fn)
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			if err != nil {
				res[i].Err = unavailable(err)
				continue
			}
			res[i], replayed[i] = one[0], again[0]
		}
	}
	for i := range res {
		res[i].Err = unavailable(res[i].Err)
	}
	replayFailed(ctx, db, items, res, replayed)
	return res, replayed, nil
}

// unavailable marks an error of reaching the database flow.Unavailable,
// as Do does.
func unavailable(err error) error {
	if err != nil && !flow.IsPermanent(err) && !flow.IsUnavailable(err) && Unreachable(err) {
		return flow.Unavailable(err)
	}
	return err
}

// errRaced says that another attempt of a job of the batch committed its
// record while the batch ran: the transaction rolled back.
var errRaced = errors.New("steprun: another attempt of a job of the batch committed first")

// batchInTx runs the batch in one transaction, again while errRaced.
func batchInTx[M flow.Message, R any](ctx context.Context, db bun.IDB, items []flow.Item[M], fn BatchFunc[M, R]) (res []flow.ItemResult[R], replayed []bool, err error) {
	for range batchRedos {
		err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			res, replayed, err = batchIn(ctx, tx, items, fn)
			return err
		})
		if !errors.Is(err, errRaced) {
			return res, replayed, err
		}
	}
	return nil, nil, fmt.Errorf("steprun: a batch of %d jobs of %s raced other attempts %d times: %w", len(items), items[0].Type, batchRedos, err)
}

// batchIn replays the items already recorded, drops the stale records,
// runs fn for the rest and records the items it succeeded, in tx.
func batchIn[M flow.Message, R any](ctx context.Context, tx bun.Tx, items []flow.Item[M], fn BatchFunc[M, R]) ([]flow.ItemResult[R], []bool, error) {
	res, replayed := make([]flow.ItemResult[R], len(items)), make([]bool, len(items))
	prev, err := records(ctx, tx, items)
	if err != nil {
		return nil, nil, err
	}
	var stale [][]any // job ID, enqueued at
	var fresh []flow.Item[M]
	var at []int // fresh[k] is items[at[k]]
	for i, it := range items {
		rec, ok := prev[it.JobID]
		switch {
		case ok && (rec.EnqueuedAt == EnqueuedAt(it.StepContext) || rec.EnqueuedAt == ""):
			replayed[i] = true
			if err := json.Unmarshal([]byte(rec.Result), &res[i].Value); err != nil {
				res[i].Err = flow.Permanent(fmt.Errorf("steprun: stored result of job %s: %w", it.JobID, err))
			}
			continue
		case ok:
			// An earlier job that had this ID: this one runs and replaces it.
			stale = append(stale, []any{it.JobID, rec.EnqueuedAt})
		}
		fresh = append(fresh, it)
		at = append(at, i)
	}
	if len(fresh) == 0 {
		return res, replayed, nil
	}
	if len(stale) > 0 {
		// Only the records read: one a concurrent attempt of the new job
		// wrote since is the race the insert below detects.
		if _, err := tx.NewDelete().Model((*schema.StepRun)(nil)).
			Where("(job_id, enqueued_at) IN (?)", rowvalue.Values(stale)).Exec(ctx); err != nil {
			return nil, nil, fmt.Errorf("steprun: drop %d stale records: %w", len(stale), err)
		}
	}
	out, err := fn(ctx, tx, fresh)
	if err != nil {
		return nil, nil, err
	}
	if len(out) != len(fresh) {
		return nil, nil, flow.Permanent(fmt.Errorf("steprun: the batch step of %s returned %d results for %d jobs", fresh[0].Type, len(out), len(fresh)))
	}
	var recs []schema.StepRun
	now := time.Now().UTC()
	for k, r := range out {
		res[at[k]] = r
		if r.Err != nil {
			continue
		}
		raw, err := json.Marshal(r.Value)
		if err != nil {
			// fn wrote the item's effects: the batch rolls back, and the
			// item, run alone, fails alone.
			return nil, nil, flow.Permanent(fmt.Errorf("steprun: encode the result of job %s: %w", fresh[k].JobID, err))
		}
		sc := fresh[k].StepContext
		recs = append(recs, schema.StepRun{JobID: sc.JobID, MessageType: sc.Type, EnqueuedAt: EnqueuedAt(sc),
			Attempt: sc.Attempt, Result: string(raw), CreatedAt: now})
	}
	if len(recs) == 0 {
		return res, replayed, nil
	}
	var added []string
	if _, err := tx.NewInsert().Model(&recs).On("CONFLICT (job_id) DO NOTHING").Returning("job_id").Exec(ctx, &added); err != nil {
		return nil, nil, fmt.Errorf("steprun: record %d jobs of %s: %w", len(recs), recs[0].MessageType, err)
	}
	if len(added) < len(recs) {
		return nil, nil, errRaced
	}
	return res, replayed, nil
}

// records reads the step-run records of the items' jobs, by job ID.
func records[M flow.Message](ctx context.Context, db bun.IDB, items []flow.Item[M]) (map[string]schema.StepRun, error) {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.JobID
	}
	var recs []schema.StepRun
	if err := db.NewSelect().Model(&recs).Where("job_id IN (?)", bun.List(ids)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("steprun: read the records of %d jobs: %w", len(ids), err)
	}
	out := make(map[string]schema.StepRun, len(recs))
	for _, r := range recs {
		out[r.JobID] = r
	}
	return out, nil
}

// replayFailed replays the failed items whose job another attempt
// committed meanwhile (its rows may be why they failed), as Do does.
func replayFailed[M flow.Message, R any](ctx context.Context, db bun.IDB, items []flow.Item[M], res []flow.ItemResult[R], replayed []bool) {
	var failed []flow.Item[M]
	var at []int
	for i, r := range res {
		if r.Err != nil && !replayed[i] && !flow.IsUnavailable(r.Err) {
			failed = append(failed, items[i])
			at = append(at, i)
		}
	}
	if len(failed) == 0 {
		return
	}
	prev, err := records(ctx, db, failed)
	if err != nil {
		return // the failures stand; their retries replay
	}
	for k, it := range failed {
		rec, ok := prev[it.JobID]
		if !ok || rec.EnqueuedAt != EnqueuedAt(it.StepContext) && rec.EnqueuedAt != "" {
			continue
		}
		var v R
		if json.Unmarshal([]byte(rec.Result), &v) == nil {
			res[at[k]], replayed[at[k]] = flow.ItemResult[R]{Value: v}, true
		}
	}
}

// BatchStep builds the batch step of message type M whose handler runs
// inside DoBatch; Batching b (see flow.Batching) groups its jobs. fn's
// contract is BatchFunc's: an item it fails has written nothing.
func BatchStep[M flow.Message, R any](db bun.IDB, b flow.Batching, fn func(ctx context.Context, tx bun.Tx, items []flow.Item[M]) ([]flow.ItemResult[R], error)) flow.BatchStep {
	return flow.BatchFunc(b, func(ctx context.Context, items []flow.Item[M]) ([]flow.ItemResult[R], error) {
		res, replayed, err := DoBatch(ctx, db, items, fn)
		for i, r := range replayed {
			if r {
				sc := items[i].StepContext
				sc.Logger.InfoContext(ctx, "step already committed; returning the stored result", "job", sc.JobID, "type", sc.Type, "attempt", sc.Attempt, "batch", sc.Batch)
			}
		}
		return res, err
	})
}
