package system

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"net/textproto"
	"time"

	"github.com/trellisflow/trellis/flow"
)

// OutgoingEmail is what a Mailer sends.
type OutgoingEmail struct {
	// MessageID is stable for a job, so a receiver can drop the duplicate
	// of the one case the outbox cannot rule out (a crash after the SMTP
	// server accepted the message and before the outbox row was marked).
	MessageID string
	To        string
	Subject   string
	Body      string
}

// Mailer sends email. Errors are retried unless flow.Permanent.
type Mailer interface {
	Send(ctx context.Context, m OutgoingEmail) error
}

// SMTPMailer sends through an SMTP server with net/smtp.
type SMTPMailer struct {
	// Addr is the server's host:port. Required.
	Addr string
	// From is the sender address. Required.
	From string
	// Auth authenticates when set (e.g. smtp.PlainAuth, which net/smtp only
	// uses over TLS or to localhost).
	Auth smtp.Auth
	// TLS, when set, upgrades the connection with STARTTLS (required then).
	TLS *tls.Config
	// HelloName is the name sent in EHLO. Default "localhost".
	HelloName string
	// Timeout bounds one send when ctx has no deadline. Default 30s.
	Timeout time.Duration
}

// Send delivers m. A 5xx reply from the server is a permanent error.
func (s *SMTPMailer) Send(ctx context.Context, m OutgoingEmail) (err error) {
	if s.Addr == "" || s.From == "" {
		return flow.Permanent(errors.New("smtp mailer: Addr and From are required"))
	}
	if _, ok := ctx.Deadline(); !ok {
		timeout := s.Timeout
		if timeout == 0 {
			timeout = 30 * time.Second
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("smtp: dial %s: %w", s.Addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	host, _, _ := net.SplitHostPort(s.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return smtpErr("greeting", err)
	}
	defer c.Close()
	hello := s.HelloName
	if hello == "" {
		hello = "localhost"
	}
	if err := c.Hello(hello); err != nil {
		return smtpErr("EHLO", err)
	}
	if s.TLS != nil {
		if err := c.StartTLS(s.TLS); err != nil {
			return smtpErr("STARTTLS", err)
		}
	}
	if s.Auth != nil {
		if err := c.Auth(s.Auth); err != nil {
			return smtpErr("AUTH", err)
		}
	}
	if err := c.Mail(s.From); err != nil {
		return smtpErr("MAIL FROM", err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return smtpErr("RCPT TO", err)
	}
	w, err := c.Data()
	if err != nil {
		return smtpErr("DATA", err)
	}
	if _, err := w.Write(compose(s.From, m)); err != nil {
		return smtpErr("DATA", err)
	}
	if err := w.Close(); err != nil {
		return smtpErr("DATA", err)
	}
	return smtpErr("QUIT", c.Quit())
}

// compose renders the message: headers, then a quoted-printable UTF-8 body.
func compose(from string, m OutgoingEmail) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\n", from)
	fmt.Fprintf(&b, "To: %s\r\n", m.To)
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", m.Subject))
	fmt.Fprintf(&b, "Message-ID: %s\r\n", m.MessageID)
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().UTC().Format(time.RFC1123Z))
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(m.Body))
	_ = qp.Close()
	b.WriteString("\r\n")
	return b.Bytes()
}

// smtpErr names the stage and makes 5xx replies permanent.
func smtpErr(stage string, err error) error {
	if err == nil {
		return nil
	}
	err = fmt.Errorf("smtp %s: %w", stage, err)
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return flow.Permanent(err)
	}
	return err
}
