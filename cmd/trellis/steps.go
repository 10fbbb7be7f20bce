package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/steps/system"
	"github.com/trellisflow/trellis/steps/workout"
	"github.com/trellisflow/trellis/steps/workout/csvplan"
)

// stepFlags configure the system steps' side effects: the SMTP server of
// EMAIL jobs and the webhook of NOTIFICATION jobs.
type stepFlags struct {
	smtpAddr, smtpFrom, smtpUser, smtpTLS, smtpCAFile string
	notifyURL, notifySecret                           string
}

func (c *cli) stepFlags(fs *flag.FlagSet) *stepFlags {
	s := &stepFlags{}
	fs.StringVar(&s.smtpAddr, "smtp-addr", "", "SMTP server host:port for EMAIL jobs (default $SMTP_ADDR, or $SMTP_HOST:$SMTP_PORT, port 587 by default;\n"+
		"none: EMAIL jobs are stored in the outbox, not sent, until trellis redeliver sends them)")
	fs.StringVar(&s.smtpFrom, "smtp-from", "", `sender of EMAIL jobs, e.g. "Coach <coach@example.com>" (default $SMTP_FROM)`)
	fs.StringVar(&s.smtpUser, "smtp-user", "", "SMTP AUTH (PLAIN or LOGIN) user, with the password in $SMTP_PASSWORD (default $SMTP_USER)")
	fs.StringVar(&s.smtpTLS, "smtp-tls", "", "none, starttls or tls (default $SMTP_TLS, else tls on port 465, starttls on 587, none otherwise);\n"+
		"the password is refused over none to anything but loopback")
	fs.StringVar(&s.smtpCAFile, "smtp-ca-file", "", "PEM file of CAs trusted for the SMTP server's certificate, beside the system's (default $SMTP_CA_FILE)")
	fs.StringVar(&s.notifyURL, "notify-url", "", "POST NOTIFICATION jobs as signed JSON to this webhook (default $TRELLIS_NOTIFY_URL;\n"+
		"none: they are stored, not delivered, until trellis redeliver delivers them)")
	fs.StringVar(&s.notifySecret, "notify-secret", "", "HMAC-SHA256 key of the webhook's Trellis-Signature header; required with --notify-url\n"+
		"(default $TRELLIS_NOTIFY_SECRET, which keeps it out of the process list)")
	return s
}

// setting is a flag's value, else an environment variable's, with the
// name to quote in an error.
func (c *cli) setting(flagValue, flagName, envName string) (string, string) {
	if flagValue != "" {
		return flagValue, flagName
	}
	return c.getenv(envName), envName
}

// systemOptions builds the system steps' Mailer and Notifier from the
// flags and environment. A setting that cannot work is a usage error, so
// the worker refuses to start; a side effect left unconfigured comes back
// as a warning naming what is missing.
func (c *cli) systemOptions(s *stepFlags) (system.Options, []string, error) {
	var opts system.Options
	var warnings []string
	m, err := c.mailer(s)
	if err != nil {
		return opts, nil, err
	}
	if m == nil {
		warnings = append(warnings, "no SMTP server (--smtp-addr, SMTP_ADDR or SMTP_HOST): EMAIL jobs are stored in the outbox, not sent; "+
			"`trellis redeliver` sends them once one is configured")
	} else {
		opts.Mailer = m
	}
	n, err := c.notifier(s)
	if err != nil {
		return opts, nil, err
	}
	if n == nil {
		warnings = append(warnings, "no notification webhook (--notify-url or TRELLIS_NOTIFY_URL): NOTIFICATION jobs are stored, not delivered; "+
			"`trellis redeliver` delivers them once one is configured")
	} else {
		opts.Notifier = n
	}
	return opts, warnings, nil
}

// mailer is the SMTPMailer of the settings, or nil when no server is set.
func (c *cli) mailer(s *stepFlags) (*system.SMTPMailer, error) {
	addr, addrName := c.setting(s.smtpAddr, "--smtp-addr", "SMTP_ADDR")
	if addr == "" {
		if host := c.getenv("SMTP_HOST"); host != "" {
			port := c.getenv("SMTP_PORT")
			if port == "" {
				port = "587"
			}
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return nil, usagef("SMTP_PORT: %q is not a port number", port)
			}
			addr, addrName = net.JoinHostPort(host, port), "SMTP_HOST"
		}
	}
	if addr == "" {
		return nil, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, usagef("%s %q: %v", addrName, addr, err)
	}
	from, fromName := c.setting(s.smtpFrom, "--smtp-from", "SMTP_FROM")
	if from == "" {
		return nil, usagef("--smtp-from (or SMTP_FROM) is required with %s", addrName)
	}
	if _, err := system.ParseAddress(from); err != nil {
		return nil, usagef("%s %q: %v", fromName, from, err)
	}
	mode := system.TLSNone
	switch port {
	case "465":
		mode = system.TLSImplicit
	case "587":
		mode = system.TLSStartTLS
	}
	if v, name := c.setting(s.smtpTLS, "--smtp-tls", "SMTP_TLS"); v != "" {
		if mode, err = system.ParseTLSMode(v); err != nil {
			return nil, usagef("%s: %v", name, err)
		}
	}
	user, userName := c.setting(s.smtpUser, "--smtp-user", "SMTP_USER")
	if user != "" && mode == system.TLSNone && !system.IsLoopbackHost(host) {
		return nil, usagef("%s: refusing to send the SMTP password unencrypted to %s; set --smtp-tls starttls (port 587) or tls (port 465)",
			userName, host)
	}
	m := &system.SMTPMailer{Addr: addr, From: from, TLS: mode, Username: user, Password: c.getenv("SMTP_PASSWORD")}
	if file, name := c.setting(s.smtpCAFile, "--smtp-ca-file", "SMTP_CA_FILE"); file != "" {
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, usagef("%s: %v", name, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("%s %s: no PEM certificate in it", name, file)
		}
		m.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if err := m.Check(); err != nil {
		return nil, usagef("%v", err)
	}
	return m, nil
}

