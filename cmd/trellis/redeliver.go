package main

import (
	"context"
	"fmt"

	"github.com/trellisflow/trellis/steps/system"
)

var cmdRedeliver = &command{
	summary: "send the stored emails and notifications that were not delivered",
	usage:   "[flags]",
	detail: `Takes the outbox rows marked undelivered, oldest first: those stored while
the worker had no SMTP server or webhook, refused for good, or failed on
their job's last attempt. Each goes through the SMTP server and webhook of
the flags and environment, which are the worker's. A row being sent by a
worker at the time is left to it. Prints one line per row and exits 1 if
any failed; those stay undelivered, with the new error. --list prints the
rows as JSON instead of sending them.`,
	run: runRedeliver,
}

func runRedeliver(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("redeliver")
	dbURL := fs.String("database-url", "", "the steps' database (default $DATABASE_URL)")
	kind := fs.String("kind", "all", "email, notification or all")
	limit := fs.Int("limit", 100, "at most this many rows of each kind")
	list := fs.Bool("list", false, "print the undelivered rows as JSON; send nothing")
	sf := c.stepFlags(fs)
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	var kinds []string
	switch *kind {
	case "all":
		kinds = []string{system.KindEmail, system.KindNotification}
	case system.KindEmail, system.KindNotification:
		kinds = []string{*kind}
	default:
		return usagef("--kind %q: must be email, notification or all", *kind)
	}
	if *limit < 1 {
		return usagef("--limit %d: must be at least 1", *limit)
	}
	var opts system.Options
	if !*list {
		var err error
		if opts, _, err = c.systemOptions(sf); err != nil {
			return err
		}
		if *kind == system.KindNotification {
			opts.Mailer = nil
		}
		if *kind == system.KindEmail {
			opts.Notifier = nil
		}
		switch {
		case *kind == system.KindEmail && opts.Mailer == nil:
			return usagef("--kind email needs an SMTP server: --smtp-addr, SMTP_ADDR or SMTP_HOST")
		case *kind == system.KindNotification && opts.Notifier == nil:
			return usagef("--kind notification needs a webhook: --notify-url or TRELLIS_NOTIFY_URL")
		case opts.Mailer == nil && opts.Notifier == nil:
			return usagef("nothing to deliver with: set an SMTP server (--smtp-addr) or a webhook (--notify-url)")
		case *kind == "all" && opts.Mailer == nil:
			fmt.Fprintln(c.stderr, "trellis redeliver: emails skipped: no SMTP server (--smtp-addr, SMTP_ADDR or SMTP_HOST)")
		case *kind == "all" && opts.Notifier == nil:
			fmt.Fprintln(c.stderr, "trellis redeliver: notifications skipped: no webhook (--notify-url or TRELLIS_NOTIFY_URL)")
		}
	}
	db, err := c.openDB(*dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if *list {
		rows, err := system.ListUndelivered(ctx, db, *limit, kinds...)
		if err != nil {
			return err
		}
		if rows == nil {
			rows = []system.Undelivered{}
		}
		return c.printJSON(rows)
	}
	got, err := system.Redeliver(ctx, db, opts, *limit)
	failed := 0
	for _, r := range got {
		switch {
		case r.Err != nil:
			failed++
			fmt.Fprintf(c.stdout, "%s %s: failed: %v\n", r.Kind, r.ID, r.Err)
		case r.Kind == system.KindEmail:
			fmt.Fprintf(c.stdout, "%s %s: sent\n", r.Kind, r.ID)
		default:
			fmt.Fprintf(c.stdout, "%s %s: delivered\n", r.Kind, r.ID)
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%d delivered, %d failed\n", len(got)-failed, failed)
	if failed > 0 {
		return errQuiet
	}
	return nil
}
