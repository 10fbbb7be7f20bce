package system

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/steprun"
	"github.com/trellisflow/trellis/steps/workout"
)

// Notifier delivers a stored notification. Errors are retried unless
// flow.Permanent.
type Notifier interface {
	Notify(ctx context.Context, id string, n Notification) error
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(ctx context.Context, id string, n Notification) error

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, id string, n Notification) error {
	return f(ctx, id, n)
}

// Options configure the system steps. Every field is optional.
type Options struct {
	// Mailer sends EMAIL jobs. Default none: an EMAIL job then stores its
	// message in the outbox, undelivered, and succeeds with sent false;
	// Redeliver sends it once there is a Mailer.
	Mailer Mailer
	// Notifier delivers NOTIFICATION jobs (see WebhookNotifier). Default
	// none: notifications are stored undelivered, for Redeliver, and the
	// job succeeds with delivered false.
	Notifier Notifier
}

// TestResult is what a TEST job returns.
type TestResult struct {
	Message string         `json:"message"`
	Data    map[string]any `json:"data,omitempty"`
	Attempt int            `json:"attempt"`
}

// StoredResult is what USER_ACTION returns: the row's ID (the job's).
type StoredResult struct {
	ID string `json:"id"`
}

// NotificationResult is what NOTIFICATION returns.
type NotificationResult struct {
	ID        string `json:"id"`
	Delivered bool   `json:"delivered"`
	// Status is the outbox row's: delivered, or undelivered with Reason.
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// EmailResult is what EMAIL returns.
type EmailResult struct {
	ID        string `json:"id"`
	MessageID string `json:"messageId"`
	To        string `json:"to"`
	Sent      bool   `json:"sent"`
	// Status is the outbox row's: sent, or undelivered with Reason.
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// DataSyncResult is what DATA_SYNC returns.
type DataSyncResult struct {
	RunID     string `json:"runId"` // this run: the job's ID
	Direction string `json:"direction"`
	PlanID    string `json:"planId"`
	Phases    int    `json:"phases"`
	Sessions  int    `json:"sessions"`
	Exercises int    `json:"exercises"`
	Bytes     int    `json:"bytes"`
}

// Steps returns one step for each of the five system message types. Register
// them all with one call:
//
//	r.Register(system.Steps(db, system.Options{Mailer: m})...)
func Steps(db bun.IDB, opts Options) []flow.Step {
	return []flow.Step{
		flow.StepFunc(testStep),
		steprun.Step(db, userAction),
		notificationStep(db, opts.Notifier),
		emailStep(db, opts.Mailer),
		dataSyncStep(db),
	}
}

func testStep(ctx context.Context, sc *flow.StepContext, m Test) (TestResult, error) {
	sc.Logger.InfoContext(ctx, "test message", slog.String("job", sc.JobID), slog.Int("attempt", sc.Attempt),
		slog.String("message", m.Message), slog.Any("data", m.Data))
	if m.SleepMS > 0 {
		t := time.NewTimer(time.Duration(m.SleepMS) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return TestResult{}, ctx.Err()
		case <-t.C:
		}
	}
	if sc.Attempt <= m.FailTimes {
		return TestResult{}, fmt.Errorf("test: planned failure on attempt %d of the first %d", sc.Attempt, m.FailTimes)
	}
	return TestResult{Message: m.Message, Data: m.Data, Attempt: sc.Attempt}, nil
}

func userAction(ctx context.Context, tx bun.Tx, sc *flow.StepContext, m UserAction) (StoredResult, error) {
	details := m.Details
	if details == nil {
		details = map[string]any{}
	}
	raw, err := json.Marshal(details)
	if err != nil {
		return StoredResult{}, flow.Permanent(flow.FieldError("details", "cannot encode: %v", err))
	}
	_, err = tx.NewInsert().Model(&schema.UserAction{
		ID: sc.JobID, UserID: m.UserID, Action: m.Action, Details: string(raw),
		ActedAt: sc.Envelope.Timestamp.UTC(), CreatedAt: time.Now().UTC(),
	}).Exec(ctx)
	return StoredResult{ID: sc.JobID}, err
}

// notificationStep stores the notification with the step record, then
// delivers it and marks it delivered. A re-run skips the insert (the record
// is there) and delivers only if the mark is missing. Without a Notifier the
// row is stored undelivered, for Redeliver, and the job succeeds.
func notificationStep(db bun.IDB, notifier Notifier) flow.Step {
	return flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Notification) (NotificationResult, error) {
		if m.Type == "" {
			m.Type = "info"
		}
		status, reason := schema.OutboxPending, ""
		if notifier == nil {
			status, reason = schema.OutboxUndelivered, errNoNotifier.Error()
		}
		_, _, err := steprun.Do(ctx, db, sc, func(ctx context.Context, tx bun.Tx) (StoredResult, error) {
			_, err := tx.NewInsert().Model(&schema.Notification{
				ID: sc.JobID, UserID: m.UserID, Title: m.Title, Message: m.Message, Type: m.Type,
				ActionURL: m.ActionURL, CreatedAt: time.Now().UTC(),
				Outbox: schema.Outbox{Status: status, LastError: reason},
			}).Exec(ctx)
			return StoredResult{ID: sc.JobID}, err
		})
		if err != nil {
			return NotificationResult{}, err
		}
		var row schema.Notification
		if err := db.NewSelect().Model(&row).Where("id = ?", sc.JobID).Scan(ctx); err != nil {
			return NotificationResult{}, fmt.Errorf("read notification %s: %w", sc.JobID, err)
		}
		res := NotificationResult{ID: sc.JobID, Delivered: row.DeliveredAt != nil, Status: row.Status}
		if row.DeliveredAt != nil {
			return res, nil
		}
		if notifier == nil {
			// A row an earlier attempt left pending is handed to Redeliver too.
			if row.Status != schema.OutboxUndelivered {
				if err := notificationBox.fail(ctx, db, row.ID, schema.OutboxUndelivered, errNoNotifier.Error()); err != nil {
					return NotificationResult{}, err
				}
			}
			sc.Logger.WarnContext(ctx, "notification stored, not delivered: no Notifier configured", "job", sc.JobID)
			res.Status, res.Reason = schema.OutboxUndelivered, errNoNotifier.Error()
			return res, nil
		}
		if _, err := deliverNotification(ctx, db, notifier, &row, sc.Attempt >= sc.MaxAttempts); err != nil {
			return NotificationResult{}, fmt.Errorf("deliver notification %s: %w", sc.JobID, err)
		}
		return NotificationResult{ID: sc.JobID, Delivered: true, Status: schema.NotificationDone}, nil
	})
}

