// Package smtptest is a minimal SMTP server on a loopback listener, for
// testing mail senders against a real protocol exchange: EHLO/HELO, MAIL,
// RCPT, DATA (dot-terminated), RSET, NOOP, QUIT. No AUTH, no TLS.
package smtptest

import (
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
)

// Message is one message the server accepted.
type Message struct {
	From string
	To   []string
	Data string // headers and body, CRLF line ends, dot-unstuffed
}

// Server records what it receives.
type Server struct {
	ln net.Listener
	wg sync.WaitGroup

	mu   sync.Mutex
	msgs []Message
	// Reply, when set, may override the reply to a command ("RCPT",
	// "DATA-END", …): it returns a code and text, or 0 to answer normally.
	reply func(cmd, arg string) (int, string)
}

// Start listens on 127.0.0.1 and serves until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s := &Server{ln: ln}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Messages returns the accepted messages so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
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
			defer conn.Close()
			s.session(textproto.NewConn(conn))
		}()
	}
}

func (s *Server) session(c *textproto.Conn) {
	say := func(code int, text string) bool { return c.PrintfLine("%d %s", code, text) == nil }
	if !say(220, "localhost smtptest ready") {
		return
	}
	var cur Message
	for {
		line, err := c.ReadLine()
		if err != nil {
			return
		}
		cmd, arg, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		if code, text := s.override(cmd, arg); code != 0 {
			if !say(code, text) {
				return
			}
			continue
		}
		switch cmd {
		case "EHLO":
			if c.PrintfLine("250-localhost") != nil || !say(250, "8BITMIME") {
				return
			}
		case "HELO", "NOOP":
			say(250, "ok")
		case "RSET":
			cur = Message{}
			say(250, "ok")
		case "MAIL":
			cur = Message{From: addr(arg)}
			say(250, "ok")
		case "RCPT":
			cur.To = append(cur.To, addr(arg))
			say(250, "ok")
		case "DATA":
			if !say(354, "end with <CRLF>.<CRLF>") {
				return
			}
			data, err := c.ReadDotBytes()
			if err != nil {
				return
			}
			cur.Data = strings.ReplaceAll(string(data), "\n", "\r\n")
			if code, text := s.override("DATA-END", ""); code != 0 {
				say(code, text)
				cur = Message{}
				continue
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, cur)
			s.mu.Unlock()
			cur = Message{}
			say(250, "queued")
		case "QUIT":
			say(221, "bye")
			return
		default:
			say(502, "command not implemented")
		}
	}
}

// addr takes the address out of "FROM:<a@b>" or "TO:<a@b> params".
func addr(arg string) string {
	if i := strings.IndexByte(arg, '<'); i >= 0 {
		if j := strings.IndexByte(arg[i:], '>'); j >= 0 {
			return arg[i+1 : i+j]
		}
	}
	_, a, _ := strings.Cut(arg, ":")
	return strings.TrimSpace(a)
}
