// Package smtptest is a small SMTP server on a loopback listener, for
// testing mail senders against a real protocol exchange: EHLO/HELO, MAIL,
// RCPT, DATA (dot-terminated), RSET, NOOP, QUIT, and on request STARTTLS or
// implicit TLS with a self-signed certificate made at start, and AUTH PLAIN
// and LOGIN against a set of accounts. Like a real server it refuses a
// MAIL or RCPT path that is not one plain <address>.
package smtptest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Mode is how the server offers TLS.
type Mode int

const (
	// Plain offers no TLS.
	Plain Mode = iota
	// StartTLS offers STARTTLS and refuses AUTH and MAIL until the client
	// has upgraded, like a submission server on port 587.
	StartTLS
	// Implicit speaks TLS from the first byte, like port 465.
	Implicit
)

// Options configure a server. The zero value is a plain server without
// AUTH.
type Options struct {
	TLS Mode
	// Users, when set, are the accounts AUTH accepts (user → password), and
	// MAIL requires a successful AUTH first.
	Users map[string]string
	// Mechanisms are the AUTH mechanisms offered. Default PLAIN and LOGIN.
	Mechanisms []string
}

// Message is one message the server accepted.
type Message struct {
	From string
	To   []string
	Data string // headers and body, CRLF line ends, dot-unstuffed
	TLS  bool   // the session was encrypted
	User string // who authenticated, if anyone
}

// Server records what it receives.
type Server struct {
	opts Options
	ln   net.Listener
	tls  *tls.Config
	ca   *x509.CertPool
	pem  []byte
	wg   sync.WaitGroup

	mu    sync.Mutex
	msgs  []Message
	auths []string // "user:ok" or "user:refused", in order
	// reply, when set, may override the reply to a command ("RCPT",
	// "DATA-END", …): it returns a code and text, or 0 to answer normally.
	reply func(cmd, arg string) (int, string)
}

