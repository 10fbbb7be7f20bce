package system

import (
	"encoding/json"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/internal/field"
)

// The bounds of the fields the system messages store, from the columns
// that store them (package schema): each Validate checks them first.

func (m UserAction) bounds() error {
	if err := field.First(field.Text("userId", m.UserID, schema.MaxID), field.Text("action", m.Action, schema.MaxName)); err != nil {
		return err
	}
	if m.Details == nil {
		return nil
	}
	raw, err := json.Marshal(m.Details)
	if err != nil {
		return flow.FieldError("details", "cannot encode: %v", err)
	}
	return field.Text("details", string(raw), schema.MaxDetails)
}

func (m Notification) bounds() error {
	return field.First(
		field.Text("userId", m.UserID, schema.MaxID),
		field.Text("title", m.Title, schema.MaxTitle),
		field.Text("message", m.Message, schema.MaxMessage),
		field.Text("actionUrl", m.ActionURL, schema.MaxURL),
	)
}

func (m Email) bounds() error {
	return field.First(
		field.Text("to", m.To, schema.MaxEmailAddress),
		field.Text("subject", m.Subject, schema.MaxSubject),
		field.Text("body", m.Body, schema.MaxBody),
	)
}

func (m DataSync) bounds() error {
	return field.First(field.Text("planId", m.PlanID, schema.MaxID), field.Text("runId", m.RunID, schema.MaxJobID))
}
