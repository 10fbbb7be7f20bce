package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/steps/system"
)

// The worker's SMTP and webhook settings: TLS by port unless chosen,
// SMTP_HOST/SMTP_PORT as an alternative to SMTP_ADDR, a CA file, and a
// warning for each side effect left unconfigured.
func TestSystemOptionsFromSettings(t *testing.T) {
	t.Parallel()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, selfSignedPEM(t), 0o600))
	for _, c := range []struct {
		name  string
		flags stepFlags
		env   map[string]string
		addr  string
		mode  system.TLSMode
		user  string
	}{
		{"465 is implicit TLS", stepFlags{smtpAddr: "smtp.example.com:465", smtpFrom: "c@example.com", smtpUser: "u"}, nil,
			"smtp.example.com:465", system.TLSImplicit, "u"},
		{"587 is STARTTLS", stepFlags{smtpAddr: "smtp.example.com:587", smtpFrom: "c@example.com"}, nil,
			"smtp.example.com:587", system.TLSStartTLS, ""},
		{"25 is plain", stepFlags{smtpAddr: "127.0.0.1:25", smtpFrom: "c@example.com"}, nil, "127.0.0.1:25", system.TLSNone, ""},
		{"the flag wins over the port", stepFlags{smtpAddr: "smtp.example.com:2525", smtpFrom: "c@example.com", smtpTLS: "starttls", smtpUser: "u"}, nil,
			"smtp.example.com:2525", system.TLSStartTLS, "u"},
		{"the environment", stepFlags{}, map[string]string{"SMTP_ADDR": "smtp.example.com:2465", "SMTP_FROM": "Coach <c@example.com>",
			"SMTP_TLS": "TLS", "SMTP_USER": "coach", "SMTP_PASSWORD": "pw", "SMTP_CA_FILE": ca}, "smtp.example.com:2465", system.TLSImplicit, "coach"},
		{"SMTP_HOST and SMTP_PORT", stepFlags{}, map[string]string{"SMTP_HOST": "smtp.example.com", "SMTP_PORT": "465", "SMTP_FROM": "c@example.com"},
			"smtp.example.com:465", system.TLSImplicit, ""},
		{"SMTP_HOST alone is submission", stepFlags{}, map[string]string{"SMTP_HOST": "smtp.example.com", "SMTP_FROM": "c@example.com", "SMTP_USER": "u"},
			"smtp.example.com:587", system.TLSStartTLS, "u"},
	} {
		cl := &cli{getenv: func(k string) string { return c.env[k] }}
		f := c.flags
		opts, warnings, err := cl.systemOptions(&f)
		require.NoError(t, err, c.name)
		m, ok := opts.Mailer.(*system.SMTPMailer)
		require.True(t, ok, c.name)
		require.Equal(t, []any{c.addr, c.mode, c.user}, []any{m.Addr, m.TLS, m.Username}, c.name)
		require.Len(t, warnings, 1, c.name)
		require.Contains(t, warnings[0], "no notification webhook (--notify-url or TRELLIS_NOTIFY_URL)", c.name)
		if c.env["SMTP_CA_FILE"] != "" {
			require.NotNil(t, m.TLSConfig, c.name)
			require.Equal(t, "pw", m.Password)
		}
	}

	cl := &cli{getenv: func(k string) string {
		return map[string]string{"TRELLIS_NOTIFY_URL": "https://hooks.example.com/trellis", "TRELLIS_NOTIFY_SECRET": "s"}[k]
	}}
	opts, warnings, err := cl.systemOptions(&stepFlags{})
	require.NoError(t, err)
	require.Nil(t, opts.Mailer)
	require.Equal(t, &system.WebhookNotifier{URL: "https://hooks.example.com/trellis", Secret: "s"}, opts.Notifier)
	require.Len(t, warnings, 1)
	require.Contains(t, warnings[0], "no SMTP server (--smtp-addr, SMTP_ADDR or SMTP_HOST): EMAIL jobs are stored in the outbox, not sent")
}

// selfSignedPEM is a throwaway CA certificate, only to be read.
func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
