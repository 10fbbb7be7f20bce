package system_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/internal/smtptest"
	"github.com/trellisflow/trellis/steps/internal/steptest"
	"github.com/trellisflow/trellis/steps/system"
)

// An address with a display name is accepted at enqueue and delivered: the
// envelope (RCPT TO) carries the bare address, the To: header the name.
func TestEmailToDisplayNameIsDelivered(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		srv := smtptest.Start(t)
		e.Start(nil, system.Steps(e.DB, system.Options{Mailer: &system.SMTPMailer{Addr: srv.Addr(), From: "Coach Anna <coach@example.com>"}})...)
		for _, to := range []string{"Bob Example <bob@example.com>", `"Zoë, the client" <zoe@example.com>`} {
			job, err := system.SendEmail(ctx, e.Client, to, "Plan ready", "See you Monday.", "trainer-1")
			require.NoError(t, err)
			e.Wait(job.ID)
			j := e.Job(job.ID)
			require.Equal(t, dag.Succeeded, j.State, "%v", j.Error)
		}
		msgs := srv.Messages()
		require.Len(t, msgs, 2)
		require.Equal(t, "coach@example.com", msgs[0].From)
		require.Equal(t, []string{"bob@example.com"}, msgs[0].To)
		require.Equal(t, []string{"zoe@example.com"}, msgs[1].To)
		header := func(m smtptest.Message, name string) *mail.Address {
			parsed, err := mail.ReadMessage(strings.NewReader(m.Data))
			require.NoError(t, err)
			a, err := (&mail.AddressParser{WordDecoder: new(mime.WordDecoder)}).Parse(parsed.Header.Get(name))
			require.NoError(t, err, parsed.Header.Get(name))
			return a
		}
		require.Equal(t, &mail.Address{Name: "Bob Example", Address: "bob@example.com"}, header(msgs[0], "To"))
		require.Equal(t, &mail.Address{Name: "Zoë, the client", Address: "zoe@example.com"}, header(msgs[1], "To"))
		require.Equal(t, &mail.Address{Name: "Coach Anna", Address: "coach@example.com"}, header(msgs[0], "From"))
	})
}

// EMAIL carries one recipient: what the step could not send is refused at
// enqueue, naming the field.
func TestEmailAddressRefusedAtEnqueue(t *testing.T) {
	t.Parallel()
	for _, to := range []string{
		"a@example.com, b@example.com", // two recipients
		"Team: a@example.com, b@example.com;",
		"not-an-address",
		"bob@",
		"bob smith@example.com",
		`"bob smith"@example.com`, // a quoted local part: most servers refuse it
		"bob@exämple.com",         // needs SMTPUTF8
		"Bob <bob@example.com>\r\nBcc: x@example.com",
	} {
		err := system.Email{To: to, Subject: "s", Body: "b"}.Validate()
		var me *flow.MessageError
		require.True(t, errors.As(err, &me), "%q: %v", to, err)
		require.Equal(t, "to", me.Field, "%q: %v", to, err)
	}
	for _, to := range []string{"bob@example.com", "Bob <bob@example.com>", "<bob@example.com>", "bob+tag@sub.example.com", `"O'Brien, Pat" <pat@example.com>`} {
		require.NoError(t, system.Email{To: to, Subject: "s", Body: "b"}.Validate(), to)
	}
}

