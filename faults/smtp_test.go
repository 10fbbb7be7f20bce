package faults_test

import (
	"io"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"
)

// smtpSink is a minimal SMTP server on loopback that records the
// Message-ID of every message delivered to it.
type smtpSink struct {
	ln net.Listener
	mu sync.Mutex
	by map[string]int // Message-ID -> deliveries
}

func newSMTPSink(t *testing.T) *smtpSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtp sink: %v", err)
	}
	s := &smtpSink{ln: ln, by: map[string]int{}}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpSink) Addr() string { return s.ln.Addr().String() }

func (s *smtpSink) deliveries() (messages, total int, most int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.by {
		total += n
		most = max(most, n)
	}
	return len(s.by), total, most
}

func (s *smtpSink) serve(c net.Conn) {
	defer c.Close()
	tp := textproto.NewConn(c)
	reply := func(code int, msg string) bool { return tp.PrintfLine("%d %s", code, msg) == nil }
	if !reply(220, "sink ready") {
		return
	}
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO":
			if tp.PrintfLine("250-sink") != nil || !reply(250, "8BITMIME") {
				return
			}
		case "DATA":
			if !reply(354, "go ahead") {
				return
			}
			msg, err := mail.ReadMessage(tp.DotReader())
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, msg.Body)
			s.mu.Lock()
			s.by[msg.Header.Get("Message-ID")]++
			s.mu.Unlock()
			if !reply(250, "queued") {
				return
			}
		case "QUIT":
			reply(221, "bye")
			return
		default: // HELO, MAIL, RCPT, RSET, NOOP
			if !reply(250, "ok") {
				return
			}
		}
	}
}