// Start listens on 127.0.0.1 with no TLS and no AUTH and serves until the
// test ends.
func Start(t testing.TB) *Server { return StartWith(t, Options{}) }

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatalf("smtptest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// New starts a server outside a test; Close stops it.
func New(o Options) (*Server, error) {
	if len(o.Mechanisms) == 0 {
		o.Mechanisms = []string{"PLAIN", "LOGIN"}
	}
	s := &Server{opts: o}
	var err error
	if s.tls, s.ca, s.pem, err = selfSigned(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if o.TLS == Implicit {
		ln = tls.NewListener(ln, s.tls)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Close stops the server and waits for its sessions to end.
func (s *Server) Close() {
	_ = s.ln.Close()
	s.wg.Wait()
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// RootCAs trusts the server's certificate (for 127.0.0.1 and localhost).
func (s *Server) RootCAs() *x509.CertPool { return s.ca }

// CertPEM is the server's certificate in PEM, for a CA file.
func (s *Server) CertPEM() []byte { return s.pem }

// Messages returns the accepted messages so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Auths returns the AUTH attempts so far, each "user:ok" or "user:refused".
func (s *Server) Auths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auths...)
}

// SetReply installs a reply override (see Server.reply).
func (s *Server) SetReply(f func(cmd, arg string) (int, string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reply = f
}

func (s *Server) override(cmd, arg string) (int, string) {
	s.mu.Lock()
	f := s.reply
	s.mu.Unlock()
	if f == nil {
		return 0, ""
	}
	return f(cmd, arg)
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { _ = conn.Close() }()
			s.session(conn)
		}()
	}
}

// session is one connection's state.
type session struct {
	s      *Server
	raw    net.Conn
	c      *textproto.Conn
	secure bool
	user   string
	cur    Message
}

func (s *Server) session(conn net.Conn) {
	_, implicit := conn.(*tls.Conn)
	ss := &session{s: s, raw: conn, c: textproto.NewConn(conn), secure: implicit}
	if !ss.say(220, "localhost smtptest ready") {
		return
	}
	for {
		line, err := ss.c.ReadLine()
		if err != nil {
			return
		}
		cmd, arg, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		if code, text := s.override(cmd, arg); code != 0 {
			if !ss.say(code, text) {
				return
			}
			continue
		}
		if !ss.handle(cmd, arg) {
			return
		}
	}
}

func (ss *session) say(code int, text string) bool {
	return ss.c.PrintfLine("%d %s", code, text) == nil
}

// handle answers one command; false ends the session.
func (ss *session) handle(cmd, arg string) bool {
	s := ss.s
	mustTLS := s.opts.TLS == StartTLS && !ss.secure
	switch cmd {
	case "EHLO":
		ext := []string{"localhost", "8BITMIME"}
		if mustTLS {
			ext = append(ext, "STARTTLS")
		} else if len(s.opts.Users) > 0 {
			ext = append(ext, "AUTH "+strings.Join(s.opts.Mechanisms, " "))
		}
		for _, e := range ext[:len(ext)-1] {
			if ss.c.PrintfLine("250-%s", e) != nil {
				return false
			}
		}
		return ss.say(250, ext[len(ext)-1])
	case "HELO", "NOOP":
		return ss.say(250, "ok")
	case "RSET":
		ss.cur = Message{}
		return ss.say(250, "ok")
	case "STARTTLS":
		if s.opts.TLS != StartTLS || ss.secure {
			return ss.say(503, "5.5.1 TLS not available")
		}
		if !ss.say(220, "2.0.0 ready to start TLS") {
			return false
		}
		tc := tls.Server(ss.raw, s.tls)
		if err := tc.Handshake(); err != nil {
			return false
		}
		// RFC 3207: the session starts over.
		*ss = session{s: s, raw: tc, c: textproto.NewConn(tc), secure: true}
		return true
	case "AUTH":
		return ss.auth(arg, mustTLS)
	case "MAIL":
		if mustTLS {
			return ss.say(530, "5.7.0 Must issue a STARTTLS command first")
		}
		if len(s.opts.Users) > 0 && ss.user == "" {
			return ss.say(530, "5.7.0 Authentication required")
		}
		a, ok := path(arg, "FROM:")
		if !ok {
			return ss.say(501, "5.1.7 Bad sender address syntax")
		}
		ss.cur = Message{From: a}
		return ss.say(250, "ok")
	case "RCPT":
		a, ok := path(arg, "TO:")
		if !ok || a == "" {
			return ss.say(501, "5.1.3 Bad recipient address syntax")
		}
		ss.cur.To = append(ss.cur.To, a)
		return ss.say(250, "ok")
	case "DATA":
		if !ss.say(354, "end with <CRLF>.<CRLF>") {
			return false
		}
		data, err := ss.c.ReadDotBytes()
		if err != nil {
			return false
		}
		ss.cur.Data = strings.ReplaceAll(string(data), "\n", "\r\n")
		ss.cur.TLS, ss.cur.User = ss.secure, ss.user
		if code, text := s.override("DATA-END", ""); code != 0 {
			ss.cur = Message{}
			return ss.say(code, text)
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, ss.cur)
		s.mu.Unlock()
		ss.cur = Message{}
		return ss.say(250, "queued")
	case "QUIT":
		ss.say(221, "bye")
		return false
	}
	return ss.say(502, "5.5.2 command not implemented")
}

// auth runs AUTH PLAIN or LOGIN, with or without an initial response.
func (ss *session) auth(arg string, mustTLS bool) bool {
	s := ss.s
	mech, initial, _ := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	switch {
	case mustTLS:
		return ss.say(530, "5.7.0 Must issue a STARTTLS command first")
	case len(s.opts.Users) == 0:
		return ss.say(503, "5.5.1 AUTH not offered")
	case ss.user != "":
		return ss.say(503, "5.5.1 already authenticated")
	case !slices.Contains(s.opts.Mechanisms, mech):
		return ss.say(504, "5.5.4 mechanism not supported")
	}
	// ask sends a 334 challenge unless the client already answered it.
	ask := func(challenge string) (string, error) {
		if initial != "" {
			r := initial
			initial = ""
			return decode(r)
		}
		if err := ss.c.PrintfLine("334 %s", base64.StdEncoding.EncodeToString([]byte(challenge))); err != nil {
			return "", err
		}
		line, err := ss.c.ReadLine()
		if err != nil {
			return "", err
		}
		if line == "*" {
			return "", errCancelled
		}
		return decode(line)
	}
	var user, pass string
	switch mech {
	case "PLAIN":
		resp, err := ask("")
		if err != nil {
			return ss.authFailed(err)
		}
		parts := strings.Split(resp, "\x00")
		if len(parts) != 3 {
			return ss.say(501, "5.5.2 malformed PLAIN response")
		}
		user, pass = parts[1], parts[2]
	case "LOGIN":
		var err error
		if user, err = ask("Username:"); err != nil {
			return ss.authFailed(err)
		}
		if pass, err = ask("Password:"); err != nil {
			return ss.authFailed(err)
		}
	}
	want, ok := s.opts.Users[user]
	s.mu.Lock()
	if ok && want == pass {
		s.auths = append(s.auths, user+":ok")
	} else {
		s.auths = append(s.auths, user+":refused")
	}
	s.mu.Unlock()
	if !ok || want != pass {
		return ss.say(535, "5.7.8 Authentication credentials invalid")
	}
	ss.user = user
	return ss.say(235, "2.7.0 Authentication successful")
}

var errCancelled = errors.New("cancelled")

func (ss *session) authFailed(err error) bool {
	if errors.Is(err, errCancelled) {
		return ss.say(501, "5.0.0 AUTH cancelled")
	}
	var ce base64.CorruptInputError
	if errors.As(err, &ce) {
		return ss.say(501, "5.5.2 cannot decode response")
	}
	return false // the connection broke
}

func decode(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	return string(b), err
}

// path takes the address out of "FROM:<a@b>" or "TO:<a@b> params", and
// refuses anything but one plain <address>, as servers do.
func path(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimLeft(arg[len(prefix):], " ")
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", false
	}
	a := rest[1:end]
	if strings.ContainsAny(a, "<> \t\"") || (a != "" && strings.Count(a, "@") != 1) {
		return "", false
	}
	if params := rest[end+1:]; params != "" && !strings.HasPrefix(params, " ") {
		return "", false
	}
	return a, true
}
