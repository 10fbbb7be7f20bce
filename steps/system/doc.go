// Package system holds the steps of the core system messages of the BullMQ system Trellis replaces: TEST
// (logs and returns its data; can sleep or fail on demand, for demos and
// the test page), USER_ACTION (stores the action), NOTIFICATION (stores it,
// then delivers it through a Notifier; WebhookNotifier POSTs it, signed),
// EMAIL (an outbox row, then a Mailer; SMTPMailer sends with net/smtp, over
// STARTTLS or TLS, with AUTH PLAIN or LOGIN) and DATA_SYNC (exports a plan's
// whole tree as a JSON snapshot and records the run, or restores an
// exported snapshot by expanding into a full plan save).
//
// Like the workout steps, they are effectively-once: the rows they write
// commit with a step record keyed by the job ID, and side effects outside
// the database (mail, notifications) are sent after the commit and marked
// done, so a re-run does not repeat them.
//
// The outbox rows (email_outbox, notifications) say how delivery went:
// pending while the job will send, sent or delivered, or undelivered with
// the reason when nothing will try again by itself: no Mailer or Notifier
// was configured (the job then succeeds with sent or delivered false), the
// failure was permanent (a 5xx SMTP reply, a 4xx webhook answer but 408 and
// 429), or the job's last attempt failed. Each send claims its row for a
// while, so a re-run whose lease expired during a slow send, or a
// redelivery, does not send a second copy. Redeliver (the CLI's
// `trellis redeliver`) sends the undelivered rows once a Mailer or Notifier
// is there; the Message-ID and the webhook's Idempotency-Key stay those of
// the job, for receivers to drop a repeat.
package system
