package system

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/schema"
)

// Kinds of stored deliveries.
const (
	KindEmail        = "email"
	KindNotification = "notification"
)

// Undelivered is a stored email or notification that nothing will send by
// itself: it was stored while no Mailer or Notifier was configured, its
// send failed permanently, or its job's last attempt failed.
type Undelivered struct {
	Kind      string    `json:"kind"` // KindEmail or KindNotification
	ID        string    `json:"id"`   // the job's
	To        string    `json:"to"`   // the recipient, or the notification's user
	Subject   string    `json:"subject"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"lastError"`
	CreatedAt time.Time `json:"createdAt"`
}

// Redelivery is the outcome of redelivering one row.
type Redelivery struct {
	Undelivered
	Delivered bool  `json:"delivered"`
	Err       error `json:"-"`
}

// ListUndelivered returns up to limit undelivered rows of each kind in
// kinds (both when empty), oldest first.
func ListUndelivered(ctx context.Context, db bun.IDB, limit int, kinds ...string) ([]Undelivered, error) {
	if limit <= 0 {
		limit = 100
	}
	want := func(k string) bool { return len(kinds) == 0 || slices.Contains(kinds, k) }
	var out []Undelivered
	if want(KindEmail) {
		var rows []schema.Email
		if err := db.NewSelect().Model(&rows).Where("status = ? AND sent_at IS NULL", schema.OutboxUndelivered).
			Order("created_at", "id").Limit(int64(limit)).Scan(ctx); err != nil {
			return nil, fmt.Errorf("list undelivered emails: %w", err)
		}
		for _, r := range rows {
			out = append(out, Undelivered{Kind: KindEmail, ID: r.ID, To: r.To, Subject: r.Subject,
				Attempts: r.Attempts, LastError: r.LastError, CreatedAt: r.CreatedAt})
		}
	}
	if want(KindNotification) {
		var rows []schema.Notification
		if err := db.NewSelect().Model(&rows).Where("status = ? AND delivered_at IS NULL", schema.OutboxUndelivered).
			Order("created_at", "id").Limit(int64(limit)).Scan(ctx); err != nil {
			return nil, fmt.Errorf("list undelivered notifications: %w", err)
		}
		for _, r := range rows {
			out = append(out, Undelivered{Kind: KindNotification, ID: r.ID, To: r.UserID, Subject: r.Title,
				Attempts: r.Attempts, LastError: r.LastError, CreatedAt: r.CreatedAt})
		}
	}
	return out, nil
}

// Redeliver sends the undelivered rows (see Undelivered), up to limit of
// each kind, oldest first: emails through opts.Mailer and notifications
// through opts.Notifier, skipping a kind whose deliverer is nil. Each row
// is claimed as a step's send is, so a redelivery and a re-run of the job
// never send it at the same time, and a row another sender finished in the
// meantime is not sent again. A row whose send fails stays undelivered
// with the new error. The error is for reading the rows; each send's is in
// its Redelivery.
func Redeliver(ctx context.Context, db bun.IDB, opts Options, limit int) ([]Redelivery, error) {
	var kinds []string
	if opts.Mailer != nil {
		kinds = append(kinds, KindEmail)
	}
	if opts.Notifier != nil {
		kinds = append(kinds, KindNotification)
	}
	if len(kinds) == 0 {
		return nil, nil
	}
	list, err := ListUndelivered(ctx, db, limit, kinds...)
	if err != nil {
		return nil, err
	}
	out := make([]Redelivery, 0, len(list))
	for _, u := range list {
		r := Redelivery{Undelivered: u}
		switch u.Kind {
		case KindEmail:
			var row schema.Email
			if r.Err = db.NewSelect().Model(&row).Where("id = ?", u.ID).Scan(ctx); r.Err == nil {
				r.Delivered, r.Err = sendEmail(ctx, db, opts.Mailer, &row, true)
			}
		case KindNotification:
			var row schema.Notification
			if r.Err = db.NewSelect().Model(&row).Where("id = ?", u.ID).Scan(ctx); r.Err == nil {
				r.Delivered, r.Err = deliverNotification(ctx, db, opts.Notifier, &row, true)
			}
		}
		out = append(out, r)
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	return out, nil
}
