// Package steprun makes steps effectively-once on top of the engine's
// at-least-once delivery: a step's database effects and a record keyed by
// the job ID commit in one transaction, and a re-run of the job (after a
// crash between the commit and the report to the engine, or a lease that
// expired) finds the record and returns the stored result instead of
// applying the effects again. DoBatch does the same for a batch step's
// jobs: one transaction, one record per job.
package steprun

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
)

// Func applies a step's effects inside tx and returns its result.
type Func[R any] func(ctx context.Context, tx bun.Tx) (R, error)

// Do runs fn in a transaction on db together with the step-run record of
// sc's job. If an earlier attempt of the job committed, Do returns that
// attempt's stored result with replayed true and commits nothing of fn. A
// record left by an older job with the same ID (enqueued at another time,
// see EnqueuedAt) does not count: the new job runs and replaces it. An error
// from fn rolls everything back and is returned as is, so flow.Permanent and
// flow.RetryAfter keep steering retries.
//
// fn must keep its effects inside tx: a replay may run it in a transaction
// that is then rolled back.
//
// An error of reaching the database (a refused or broken connection, a
// server starting up or shutting down) comes back marked flow.Unavailable,
// so that the runner holds back its other jobs until the retry is due.
func Do[R any](ctx context.Context, db bun.IDB, sc *flow.StepContext, fn Func[R]) (res R, replayed bool, err error) {
	defer func() {
		if err != nil && !flow.IsPermanent(err) && !flow.IsUnavailable(err) && Unreachable(err) {
			err = flow.Unavailable(err)
		}
	}()
	// The common case takes one statement fewer than checking first: fn runs
	// and the record is added in one transaction, and only a record that is
	// already there (an earlier attempt committed, or an older job had this
	// ID) sends Do the long way, after a rollback.
	res, err = runAndRecord(ctx, db, sc, fn, true)
	if err == nil {
		return res, false, nil
	}
	if !errors.Is(err, errRecorded) {
		// fn failed. If an earlier attempt committed, its rows may be why:
		// replay it. Otherwise the failure stands.
		prev, rerr := Record(ctx, db, sc.JobID)
		if rerr != nil || prev.EnqueuedAt != EnqueuedAt(sc) && prev.EnqueuedAt != "" {
			var zero R
			return zero, false, err
		}
	}
	return replayOrRun(ctx, db, sc, fn)
}

// Unreachable reports an error of reaching the database rather than of a
// statement: the connection could not be made, broke or was closed, or the
// server is starting up or shutting down (SQLSTATE class 08, 57P01–57P03).
func Unreachable(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ce *pgconn.ConnectError
	var op *net.OpError
	if errors.As(err, &ce) || errors.As(err, &op) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	return false
}

// errRecorded says the job's record was already there: the transaction
// that ran fn rolled back.
var errRecorded = errors.New("steprun: job already recorded")

// runAndRecord runs fn and inserts the job's record in one transaction.
// With onlyNew, a record already there rolls it back with errRecorded;
// without, the plain insert fails on it (another attempt committed first).
func runAndRecord[R any](ctx context.Context, db bun.IDB, sc *flow.StepContext, fn Func[R], onlyNew bool) (res R, err error) {
	err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		return recordIn(ctx, tx, sc, fn, onlyNew, &res)
	})
	return res, err
}

func recordIn[R any](ctx context.Context, tx bun.Tx, sc *flow.StepContext, fn Func[R], onlyNew bool, res *R) error {
	r, err := fn(ctx, tx)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return flow.Permanent(fmt.Errorf("steprun: encode result: %w", err))
	}
	q := tx.NewInsert().Model(&schema.StepRun{
		JobID: sc.JobID, MessageType: sc.Type, EnqueuedAt: EnqueuedAt(sc), Attempt: sc.Attempt,
		Result: string(raw), CreatedAt: time.Now().UTC(),
	})
	if onlyNew {
		q = q.On("CONFLICT (job_id) DO NOTHING")
	}
	out, err := q.Exec(ctx)
	if err != nil {
		return fmt.Errorf("steprun: record job %s: %w", sc.JobID, err)
	}
	if n, err := out.RowsAffected(); err == nil && n == 0 {
		return errRecorded
	}
	*res = r
	return nil
}