// deliverNotification hands a stored notification to notifier, once.
func deliverNotification(ctx context.Context, db bun.IDB, notifier Notifier, row *schema.Notification, last bool) (bool, error) {
	return notificationBox.deliver(ctx, db, row.ID, last, func(ctx context.Context) error {
		return notifier.Notify(ctx, row.ID, Notification{UserID: row.UserID, Title: row.Title, Message: row.Message,
			Type: row.Type, ActionURL: row.ActionURL})
	})
}

// MessageID is the Message-ID header of the email of job jobID.
func MessageID(jobID string) string {
	sum := sha256.Sum256([]byte(jobID))
	return "<" + hex.EncodeToString(sum[:16]) + "@trellis>"
}

var (
	errNoMailer   = errors.New("no Mailer configured: stored, not sent")
	errNoNotifier = errors.New("no Notifier configured: stored, not delivered")
)

// emailStep writes the email to the outbox with the step record, then
// sends it and marks it sent. A re-run finds the record, and sends only if
// the outbox row is not marked sent. Without a Mailer the row is stored
// undelivered, for Redeliver, and the job succeeds with sent false.
func emailStep(db bun.IDB, mailer Mailer) flow.Step {
	return flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Email) (EmailResult, error) {
		status, reason := schema.OutboxPending, ""
		if mailer == nil {
			status, reason = schema.OutboxUndelivered, errNoMailer.Error()
		}
		_, _, err := steprun.Do(ctx, db, sc, func(ctx context.Context, tx bun.Tx) (StoredResult, error) {
			_, err := tx.NewInsert().Model(&schema.Email{
				ID: sc.JobID, To: m.To, Subject: m.Subject, Body: m.Body, CreatedAt: time.Now().UTC(),
				Outbox: schema.Outbox{Status: status, LastError: reason},
			}).Exec(ctx)
			return StoredResult{ID: sc.JobID}, err
		})
		if err != nil {
			return EmailResult{}, err
		}
		res := EmailResult{ID: sc.JobID, MessageID: MessageID(sc.JobID), To: m.To}
		var row schema.Email
		if err := db.NewSelect().Model(&row).Where("id = ?", sc.JobID).Scan(ctx); err != nil {
			return EmailResult{}, fmt.Errorf("read outbox %s: %w", sc.JobID, err)
		}
		if row.SentAt != nil {
			res.Sent, res.Status = true, schema.EmailSent
			return res, nil
		}
		if mailer == nil {
			// A row an earlier attempt left pending is handed to Redeliver too.
			if row.Status != schema.OutboxUndelivered {
				if err := emailBox.fail(ctx, db, row.ID, schema.OutboxUndelivered, errNoMailer.Error()); err != nil {
					return EmailResult{}, err
				}
			}
			sc.Logger.WarnContext(ctx, "email stored, not sent: no Mailer configured", "job", sc.JobID)
			res.Status, res.Reason = schema.OutboxUndelivered, errNoMailer.Error()
			return res, nil
		}
		if _, err := sendEmail(ctx, db, mailer, &row, sc.Attempt >= sc.MaxAttempts); err != nil {
			return EmailResult{}, fmt.Errorf("send email %s: %w", sc.JobID, err)
		}
		res.Sent, res.Status = true, schema.EmailSent
		return res, nil
	})
}

