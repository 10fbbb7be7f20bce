package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"os"
	"time"

	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/steps/system"
	"github.com/trellisflow/trellis/steps/workout"
	"github.com/trellisflow/trellis/steps/workout/csvplan"
)

// stepFlags configure the system steps' side effects.
type stepFlags struct {
	smtpAddr, smtpFrom, smtpUser, smtpPassword string
}

func (c *cli) stepFlags(fs *flag.FlagSet) *stepFlags {
	s := &stepFlags{}
	fs.StringVar(&s.smtpAddr, "smtp-addr", "", "SMTP server host:port for EMAIL jobs (default $SMTP_ADDR; none: EMAIL jobs fail with \"no Mailer configured\")")
	fs.StringVar(&s.smtpFrom, "smtp-from", "", "sender address of EMAIL jobs (default $SMTP_FROM)")
	fs.StringVar(&s.smtpUser, "smtp-user", "", "SMTP PLAIN auth user (default $SMTP_USER; with $SMTP_PASSWORD)")
	return s
}

func (c *cli) systemOptions(s *stepFlags) (system.Options, error) {
	if s.smtpAddr == "" {
		s.smtpAddr = c.getenv("SMTP_ADDR")
	}
	if s.smtpFrom == "" {
		s.smtpFrom = c.getenv("SMTP_FROM")
	}
	if s.smtpUser == "" {
		s.smtpUser = c.getenv("SMTP_USER")
	}
	s.smtpPassword = c.getenv("SMTP_PASSWORD")
	if s.smtpAddr == "" {
		return system.Options{}, nil
	}
	host, _, err := net.SplitHostPort(s.smtpAddr)
	if err != nil {
		return system.Options{}, usagef("--smtp-addr %q: %v", s.smtpAddr, err)
	}
	if s.smtpFrom == "" {
		return system.Options{}, usagef("--smtp-from is required with --smtp-addr")
	}
	m := &system.SMTPMailer{Addr: s.smtpAddr, From: s.smtpFrom}
	if s.smtpUser != "" {
		m.Auth = smtp.PlainAuth("", s.smtpUser, s.smtpPassword, host)
	}
	return system.Options{Mailer: m}, nil
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
		if j.State != flow.Succeeded {
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
		"to", e.To, "subject", e.Subject, "message_id", e.MessageID, "bytes", len(e.Body))
	return nil
}
