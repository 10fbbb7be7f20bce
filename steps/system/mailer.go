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
	"net/mail"
	"net/smtp"
	"net/textproto"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trellisflow/trellis/flow"
)

// OutgoingEmail is what a Mailer sends.
type OutgoingEmail struct {
	// MessageID is stable for a job, so a receiver can drop the duplicate
	// of the one case the outbox cannot rule out (a crash after the SMTP
	// server accepted the message and before the outbox row was marked).
	MessageID string
	// To is the recipient: To.Address goes in the envelope (RCPT TO), the
	// whole address with its display name in the To: header.
	To      mail.Address
	Subject string
	Body    string
}

// Mailer sends email. Errors are retried unless flow.Permanent.
type Mailer interface {
	Send(ctx context.Context, m OutgoingEmail) error
}

// ParseAddress parses one email address, with or without a display name
// ("Bob <bob@example.com>"), and refuses what an SMTP server without
// SMTPUTF8 would refuse at RCPT TO: lists and groups, non-ASCII addresses,
// local parts that need quoting, line breaks.
func ParseAddress(s string) (*mail.Address, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("contains a line break")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, err
	}
	for _, r := range a.Address {
		if r >= utf8.RuneSelf {
			return nil, fmt.Errorf("%s is not ASCII: it needs SMTPUTF8, which is not used", a.Address)
		}
	}
	if (&mail.Address{Address: a.Address}).String() != "<"+a.Address+">" {
		return nil, fmt.Errorf("the local part of %q needs quoting, which servers refuse", a.Address)
	}
	return a, nil
}

// TLSMode is how SMTPMailer protects its connection.
type TLSMode string

const (
	// TLSNone sends in the clear: for a relay on the same host.
	TLSNone TLSMode = "none"
	// TLSStartTLS upgrades a plain connection with STARTTLS, as submission
	// on port 587 does, and goes no further if the server does not offer it.
	TLSStartTLS TLSMode = "starttls"
	// TLSImplicit speaks TLS from the first byte, as port 465 does.
	TLSImplicit TLSMode = "tls"
)

// ParseTLSMode reads none, starttls or tls.
func ParseTLSMode(s string) (TLSMode, error) {
	switch m := TLSMode(strings.ToLower(strings.TrimSpace(s))); m {
	case TLSNone, TLSStartTLS, TLSImplicit:
		return m, nil
	}
	return "", fmt.Errorf("%q is not none, starttls or tls", s)
}

// SMTPMailer sends through an SMTP server with net/smtp.
type SMTPMailer struct {
	// Addr is the server's host:port. Required.
	Addr string
	// From is the sender, with or without a display name
	// ("Coach <coach@example.com>"). Required.
	From string
	// TLS is how the connection is protected. Default TLSNone.
	TLS TLSMode
	// TLSConfig configures STARTTLS and implicit TLS: RootCAs for a private
	// CA, say. Default: the system's roots, and the server name is Addr's
	// host unless it sets one.
	TLSConfig *tls.Config
	// Username and Password authenticate with AUTH PLAIN, or LOGIN when the
	// server offers only that. Default: no AUTH. Check refuses them over
	// an unencrypted connection to anything but loopback.
	Username, Password string
	// Auth, when set, authenticates instead of Username and Password, for
	// other mechanisms.
	Auth smtp.Auth
	// HelloName is the name sent in EHLO. Default "localhost".
	HelloName string
	// Timeout bounds one send when ctx has no deadline. Default 30s.
	Timeout time.Duration
}

// Check reports a configuration that cannot work, so that a worker can
// refuse it at start instead of failing every EMAIL job: a missing Addr or
// From, an unknown TLS mode, or credentials that would cross the network
// unencrypted.
func (s *SMTPMailer) Check() error {
	if s.Addr == "" || s.From == "" {
		return errors.New("smtp mailer: Addr and From are required")
	}
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return fmt.Errorf("smtp mailer: Addr %q: %w", s.Addr, err)
	}
	if _, err := ParseAddress(s.From); err != nil {
		return fmt.Errorf("smtp mailer: From %q: %w", s.From, err)
	}
	if _, err := ParseTLSMode(string(s.mode())); err != nil {
		return fmt.Errorf("smtp mailer: TLS %w", err)
	}
	if (s.Username != "" || s.Auth != nil) && s.mode() == TLSNone && !IsLoopbackHost(host) {
		return fmt.Errorf("smtp mailer: refusing to send credentials unencrypted to %s: use TLS %s (port 587) or %s (port 465)",
			host, TLSStartTLS, TLSImplicit)
	}
	return nil
}

// IsLoopbackHost reports whether host is localhost or a loopback IP; it
// resolves nothing.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *SMTPMailer) mode() TLSMode {
	if s.TLS == "" {
		return TLSNone
	}
	return s.TLS
}