// sendEmail sends a stored email through mailer, once. Its address was
// checked at enqueue; a row written otherwise that does not parse is a
// permanent failure.
func sendEmail(ctx context.Context, db bun.IDB, mailer Mailer, row *schema.Email, last bool) (bool, error) {
	return emailBox.deliver(ctx, db, row.ID, last, func(ctx context.Context) error {
		to, err := ParseAddress(row.To)
		if err != nil {
			return flow.Permanent(fmt.Errorf("recipient %q: %w", row.To, err))
		}
		return mailer.Send(ctx, OutgoingEmail{MessageID: MessageID(row.ID), To: *to, Subject: row.Subject, Body: row.Body})
	})
}

// RestoreNodeID is the ID of the full plan save an import expands into.
func RestoreNodeID(jobID string) string { return jobID + "/restore" }

func dataSyncStep(db bun.IDB) flow.Step {
	return flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m DataSync) (DataSyncResult, error) {
		if m.Direction != "import" {
			res, _, err := steprun.Do(ctx, db, sc, func(ctx context.Context, tx bun.Tx) (DataSyncResult, error) {
				snap, err := Snapshot(ctx, tx, m.PlanID)
				if err != nil {
					return DataSyncResult{}, err
				}
				return recordRun(ctx, tx, sc.JobID, "export", snap)
			})
			return res, err
		}
		res, _, err := steprun.Do(ctx, db, sc, func(ctx context.Context, tx bun.Tx) (DataSyncResult, error) {
			var src schema.DataSyncRun
			if err := tx.NewSelect().Model(&src).Where("id = ? AND direction = ?", m.RunID, "export").Scan(ctx); err != nil {
				if errors.Is(err, sql.ErrNoRows) {
					// The export may still be queued: retry, like any missing parent.
					return DataSyncResult{}, &workout.NotFoundError{Entity: "export run", ID: m.RunID}
				}
				return DataSyncResult{}, err
			}
			if src.PlanID != m.PlanID {
				return DataSyncResult{}, flow.Permanent(flow.FieldError("runId", "run %s exported plan %s, not %s", m.RunID, src.PlanID, m.PlanID))
			}
			var snap workout.PlanFullSave
			if err := json.Unmarshal([]byte(src.Snapshot), &snap); err != nil {
				return DataSyncResult{}, flow.Permanent(fmt.Errorf("snapshot of run %s: %w", m.RunID, err))
			}
			return recordRun(ctx, tx, sc.JobID, "import", snap)
		})
		if err != nil {
			return DataSyncResult{}, err
		}
		// The restore is read back from this run's own row, so a replay
		// expands into the same full save as the first attempt did.
		var run schema.DataSyncRun
		if err := db.NewSelect().Model(&run).Where("id = ?", sc.JobID).Scan(ctx); err != nil {
			return DataSyncResult{}, fmt.Errorf("read data sync run %s: %w", sc.JobID, err)
		}
		var snap workout.PlanFullSave
		if err := json.Unmarshal([]byte(run.Snapshot), &snap); err != nil {
			return DataSyncResult{}, flow.Permanent(fmt.Errorf("snapshot of run %s: %w", sc.JobID, err))
		}
		if err := snap.Validate(); err != nil {
			return DataSyncResult{}, flow.Permanent(fmt.Errorf("snapshot of run %s: %w", m.RunID, err))
		}
		g := flow.New()
		o := workout.SturdyOpts(&flow.NodeOpts{ID: RestoreNodeID(sc.JobID), UserID: sc.Envelope.UserID, Metadata: sc.Envelope.Metadata})
		g.Add(snap, &o)
		if err := sc.Expand(g); err != nil {
			return DataSyncResult{}, flow.Permanent(fmt.Errorf("expand restore: %w", err))
		}
		return res, nil
	})
}

