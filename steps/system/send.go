package system

import (
	"context"

	"github.com/trellisflow/trellis/flow"
)

// The BullMQ system's typed senders (sendNotificationMessage, …): each queues one job
// of its type with the user in the envelope and the client's default
// options.

// SendTest queues a TEST message.
func SendTest(ctx context.Context, c *flow.Client, m Test, userID string) (flow.EnqueuedJob, error) {
	return c.Add(ctx, m, &flow.NodeOpts{UserID: userID})
}

// SendUserAction queues the record of a user action.
func SendUserAction(ctx context.Context, c *flow.Client, userID, action string, details map[string]any) (flow.EnqueuedJob, error) {
	return c.Add(ctx, UserAction{UserID: userID, Action: action, Details: details}, &flow.NodeOpts{UserID: userID})
}

// SendNotification queues a notification (the BullMQ system's
// sendNotificationMessage(userId, title, message, type, actionUrl)).
func SendNotification(ctx context.Context, c *flow.Client, userID, title, message, typ, actionURL string) (flow.EnqueuedJob, error) {
	return c.Add(ctx, Notification{UserID: userID, Title: title, Message: message, Type: typ, ActionURL: actionURL},
		&flow.NodeOpts{UserID: userID})
}

// SendEmail queues an email.
func SendEmail(ctx context.Context, c *flow.Client, to, subject, body, userID string) (flow.EnqueuedJob, error) {
	return c.Add(ctx, Email{To: to, Subject: subject, Body: body}, &flow.NodeOpts{UserID: userID})
}

// SendDataSync queues the export of a plan's tree.
func SendDataSync(ctx context.Context, c *flow.Client, planID, userID string) (flow.EnqueuedJob, error) {
	return c.Add(ctx, DataSync{PlanID: planID, Direction: "export"}, &flow.NodeOpts{UserID: userID})
}

// SendDataRestore queues the import of export run runID (an earlier
// DATA_SYNC export job's ID) back into plan planID.
func SendDataRestore(ctx context.Context, c *flow.Client, planID, runID, userID string) (flow.EnqueuedJob, error) {
	return c.Add(ctx, DataSync{PlanID: planID, Direction: "import", RunID: runID}, &flow.NodeOpts{UserID: userID})
}