// replayOrRun is Do's long way: it reads the record first and replays it,
// or drops a stale one and runs fn.
func replayOrRun[R any](ctx context.Context, db bun.IDB, sc *flow.StepContext, fn Func[R]) (res R, replayed bool, err error) {
	enqueuedAt := EnqueuedAt(sc)
	err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var prev schema.StepRun
		err := tx.NewSelect().Model(&prev).Where("job_id = ?", sc.JobID).Limit(1).Scan(ctx)
		switch {
		case err == nil && (prev.EnqueuedAt == enqueuedAt || prev.EnqueuedAt == ""):
			replayed = true
			if uerr := json.Unmarshal([]byte(prev.Result), &res); uerr != nil {
				return flow.Permanent(fmt.Errorf("steprun: stored result of job %s: %w", sc.JobID, uerr))
			}
			return nil
		case err == nil:
			// The record of an earlier job that had this ID: this is a new
			// job, so it runs, and its record replaces the old one.
			if _, err := tx.NewDelete().Model((*schema.StepRun)(nil)).
				Where("job_id = ? AND enqueued_at = ?", sc.JobID, prev.EnqueuedAt).Exec(ctx); err != nil {
				return fmt.Errorf("steprun: drop stale record of job %s: %w", sc.JobID, err)
			}
		case !isNoRows(err):
			return fmt.Errorf("steprun: read record of job %s: %w", sc.JobID, err)
		}
		// A plain insert: if another attempt of the same job committed in
		// the meantime (its runner's lease expired while it ran), the
		// primary key refuses this one and the whole transaction rolls back;
		// the retry then replays the winner's result.
		return recordIn(ctx, tx, sc, fn, false, &res)
	})
	if err != nil {
		var zero R
		return zero, false, err
	}
	return res, replayed, nil
}

// EnqueuedAt is the incarnation mark of sc's job in its record: when the
// job was enqueued (the envelope's enqueuedAt), which the engine sets at
// enqueue and keeps for the job's whole life. Not the envelope's timestamp,
// which the client chooses: two jobs of one ID may carry the same one.
func EnqueuedAt(sc *flow.StepContext) string {
	return sc.Envelope.Enqueued().UTC().Format(time.RFC3339Nano)
}

// Step builds the step of message type M whose handler runs inside Do.
func Step[M flow.Message, R any](db bun.IDB, fn func(ctx context.Context, tx bun.Tx, sc *flow.StepContext, msg M) (R, error)) flow.Step {
	return flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, msg M) (R, error) {
		res, replayed, err := Do(ctx, db, sc, func(ctx context.Context, tx bun.Tx) (R, error) {
			return fn(ctx, tx, sc, msg)
		})
		if replayed {
			sc.Logger.InfoContext(ctx, "step already committed; returning the stored result", "job", sc.JobID, "type", sc.Type, "attempt", sc.Attempt)
		}
		return res, err
	})
}

// Record reads the step-run record of a job, for tests and inspection.
func Record(ctx context.Context, db bun.IDB, jobID string) (*schema.StepRun, error) {
	var r schema.StepRun
	if err := db.NewSelect().Model(&r).Where("job_id = ?", jobID).Limit(1).Scan(ctx); err != nil {
		if isNoRows(err) {
			return nil, flow.ErrNotFound
		}
		return nil, err
	}
	return &r, nil
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// Prune deletes the step records created before before and returns how
// many went. A record matters only while its job can still run again, so a
// horizon well past the engine's lease and retry window (hours) is safe;
// records of jobs the engine still keeps cost nothing but space.
func Prune(ctx context.Context, db bun.IDB, before time.Time) (int, error) {
	res, err := db.NewDelete().Model((*schema.StepRun)(nil)).Where("created_at < ?", before.UTC()).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("steprun: prune: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}