// recordRun stores a run with its snapshot and returns its result.
func recordRun(ctx context.Context, tx bun.Tx, id, direction string, snap workout.PlanFullSave) (DataSyncResult, error) {
	raw, err := json.Marshal(snap)
	if err != nil {
		return DataSyncResult{}, flow.Permanent(fmt.Errorf("encode snapshot: %w", err))
	}
	res := DataSyncResult{RunID: id, Direction: direction, PlanID: snap.PlanID, Phases: len(snap.Phases), Bytes: len(raw)}
	for _, p := range snap.Phases {
		res.Sessions += len(p.Sessions)
		for _, s := range p.Sessions {
			res.Exercises += len(s.Exercises)
		}
	}
	_, err = tx.NewInsert().Model(&schema.DataSyncRun{
		ID: id, PlanID: snap.PlanID, Direction: direction, Phases: res.Phases, Sessions: res.Sessions,
		Exercises: res.Exercises, Snapshot: string(raw), CreatedAt: time.Now().UTC(),
	}).Exec(ctx)
	return res, err
}

// Snapshot reads plan planID with its whole tree, ordered by order number,
// in the shape of a full plan save. A missing plan is a retryable
// *workout.NotFoundError: its create may still be queued.
func Snapshot(ctx context.Context, db bun.IDB, planID string) (workout.PlanFullSave, error) {
	var plan schema.Plan
	if err := db.NewSelect().Model(&plan).Where("id = ?", planID).Scan(ctx); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return workout.PlanFullSave{}, &workout.NotFoundError{Entity: "plan", ID: planID}
		}
		return workout.PlanFullSave{}, err
	}
	out := workout.PlanFullSave{PlanID: plan.ID, Name: plan.Name, ClientID: plan.ClientID, TrainerID: plan.TrainerID, IsActive: plan.IsActive}
	var phases []schema.Phase
	if err := db.NewSelect().Model(&phases).Where("plan_id = ?", planID).Order("order_number", "id").Scan(ctx); err != nil {
		return out, err
	}
	var sessions []schema.Session
	if err := db.NewSelect().Model(&sessions).
		Where("phase_id IN (SELECT id FROM workout_phases WHERE plan_id = ?)", planID).Order("order_number", "id").Scan(ctx); err != nil {
		return out, err
	}
	var exercises []schema.Exercise
	if err := db.NewSelect().Model(&exercises).
		Where("session_id IN (SELECT s.id FROM workout_sessions AS s JOIN workout_phases AS p ON p.id = s.phase_id WHERE p.plan_id = ?)", planID).
		Order("order_number", "id").Scan(ctx); err != nil {
		return out, err
	}
	bySession := map[string][]workout.ExerciseData{}
	for _, e := range exercises {
		bySession[e.SessionID] = append(bySession[e.SessionID], workout.ExerciseData{
			ID: e.ID, Name: e.Name, OrderNumber: e.OrderNumber, Sets: e.Sets, Reps: e.Reps,
			Weight: e.Weight, Rest: e.RestSeconds, Tempo: e.Tempo, Notes: e.Notes,
		})
	}
	byPhase := map[string][]workout.SessionTree{}
	for _, s := range sessions {
		byPhase[s.PhaseID] = append(byPhase[s.PhaseID], workout.SessionTree{
			SessionData: workout.SessionData{ID: s.ID, Name: s.Name, OrderNumber: s.OrderNumber},
			Exercises:   nonNil(bySession[s.ID]),
		})
	}
	out.Phases = []workout.PhaseTree{}
	for _, p := range phases {
		out.Phases = append(out.Phases, workout.PhaseTree{
			PhaseData: workout.PhaseData{ID: p.ID, Name: p.Name, OrderNumber: p.OrderNumber, IsActive: p.IsActive},
			Sessions:  nonNil(byPhase[p.ID]),
		})
	}
	return out, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// LogNotifier delivers notifications to a logger: for `trellis dev` and
// demos, where there is no push service.
func LogNotifier(l *slog.Logger) Notifier {
	return NotifierFunc(func(ctx context.Context, id string, n Notification) error {
		l.InfoContext(ctx, "notification", slog.String("id", id), slog.String("user", n.UserID),
			slog.String("type", n.Type), slog.String("title", n.Title), slog.String("message", n.Message),
			slog.String("actionUrl", n.ActionURL))
		return nil
	})
}
