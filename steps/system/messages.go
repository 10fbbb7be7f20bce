package system

import (
	"strings"

	"github.com/trellisflow/trellis/flow"
)

// The system message types, exactly as the BullMQ system they replace names them.
const (
	TypeTest         = "TEST"
	TypeUserAction   = "USER_ACTION"
	TypeNotification = "NOTIFICATION"
	TypeEmail        = "EMAIL"
	TypeDataSync     = "DATA_SYNC"
)

// Test is a message for demos and the test page: the step logs it and
// returns its data, after sleeping SleepMS and failing (retryably) the first
// FailTimes attempts.
type Test struct {
	Message   string         `json:"message"`
	Data      map[string]any `json:"data,omitempty"`
	SleepMS   int            `json:"sleepMs,omitempty"`
	FailTimes int            `json:"failTimes,omitempty"`
}

// UserAction records something a user did.
type UserAction struct {
	UserID  string         `json:"userId"`
	Action  string         `json:"action"`
	Details map[string]any `json:"details,omitempty"`
}

// Notification is a message for one user: stored, then handed to the
// Notifier (a push service, a websocket hub…).
type Notification struct {
	UserID  string `json:"userId"`
	Title   string `json:"title"`
	Message string `json:"message"`
	// Type is info (the default), success, warning or error.
	Type      string `json:"type,omitempty"`
	ActionURL string `json:"actionUrl,omitempty"`
}

// Email is a plain-text email to one recipient: an address with or
// without a display name ("Bob <bob@example.com>"; see ParseAddress). A
// list is refused: one job per recipient keeps each send's outcome, retry
// and outbox row its own.
type Email struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
}

// DataSync moves a plan's whole tree in or out as a JSON snapshot in the
// shape of WORKOUT_PLAN_FULL_SAVE, and records the run.
//
// Export (the default) reads the plan and stores the snapshot. Import
// restores the snapshot of an earlier export run (RunID, the export job's
// ID) of the same plan: the job expands into a full plan save of it.
type DataSync struct {
	PlanID string `json:"planId"`
	// Direction is "export" (the default) or "import".
	Direction string `json:"direction,omitempty"`
	// RunID is the export run an import restores; required for imports.
	RunID string `json:"runId,omitempty"`
}

func (Test) MessageType() string         { return TypeTest }
func (UserAction) MessageType() string   { return TypeUserAction }
func (Notification) MessageType() string { return TypeNotification }
func (Email) MessageType() string        { return TypeEmail }
func (DataSync) MessageType() string     { return TypeDataSync }

func required(field, v string) error {
	if strings.TrimSpace(v) == "" {
		return flow.FieldError(field, "is required")
	}
	return nil
}

// Validate checks the message; errors name the field.
func (m Test) Validate() error {
	if m.SleepMS < 0 || m.SleepMS > 10*60*1000 {
		return flow.FieldError("sleepMs", "%d is outside 0..600000", m.SleepMS)
	}
	if m.FailTimes < 0 {
		return flow.FieldError("failTimes", "must not be negative, got %d", m.FailTimes)
	}
	return nil
}

// Validate checks the message; errors name the field.
func (m UserAction) Validate() error {
	if err := m.bounds(); err != nil {
		return err
	}
	if err := required("userId", m.UserID); err != nil {
		return err
	}
	return required("action", m.Action)
}

// Validate checks the message; errors name the field.
func (m Notification) Validate() error {
	if err := m.bounds(); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"userId", m.UserID}, {"title", m.Title}, {"message", m.Message}} {
		if err := required(f.name, f.v); err != nil {
			return err
		}
	}
	switch m.Type {
	case "", "info", "success", "warning", "error":
		return nil
	}
	return flow.FieldError("type", "%q is not info, success, warning or error", m.Type)
}

// Validate checks the message; errors name the field.
func (m Email) Validate() error {
	if err := m.bounds(); err != nil {
		return err
	}
	if err := required("to", m.To); err != nil {
		return err
	}
	if _, err := ParseAddress(m.To); err != nil {
		return flow.FieldError("to", "%q is not one email address: %v", m.To, err)
	}
	if err := required("subject", m.Subject); err != nil {
		return err
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		return flow.FieldError("subject", "contains a line break")
	}
	return nil
}

// Validate checks the message; errors name the field.
func (m DataSync) Validate() error {
	if err := m.bounds(); err != nil {
		return err
	}
	if err := required("planId", m.PlanID); err != nil {
		return err
	}
	switch m.Direction {
	case "", "export":
		if m.RunID != "" {
			return flow.FieldError("runId", "is only for imports")
		}
		return nil
	case "import":
		return required("runId", m.RunID)
	}
	return flow.FieldError("direction", "%q is not export or import", m.Direction)
}

// RegisterTypes adds the five system message types to reg, for decoding
// JSON envelopes.
func RegisterTypes(reg *flow.Registry) {
	flow.RegisterType[Test](reg)
	flow.RegisterType[UserAction](reg)
	flow.RegisterType[Notification](reg)
	flow.RegisterType[Email](reg)
	flow.RegisterType[DataSync](reg)
}
