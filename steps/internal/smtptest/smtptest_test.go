package smtptest

import (
	"crypto/tls"
	"errors"
	"net/smtp"
	"net/textproto"
	"testing"
)

func TestPath(t *testing.T) {
	t.Parallel()
	for arg, want := range map[string]string{
		"FROM:<a@example.com>":             "a@example.com",
		"from: <a@example.com> SIZE=10":    "a@example.com",
		"FROM:<>":                          "",
		"TO:<bob+tag@sub.example.com>":     "bob+tag@sub.example.com",
		"TO:<Bob <bob@example.com>>":       "!",
		"TO:<bob smith@example.com>":       "!",
		"TO:bob@example.com":               "!",
		"TO:<bob@example.com":              "!",
		"TO:<a@b@example.com>":             "!",
		"TO:<\"bob smith\"@example.com>":   "!",
		"TO:<bob@example.com>junk":         "!",
		"RCPT:<bob@example.com>":           "!",
		"FROM:<noreply@example.com> BODY=": "noreply@example.com",
	} {
		prefix := "FROM:"
		if len(arg) > 2 && (arg[:2] == "TO" || arg[:2] == "RC") {
			prefix = "TO:"
		}
		got, ok := path(arg, prefix)
		if want == "!" {
			if ok {
				t.Errorf("path(%q) = %q, want it refused", arg, got)
			}
			continue
		}
		if !ok || got != want {
			t.Errorf("path(%q) = %q, %v; want %q", arg, got, ok, want)
		}
	}
}

// The server's own check: a client must upgrade before AUTH and MAIL, and
// then authenticates against the accounts.
func TestStartTLSAndAuth(t *testing.T) {
	t.Parallel()
	s := StartWith(t, Options{TLS: StartTLS, Users: map[string]string{"u": "p"}})
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered before STARTTLS")
	}
	if err := c.Mail("a@example.com"); code(err) != 530 {
		t.Errorf("MAIL before STARTTLS: %v, want 530", err)
	}
	if err := c.StartTLS(&tls.Config{RootCAs: s.RootCAs(), ServerName: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if ok, mechs := c.Extension("AUTH"); !ok || mechs != "PLAIN LOGIN" {
		t.Errorf("AUTH after STARTTLS: %v %q", ok, mechs)
	}
	if err := c.Mail("a@example.com"); code(err) != 530 {
		t.Errorf("MAIL before AUTH: %v, want 530", err)
	}
	if err := c.Auth(smtp.PlainAuth("", "u", "p", "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.com"); err != nil {
		t.Fatal(err)
	}
	if got := s.Auths(); len(got) != 1 || got[0] != "u:ok" {
		t.Errorf("Auths() = %v", got)
	}
}

func code(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}
