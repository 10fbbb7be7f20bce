package system

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
)

// outbox is a table of side effects that are stored with the step record
// and delivered after the commit: email_outbox or notifications.
type outbox struct {
	kind    string // "email" or "notification", for messages
	model   any
	doneCol bun.Ident // set when delivered
	done    string    // the status when delivered
}

var (
	emailBox        = outbox{kind: "email", model: (*schema.Email)(nil), doneCol: "sent_at", done: schema.EmailSent}
	notificationBox = outbox{kind: "notification", model: (*schema.Notification)(nil), doneCol: "delivered_at", done: schema.NotificationDone}
)

const (
	// deliverTimeout bounds one send (a Mailer's or Notifier's own timeout
	// only shortens it), so that its claim outlives it.
	deliverTimeout = 30 * time.Second
	// claimFor is how long one send holds its row: another sender (a
	// re-run of the job, a redelivery) waits that long for a sender that
	// died before it takes the row over. The margin covers the mark after
	// the send and clocks that differ between workers.
	claimFor = deliverTimeout + 15*time.Second
)

// deliver sends row id unless it is delivered already, holding the row's
// claim meanwhile, and records the outcome. last says no later attempt
// will try again: a failure then leaves the row undelivered, for
// Redeliver. It reports whether the row is delivered.
func (o outbox) deliver(ctx context.Context, db bun.IDB, id string, last bool, send func(ctx context.Context) error) (bool, error) {
	now := time.Now()
	res, err := db.NewUpdate().Model(o.model).
		Set("claimed_until = ?", now.Add(claimFor).UnixMilli()).
		Set("attempts = attempts + 1").
		Where("id = ? AND ? IS NULL AND claimed_until < ?", id, o.doneCol, now.UnixMilli()).
		Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("claim %s %s: %w", o.kind, id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return o.taken(ctx, db, id, now)
	}
	sctx, cancel := context.WithTimeout(ctx, deliverTimeout)
	serr := send(sctx)
	cancel()
	if serr == nil {
		// The claim stays if this fails: a later sender waits for it, then
		// sends again (at-least-once, with the same Message-ID or key).
		_, err := db.NewUpdate().Model(o.model).
			Set("? = ?", o.doneCol, time.Now().UTC()).
			Set("status = ?", o.done).Set("last_error = ''").Set("claimed_until = 0").
			Where("id = ?", id).Exec(ctx)
		if err != nil {
			return false, fmt.Errorf("mark %s %s %s: %w", o.kind, id, o.done, err)
		}
		return true, nil
	}
	status := schema.OutboxPending
	if last || flow.IsPermanent(serr) {
		status = schema.OutboxUndelivered
	}
	if err := o.fail(ctx, db, id, status, serr.Error()); err != nil {
		return false, errors.Join(serr, err)
	}
	return false, serr
}

// fail records why row id is not delivered, and releases its claim.
func (o outbox) fail(ctx context.Context, db bun.IDB, id, status, reason string) error {
	if _, err := db.NewUpdate().Model(o.model).
		Set("status = ?", status).Set("last_error = ?", bounded(reason)).Set("claimed_until = 0").
		Where("id = ? AND ? IS NULL", id, o.doneCol).Exec(ctx); err != nil {
		return fmt.Errorf("record the failure of %s %s: %w", o.kind, id, err)
	}
	return nil
}

// taken answers a claim that did not take: the row was delivered in the
// meantime, or another sender holds it and this one tries again after it.
func (o outbox) taken(ctx context.Context, db bun.IDB, id string, now time.Time) (bool, error) {
	var row struct {
		Done         *time.Time `bun:"done"`
		ClaimedUntil int64      `bun:"claimed_until"`
	}
	err := db.NewSelect().Model(o.model).ColumnExpr("? AS done", o.doneCol).Column("claimed_until").
		Where("id = ?", id).Scan(ctx, &row)
	if err != nil {
		return false, fmt.Errorf("read %s %s: %w", o.kind, id, err)
	}
	if row.Done != nil {
		return true, nil
	}
	wait := max(time.UnixMilli(row.ClaimedUntil).Sub(now), time.Second)
	return false, flow.RetryAfter(wait, fmt.Errorf("%s %s is being sent by another attempt or a redelivery", o.kind, id))
}

// bounded cuts an error text stored in an outbox row.
func bounded(s string) string {
	limit := 2000
	if len(s) <= limit {
		return s
	}
	for limit > 0 && !utf8.RuneStart(s[limit]) {
		limit--
	}
	return s[:limit] + "…"
}
