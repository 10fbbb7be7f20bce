// Command smtpd runs an smtptest server for the tests of another process
// (the trellis binary, which cannot import an internal package): it prints
// "addr=HOST:PORT", then one JSON line per message it accepts, and stops
// when its stdin closes.
//
//	smtpd -tls starttls -user coach:s3cret -ca /tmp/ca.pem
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/trellisflow/trellis/steps/internal/smtptest"
)

func main() {
	mode := flag.String("tls", "none", "none, starttls or tls")
	user := flag.String("user", "", "an account NAME:PASSWORD; AUTH is then required")
	ca := flag.String("ca", "", "write the server's certificate (PEM) to this file")
	flag.Parse()
	if err := run(*mode, *user, *ca); err != nil {
		fmt.Fprintln(os.Stderr, "smtpd:", err)
		os.Exit(1)
	}
}

func run(mode, user, ca string) error {
	var o smtptest.Options
	switch mode {
	case "none":
	case "starttls":
		o.TLS = smtptest.StartTLS
	case "tls":
		o.TLS = smtptest.Implicit
	default:
		return fmt.Errorf("-tls %q: want none, starttls or tls", mode)
	}
	if user != "" {
		name, pass, ok := strings.Cut(user, ":")
		if !ok {
			return fmt.Errorf("-user %q: want NAME:PASSWORD", user)
		}
		o.Users = map[string]string{name: pass}
	}
	s, err := smtptest.New(o)
	if err != nil {
		return err
	}
	defer s.Close()
	if ca != "" {
		if err := os.WriteFile(ca, s.CertPEM(), 0o600); err != nil {
			return err
		}
	}
	fmt.Printf("addr=%s\n", s.Addr())
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	enc := json.NewEncoder(os.Stdout)
	printed := 0
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		msgs := s.Messages()
		for ; printed < len(msgs); printed++ {
			if err := enc.Encode(msgs[printed]); err != nil {
				return err
			}
		}
		select {
		case <-done:
			return nil
		case <-tick.C:
		}
	}
}