func (s *SMTPMailer) tlsConfig(host string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.TLSConfig != nil {
		cfg = s.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	return cfg
}

// Send delivers m. A 5xx reply is a permanent error, with its code; a 4xx
// reply and a failure to connect or to set up TLS are retried.
func (s *SMTPMailer) Send(ctx context.Context, m OutgoingEmail) (err error) {
	if err := s.Check(); err != nil {
		return flow.Permanent(err)
	}
	from, _ := ParseAddress(s.From)
	if _, ok := ctx.Deadline(); !ok {
		timeout := s.Timeout
		if timeout == 0 {
			timeout = 30 * time.Second
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	host, _, _ := net.SplitHostPort(s.Addr)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("smtp: dial %s: %w", s.Addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if s.mode() == TLSImplicit {
		tc := tls.Client(conn, s.tlsConfig(host))
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("smtp: TLS with %s: %w", s.Addr, err)
		}
		conn = tc
	}
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
	if s.mode() == TLSStartTLS {
		// Retried, not permanent: a server that stops offering STARTTLS
		// may be a proxy stripping it, and sending in the clear is no answer.
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fmt.Errorf("smtp: %s does not offer STARTTLS", s.Addr)
		}
		if err := c.StartTLS(s.tlsConfig(host)); err != nil {
			return smtpErr("STARTTLS", err)
		}
	}
	if err := s.auth(c); err != nil {
		return err
	}
	if err := c.Mail(from.Address); err != nil {
		return smtpErr("MAIL FROM", err)
	}
	if err := c.Rcpt(m.To.Address); err != nil {
		return smtpErr("RCPT TO", err)
	}
	w, err := c.Data()
	if err != nil {
		return smtpErr("DATA", err)
	}
	if _, err := w.Write(compose(from, m)); err != nil {
		return smtpErr("DATA", err)
	}
	if err := w.Close(); err != nil {
		return smtpErr("DATA", err)
	}
	// The server has taken the message: a failed QUIT must not send it again.
	_ = c.Quit()
	return nil
}

// auth authenticates with Auth, or with Username and Password by PLAIN or
// LOGIN, whichever the server offers (PLAIN first).
func (s *SMTPMailer) auth(c *smtp.Client) error {
	a := s.Auth
	if a == nil && s.Username != "" {
		ok, mechs := c.Extension("AUTH")
		if !ok {
			return flow.Permanent(fmt.Errorf("smtp: %s offers no AUTH, but a username is configured", s.Addr))
		}
		offered := strings.Fields(strings.ToUpper(mechs))
		switch {
		case slices.Contains(offered, "PLAIN"):
			a = &plainAuth{user: s.Username, pass: s.Password}
		case slices.Contains(offered, "LOGIN"):
			a = &loginAuth{user: s.Username, pass: s.Password}
		default:
			return flow.Permanent(fmt.Errorf("smtp: %s offers AUTH %s; the mailer speaks PLAIN and LOGIN", s.Addr, mechs))
		}
	}
	if a == nil {
		return nil
	}
	return smtpErr("AUTH", c.Auth(a))
}

// errCleartext is the mechanisms' own guard behind Check: credentials
// never go over an unencrypted connection to anything but loopback.
var errCleartext = errors.New("refusing to send credentials over an unencrypted connection")

func checkSecure(server *smtp.ServerInfo) error {
	if !server.TLS && !IsLoopbackHost(server.Name) {
		return flow.Permanent(errCleartext)
	}
	return nil
}

// plainAuth is AUTH PLAIN (RFC 4616).
type plainAuth struct{ user, pass string }

func (a *plainAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if err := checkSecure(server); err != nil {
		return "", nil, err
	}
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}

func (a *plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected challenge after AUTH PLAIN")
	}
	return nil, nil
}

// loginAuth is AUTH LOGIN, which some providers offer alone.
type loginAuth struct{ user, pass string }

func (a *loginAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if err := checkSecure(server); err != nil {
		return "", nil, err
	}
	return "LOGIN", nil, nil
}

func (a *loginAuth) Next(challenge []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	switch c := strings.ToLower(string(challenge)); {
	case strings.Contains(c, "username"):
		return []byte(a.user), nil
	case strings.Contains(c, "password"):
		return []byte(a.pass), nil
	}
	return nil, fmt.Errorf("unexpected AUTH LOGIN challenge %q", challenge)
}

// compose renders the message: headers, then a quoted-printable UTF-8 body.
func compose(from *mail.Address, m OutgoingEmail) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\n", from.String())
	fmt.Fprintf(&b, "To: %s\r\n", m.To.String())
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

// smtpErr names the stage and makes 5xx replies permanent; 4xx replies and
// broken connections stay retryable.
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
