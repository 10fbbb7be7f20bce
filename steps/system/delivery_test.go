package system_test

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/schema/schematest"
	"github.com/trellisflow/trellis/steps/internal/smtptest"
	"github.com/trellisflow/trellis/steps/internal/steptest"
	"github.com/trellisflow/trellis/steps/system"
)

// Without a Mailer the EMAIL job keeps its message: an undelivered outbox
// row with the reason, and a success that says it was not sent. A
// redelivery through a mailer sends it once.
func TestEmailWithoutMailerIsKept(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		r := steptest.New(t, system.Steps(db, system.Options{}))
		msg := system.Email{To: "Bob <bob@example.com>", Subject: "Plan ready", Body: "See you Monday."}
		raw, _, err := r.Run(ctx, "m", 1, msg)
		require.NoError(t, err)
		require.JSONEq(t, `{"id":"m","messageId":"`+system.MessageID("m")+`","to":"Bob <bob@example.com>","sent":false,
			"status":"undelivered","reason":"no Mailer configured: stored, not sent"}`, string(raw))
		before := steptest.Snapshot(t, db)
		raw2, _, err := r.Run(ctx, "m", 2, msg)
		require.NoError(t, err)
		require.JSONEq(t, string(raw), string(raw2))
		require.Equal(t, before, steptest.Snapshot(t, db), "a re-run changes nothing")

		list, err := system.ListUndelivered(ctx, db, 0)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, []string{system.KindEmail, "m", "Bob <bob@example.com>", "Plan ready", "no Mailer configured: stored, not sent"},
			[]string{list[0].Kind, list[0].ID, list[0].To, list[0].Subject, list[0].LastError})

		srv := smtptest.StartWith(t, smtptest.Options{TLS: smtptest.StartTLS, Users: map[string]string{"coach": "s3cret"}})
		mailer := &system.SMTPMailer{Addr: srv.Addr(), From: "coach@example.com", TLS: system.TLSStartTLS,
			TLSConfig: &tls.Config{RootCAs: srv.RootCAs()}, Username: "coach", Password: "s3cret"}
		got, err := system.Redeliver(ctx, db, system.Options{Mailer: mailer}, 0)
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.NoError(t, got[0].Err)
		require.True(t, got[0].Delivered)
		require.Len(t, srv.Messages(), 1)
		require.Contains(t, srv.Messages()[0].Data, "Message-ID: "+system.MessageID("m"))
		var row schema.Email
		require.NoError(t, db.NewSelect().Model(&row).Where("id = ?", "m").Scan(ctx))
		require.Equal(t, schema.EmailSent, row.Status)
		require.NotNil(t, row.SentAt)
		require.Equal(t, 1, row.Attempts)

		got, err = system.Redeliver(ctx, db, system.Options{Mailer: mailer}, 0)
		require.NoError(t, err)
		require.Empty(t, got, "nothing left")
		// And a re-run of the job now reports it sent, without sending.
		raw, _, err = r.Run(ctx, "m", 3, msg)
		require.NoError(t, err)
		require.Contains(t, string(raw), `"sent":true`)
		require.Len(t, srv.Messages(), 1)
	})
}

// gateMailer blocks every send until released, counting them.
type gateMailer struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	sends   int
}

func (g *gateMailer) Send(ctx context.Context, _ system.OutgoingEmail) error {
	g.mu.Lock()
	g.sends++
	g.mu.Unlock()
	g.entered <- struct{}{}
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A send slower than the job's lease: the runner that takes the job over
// finds the row claimed and waits instead of sending a second copy.
func TestSlowSendIsNotDoubledByATakeover(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		g := &gateMailer{entered: make(chan struct{}, 4), release: make(chan struct{})}
		r := steptest.New(t, system.Steps(db, system.Options{Mailer: g}))
		msg := system.Email{To: "bob@example.com", Subject: "s", Body: "b"}
		first := make(chan error, 1)
		go func() {
			_, _, err := r.Run(ctx, "slow", 1, msg)
			first <- err
		}()
		select {
		case <-g.entered:
		case <-time.After(30 * time.Second):
			t.Fatal("the first attempt never sent")
		}
		// The takeover must not reach the mailer; if it does, it ends here.
		tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, _, err := r.Run(tctx, "slow", 2, msg)
		cancel()
		require.ErrorContains(t, err, "email slow is being sent by another attempt or a redelivery")
		d, ok := flow.RetryAfterDelay(err)
		require.True(t, ok, "%v", err)
		require.Greater(t, d, 30*time.Second, "it waits for the claim")
		close(g.release)
		require.NoError(t, <-first)
		raw, _, err := r.Run(ctx, "slow", 3, msg)
		require.NoError(t, err)
		require.Contains(t, string(raw), `"sent":true`)
		g.mu.Lock()
		require.Equal(t, 1, g.sends)
		g.mu.Unlock()
	})
}

// failMailer fails every send, retryably.
type failMailer struct{}

func (failMailer) Send(context.Context, system.OutgoingEmail) error {
	return errors.New("421 try later")
}

// A job whose send failed and that then runs on a worker without a Mailer
// (restarted without SMTP settings) leaves its row to Redeliver, not
// pending for ever.
func TestRetryWithoutMailerLeavesTheRowToRedeliver(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		r := steptest.New(t, system.Steps(db, system.Options{Mailer: failMailer{}}))
		msg := system.Email{To: "bob@example.com", Subject: "s", Body: "b"}
		_, _, err := r.Run(ctx, "m", 1, msg)
		require.ErrorContains(t, err, "421 try later")
		var row schema.Email
		require.NoError(t, db.NewSelect().Model(&row).Where("id = ?", "m").Scan(ctx))
		require.Equal(t, []any{schema.OutboxPending, 1, "421 try later"}, []any{row.Status, row.Attempts, row.LastError})

		for _, s := range system.Steps(db, system.Options{}) {
			r.Steps[s.MessageType()] = s
		}
		raw, _, err := r.Run(ctx, "m", 2, msg)
		require.NoError(t, err)
		require.Contains(t, string(raw), `"sent":false`)
		list, err := system.ListUndelivered(ctx, db, 10, system.KindEmail)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, "no Mailer configured: stored, not sent", list[0].LastError)
	})
}
