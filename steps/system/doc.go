// Package system holds the steps of the seed's core system messages: TEST
// (logs and returns its data; can sleep or fail on demand, for demos and
// the test page), USER_ACTION (stores the action), NOTIFICATION (stores it,
// then delivers it through a Notifier), EMAIL (an outbox row, then a Mailer;
// SMTPMailer sends with net/smtp) and DATA_SYNC (exports a plan's whole tree
// as a JSON snapshot and records the run, or restores an exported snapshot
// by expanding into a full plan save).
//
// Like the workout steps, they are effectively-once: the rows they write
// commit with a step record keyed by the job ID, and side effects outside
// the database (mail, notifications) are sent after the commit and marked
// done, so a re-run does not repeat them.
package system