// notifier is the WebhookNotifier of the settings, or nil when no URL is set.
func (c *cli) notifier(s *stepFlags) (*system.WebhookNotifier, error) {
	u, urlName := c.setting(s.notifyURL, "--notify-url", "TRELLIS_NOTIFY_URL")
	if u == "" {
		return nil, nil
	}
	secret, _ := c.setting(s.notifySecret, "--notify-secret", "TRELLIS_NOTIFY_SECRET")
	if secret == "" {
		return nil, usagef("%s needs --notify-secret or TRELLIS_NOTIFY_SECRET to sign deliveries", urlName)
	}
	w := &system.WebhookNotifier{URL: u, Secret: secret}
	if err := w.Check(); err != nil {
		return nil, usagef("%s: %v", urlName, err)
	}
	return w, nil
}

// allSteps are the steps `trellis worker` and `trellis dev` run: every
// message type.
func allSteps(db bun.IDB, opts system.Options) []flow.Step {
	return append(workout.Steps(db), system.Steps(db, opts)...)
}

// registerTypes adds every message type the binary knows, for enqueue.
func registerTypes(reg *flow.Registry) {
	workout.RegisterTypes(reg)
	system.RegisterTypes(reg)
}

var cmdSavePlan = &command{
	summary: "enqueue a full plan save (plan → phases → sessions → exercises) from a CSV file",
	usage:   "[flags] FILE.csv",
	detail: `The CSV has a header and one row per exercise; see the csvplan package for
the columns. Every problem is reported with its line and column. Each run
is a new save of the file unless --id names the job: then running it again
with the same file finds the first run's job ("existed": true) and saves
nothing twice. Prints {"jobId", "planId", "phases", "sessions",
"exercises", "state", "existed"}.`,
	run: runSavePlan,
}

func runSavePlan(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("save-plan")
	o := c.commonFlags(fs)
	var id, clientID, trainerID string
	var wait time.Duration
	var dry bool
	fs.StringVar(&id, "id", "", "the full save's job ID (default: a new one, so every run saves the file again); the same ID and file again returns the first run's job instead of saving twice (a safe retry), another file under a used ID is refused")
	fs.StringVar(&clientID, "client", "", "the client ID when the file has no client_id column")
	fs.StringVar(&trainerID, "trainer", "", "the trainer ID when the file has no trainer_id column")
	fs.DurationVar(&wait, "wait", 0, "wait up to this long for the whole plan to be saved")
	fs.BoolVar(&dry, "dry-run", false, "print the WORKOUT_PLAN_FULL_SAVE message instead of enqueuing it")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give exactly one FILE.csv")
	}
	if wait < 0 {
		return usagef("--wait %s: must not be negative", wait)
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := csvplan.Parse(f, &csvplan.Options{ClientID: clientID, TrainerID: trainerID})
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if dry {
		return c.printJSON(m)
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	var opts *flow.NodeOpts
	if id != "" {
		opts = &flow.NodeOpts{ID: id}
	}
	job, err := workout.QueueFullPlanSave(ctx, e.client, *m, opts)
	if err != nil {
		return err
	}
	sessions, exercises := 0, 0
	for _, p := range m.Phases {
		sessions += len(p.Sessions)
		for _, s := range p.Sessions {
			exercises += len(s.Exercises)
		}
	}
	out := map[string]any{"jobId": job.ID, "planId": m.PlanID, "phases": len(m.Phases), "sessions": sessions,
		"exercises": exercises, "state": job.State, "existed": job.Existed}
	if wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		fl, err := e.client.Wait(wctx, job.ID)
		if err != nil {
			return err
		}
		j, err := e.client.Job(ctx, job.ID)
		if err != nil {
			return err
		}
		out["state"], out["jobs"] = j.State, len(fl.Nodes)
		if j.State != dag.Succeeded {
			_ = c.printJSON(out)
			return errors.New("the plan was not saved: job " + job.ID + " is " + string(j.State))
		}
	}
	return c.printJSON(out)
}

// logMailer is `trellis dev`'s mailer when no SMTP server is configured: it
// logs each email instead of sending it.
type logMailer struct{ log *slog.Logger }

func (m logMailer) Send(ctx context.Context, e system.OutgoingEmail) error {
	m.log.Info("trellis dev: email not sent (no --smtp-addr); logged instead",
		"to", e.To.String(), "subject", e.Subject, "message_id", e.MessageID, "bytes", len(e.Body))
	return nil
}