// SMTPMailer over STARTTLS and implicit TLS, verifying the server's
// certificate, authenticating with PLAIN or LOGIN; and what it does when
// any of that goes wrong.
func TestSMTPMailerTLSAndAuth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := map[string]string{"coach": "s3cret"}
	msg := func(n int) system.OutgoingEmail {
		return system.OutgoingEmail{MessageID: fmt.Sprintf("<%d@t>", n), To: mail.Address{Name: "Bob", Address: "bob@example.com"}, Subject: "s", Body: "b"}
	}
	for _, c := range []struct {
		name  string
		srv   smtptest.Options
		mode  system.TLSMode
		mechs []string
	}{
		{"starttls", smtptest.Options{TLS: smtptest.StartTLS, Users: users}, system.TLSStartTLS, nil},
		{"implicit", smtptest.Options{TLS: smtptest.Implicit, Users: users}, system.TLSImplicit, nil},
		{"login only", smtptest.Options{TLS: smtptest.StartTLS, Users: users, Mechanisms: []string{"LOGIN"}}, system.TLSStartTLS, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.StartWith(t, c.srv)
			m := &system.SMTPMailer{Addr: srv.Addr(), From: "coach@example.com", TLS: c.mode,
				TLSConfig: &tls.Config{RootCAs: srv.RootCAs()}, Username: "coach", Password: "s3cret"}
			require.NoError(t, m.Check())
			require.NoError(t, m.Send(ctx, msg(1)))
			msgs := srv.Messages()
			require.Len(t, msgs, 1)
			require.True(t, msgs[0].TLS)
			require.Equal(t, "coach", msgs[0].User)
			require.Equal(t, []string{"bob@example.com"}, msgs[0].To)

			// A wrong password is a permanent 535.
			bad := *m
			bad.Password = "guess"
			err := bad.Send(ctx, msg(2))
			require.ErrorContains(t, err, "smtp AUTH: 535")
			require.True(t, flow.IsPermanent(err), "%v", err)
			require.Equal(t, []string{"coach:ok", "coach:refused"}, srv.Auths())
		})
	}

	t.Run("failures", func(t *testing.T) {
		t.Parallel()
		secure := smtptest.StartWith(t, smtptest.Options{TLS: smtptest.StartTLS, Users: users})
		plain := smtptest.Start(t)
		implicit := smtptest.StartWith(t, smtptest.Options{TLS: smtptest.Implicit})
		for _, f := range []struct {
			name      string
			m         system.SMTPMailer
			want      string
			permanent bool
		}{
			// Not trusted: the certificate is self-signed.
			{"unknown CA", system.SMTPMailer{Addr: secure.Addr(), From: "c@example.com", TLS: system.TLSStartTLS, Username: "coach", Password: "s3cret"},
				"certificate", false},
			{"wrong name", system.SMTPMailer{Addr: implicit.Addr(), From: "c@example.com", TLS: system.TLSImplicit,
				TLSConfig: &tls.Config{RootCAs: implicit.RootCAs(), ServerName: "smtp.example.com"}}, "smtp.example.com", false},
			{"no STARTTLS offered", system.SMTPMailer{Addr: plain.Addr(), From: "c@example.com", TLS: system.TLSStartTLS},
				"does not offer STARTTLS", false},
			{"plain to a server that wants TLS", system.SMTPMailer{Addr: secure.Addr(), From: "c@example.com"}, "530", true},
			{"no AUTH offered", system.SMTPMailer{Addr: plain.Addr(), From: "c@example.com", Username: "coach", Password: "x"},
				"offers no AUTH", true},
			{"TLS to a plain server", system.SMTPMailer{Addr: plain.Addr(), From: "c@example.com", TLS: system.TLSImplicit}, "TLS", false},
		} {
			err := f.m.Send(ctx, msg(3))
			require.ErrorContains(t, err, f.want, f.name)
			require.Equal(t, f.permanent, flow.IsPermanent(err), "%s: %v", f.name, err)
		}
		require.Empty(t, secure.Messages())
		require.Empty(t, plain.Messages())
	})

	t.Run("check", func(t *testing.T) {
		t.Parallel()
		for _, c := range []struct {
			m    system.SMTPMailer
			want string
		}{
			{system.SMTPMailer{Addr: "smtp.example.com:25", From: "c@example.com", Username: "u", Password: "p"},
				"refusing to send credentials unencrypted to smtp.example.com: use TLS starttls (port 587) or tls (port 465)"},
			{system.SMTPMailer{Addr: "smtp.example.com:587", From: "c@example.com", TLS: "ssl"}, `"ssl" is not none, starttls or tls`},
			{system.SMTPMailer{Addr: "smtp.example.com:587", From: "Coach"}, "From"},
			{system.SMTPMailer{Addr: "smtp.example.com", From: "c@example.com"}, "missing port"},
			{system.SMTPMailer{From: "c@example.com"}, "Addr and From are required"},
		} {
			err := c.m.Check()
			require.ErrorContains(t, err, c.want)
			require.True(t, flow.IsPermanent(c.m.Send(ctx, msg(4))), "a send refuses it for good: %s", c.want)
		}
		// Loopback may take credentials in the clear, as net/smtp allows.
		for _, addr := range []string{"127.0.0.1:25", "localhost:25", "[::1]:25"} {
			require.NoError(t, (&system.SMTPMailer{Addr: addr, From: "c@example.com", Username: "u", Password: "p"}).Check(), addr)
		}
	})
}

// The EMAIL step through a submission server that requires STARTTLS and
// AUTH, on each engine: a temporary AUTH failure is retried, and the
// message goes out once, encrypted and authenticated.
func TestEmailThroughSTARTTLSWithAuth(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		srv := smtptest.StartWith(t, smtptest.Options{TLS: smtptest.StartTLS, Users: map[string]string{"coach": "s3cret"}})
		var mu sync.Mutex
		failures := 1
		srv.SetReply(func(cmd, _ string) (int, string) {
			mu.Lock()
			defer mu.Unlock()
			if cmd == "AUTH" && failures > 0 {
				failures--
				return 454, "4.7.0 Temporary authentication failure"
			}
			return 0, ""
		})
		e.Start(nil, system.Steps(e.DB, system.Options{Mailer: &system.SMTPMailer{Addr: srv.Addr(), From: "coach@example.com",
			TLS: system.TLSStartTLS, TLSConfig: &tls.Config{RootCAs: srv.RootCAs()}, Username: "coach", Password: "s3cret"}})...)
		backoff := flow.Fixed(50 * time.Millisecond)
		job, err := e.Client.Add(ctx, system.Email{To: "Bob <bob@example.com>", Subject: "Plan ready", Body: "b"}, &flow.NodeOpts{Backoff: &backoff})
		require.NoError(t, err)
		e.Wait(job.ID)
		j := e.Job(job.ID)
		require.Equal(t, dag.Succeeded, j.State, "%v", j.Error)
		require.Equal(t, 2, j.Attempt, "the 454 was retried")
		msgs := srv.Messages()
		require.Len(t, msgs, 1)
		require.True(t, msgs[0].TLS)
		require.Equal(t, "coach", msgs[0].User)
		require.Equal(t, []string{"bob@example.com"}, msgs[0].To)
		var row schema.Email
		require.NoError(t, e.DB.NewSelect().Model(&row).Where("id = ?", job.ID).Scan(ctx))
		require.Equal(t, schema.EmailSent, row.Status)
		require.Equal(t, 2, row.Attempts)
		require.NotNil(t, row.SentAt)
		require.Empty(t, row.LastError)
	})
}
