package schema

import (
	"time"

	"github.com/uptrace/bun"
)

// Plan is a workout plan of one client, written by one trainer.
type Plan struct {
	bun.BaseModel `bun:"table:workout_plans"`

	ID        string    `bun:"id,pk"`
	Name      string    `bun:"name"`
	ClientID  string    `bun:"client_id"`
	TrainerID string    `bun:"trainer_id"`
	IsActive  bool      `bun:"is_active"`
	CreatedAt time.Time `bun:"created_at"`
	UpdatedAt time.Time `bun:"updated_at"`
	// FullSaveJob is the job of the full plan save that last replaced the
	// plan's tree, and FullSaveAt when that job was enqueued (Unix ns): a
	// save enqueued earlier than it, or a create of another save's tree,
	// writes nothing.
	FullSaveJob string `bun:"full_save_job"`
	FullSaveAt  int64  `bun:"full_save_at"`
}

// Phase is a block of a plan; deleting it deletes its sessions.
type Phase struct {
	bun.BaseModel `bun:"table:workout_phases"`

	ID          string    `bun:"id,pk"`
	PlanID      string    `bun:"plan_id"`
	Name        string    `bun:"name"`
	OrderNumber int       `bun:"order_number"`
	IsActive    bool      `bun:"is_active"`
	CreatedAt   time.Time `bun:"created_at"`
	UpdatedAt   time.Time `bun:"updated_at"`
}

// Session is one training day of a phase; deleting it deletes its exercises.
type Session struct {
	bun.BaseModel `bun:"table:workout_sessions"`

	ID          string    `bun:"id,pk"`
	PhaseID     string    `bun:"phase_id"`
	Name        string    `bun:"name"`
	OrderNumber int       `bun:"order_number"`
	CreatedAt   time.Time `bun:"created_at"`
	UpdatedAt   time.Time `bun:"updated_at"`
}

// Exercise is one exercise of a session.
type Exercise struct {
	bun.BaseModel `bun:"table:workout_exercises"`

	ID          string    `bun:"id,pk"`
	SessionID   string    `bun:"session_id"`
	Name        string    `bun:"name"`
	OrderNumber int       `bun:"order_number"`
	Sets        int       `bun:"sets"`
	Reps        int       `bun:"reps"`
	Weight      float64   `bun:"weight"`
	RestSeconds int       `bun:"rest_seconds"`
	Tempo       string    `bun:"tempo"`
	Notes       string    `bun:"notes"`
	CreatedAt   time.Time `bun:"created_at"`
	UpdatedAt   time.Time `bun:"updated_at"`
}

// UserAction is one tracked user action; its ID is the job's. ActedAt is
// when the user acted (the envelope's timestamp, as the client sent it),
// CreatedAt when the row was written; ActedAt is NULL in rows written before
// it existed.
type UserAction struct {
	bun.BaseModel `bun:"table:user_actions"`

	ID        string    `bun:"id,pk"`
	UserID    string    `bun:"user_id"`
	Action    string    `bun:"action"`
	Details   string    `bun:"details"` // JSON object
	ActedAt   time.Time `bun:"acted_at,nullzero"`
	CreatedAt time.Time `bun:"created_at"`
}

// The statuses of an outbox row (Email, Notification): pending while its
// job will send it, sent or delivered once done, undelivered when nothing
// will try again by itself (no Mailer or Notifier was configured, the
// failure was permanent, or the job's last attempt failed; LastError says
// which) until a redelivery.
const (
	OutboxPending     = "pending"
	OutboxUndelivered = "undelivered"
	EmailSent         = "sent"
	NotificationDone  = "delivered"
)

// Outbox are the delivery columns an outbox row has: its status, how many
// sends were tried, the last one's error, and ClaimedUntil (Unix ms), the
// end of the claim of the sender now trying, which keeps a re-run of the
// job and a redelivery from sending at the same time.
type Outbox struct {
	Status       string `bun:"status"`
	Attempts     int    `bun:"attempts"`
	LastError    string `bun:"last_error"`
	ClaimedUntil int64  `bun:"claimed_until"`
}

// Notification is a stored notification; DeliveredAt is set once the
// Notifier took it. Its ID is the job's.
type Notification struct {
	bun.BaseModel `bun:"table:notifications"`

	ID          string     `bun:"id,pk"`
	UserID      string     `bun:"user_id"`
	Title       string     `bun:"title"`
	Message     string     `bun:"message"`
	Type        string     `bun:"type"`
	ActionURL   string     `bun:"action_url"`
	CreatedAt   time.Time  `bun:"created_at"`
	DeliveredAt *time.Time `bun:"delivered_at"`
	Outbox
}

// Email is an outbox row: written with the step's record, sent after the
// commit, and marked SentAt so a re-run does not send it again. Its ID is
// the job's.
type Email struct {
	bun.BaseModel `bun:"table:email_outbox"`

	ID        string     `bun:"id,pk"`
	To        string     `bun:"to_address"` // as the job gave it, display name and all
	Subject   string     `bun:"subject"`
	Body      string     `bun:"body"`
	CreatedAt time.Time  `bun:"created_at"`
	SentAt    *time.Time `bun:"sent_at"`
	Outbox
}

// DataSyncRun records one DATA_SYNC export with its JSON snapshot. Its ID is
// the job's.
type DataSyncRun struct {
	bun.BaseModel `bun:"table:data_sync_runs"`

	ID        string    `bun:"id,pk"`
	PlanID    string    `bun:"plan_id"`
	Direction string    `bun:"direction"`
	Phases    int       `bun:"phases"`
	Sessions  int       `bun:"sessions"`
	Exercises int       `bun:"exercises"`
	Snapshot  string    `bun:"snapshot"`
	CreatedAt time.Time `bun:"created_at"`
}

// StepRun is the record that makes a step effectively-once: it commits in
// the same transaction as the step's effects, keyed by the job ID, and holds
// the result a re-run returns instead of applying the effects again.
type StepRun struct {
	bun.BaseModel `bun:"table:trellis_step_runs"`

	JobID       string `bun:"job_id,pk"`
	MessageType string `bun:"message_type"`
	// EnqueuedAt is the envelope's timestamp (RFC 3339, UTC): it tells
	// this job from an earlier one with the same ID that the engine has
	// since forgotten (finished flows are trimmed, and IDs may be reused).
	EnqueuedAt string    `bun:"enqueued_at"`
	Attempt    int       `bun:"attempt"` // the attempt that committed
	Result     string    `bun:"result"`  // JSON
	CreatedAt  time.Time `bun:"created_at"`
}
