package system_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/schema/schematest"
	"github.com/trellisflow/trellis/steps/internal/smtptest"
	"github.com/trellisflow/trellis/steps/internal/steptest"
	"github.com/trellisflow/trellis/steps/steprun"
	"github.com/trellisflow/trellis/steps/system"
	"github.com/trellisflow/trellis/steps/workout"
)

func TestRegistryKnowsAllSeventeenTypes(t *testing.T) {
	t.Parallel()
	reg := flow.NewRegistry()
	system.RegisterTypes(reg)
	workout.RegisterTypes(reg)
	require.Equal(t, []string{
		"DATA_SYNC", "EMAIL", "NOTIFICATION", "TEST", "USER_ACTION",
		"WORKOUT_EXERCISE_CREATE", "WORKOUT_EXERCISE_DELETE", "WORKOUT_EXERCISE_UPDATE",
		"WORKOUT_PHASE_CREATE", "WORKOUT_PHASE_DELETE", "WORKOUT_PHASE_UPDATE",
		"WORKOUT_PLAN_CREATE", "WORKOUT_PLAN_FULL_SAVE",
		"WORKOUT_SESSION_CREATE", "WORKOUT_SESSION_DELETE", "WORKOUT_SESSION_UPDATE",
		"WORKOUT_UPDATE",
	}, reg.Types())
	var steps []string
	for _, s := range append(system.Steps(nil, system.Options{}), workout.Steps(nil)...) {
		steps = append(steps, s.MessageType())
	}
	require.ElementsMatch(t, reg.Types(), steps, "a step for every type")

	_, msg, err := reg.Decode([]byte(`{"messageType":"NOTIFICATION","timestamp":"2026-01-01T00:00:00Z","userId":"user-123",
		"data":{"userId":"user-123","title":"Workout Complete!","message":"Great job on finishing your workout!","type":"success","actionUrl":"/workouts"}}`))
	require.NoError(t, err)
	require.Equal(t, system.Notification{UserID: "user-123", Title: "Workout Complete!",
		Message: "Great job on finishing your workout!", Type: "success", ActionURL: "/workouts"}, msg)
}

func TestSMTPMailer(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	m := &system.SMTPMailer{Addr: srv.Addr(), From: "coach@example.com"}
	ctx := context.Background()
	require.NoError(t, m.Send(ctx, system.OutgoingEmail{MessageID: "<abc@trellis>", To: mail.Address{Address: "client@example.com"},
		Subject: "Séance de demain ✓", Body: "Squat 5×5 at 100 kg.\nRest 2 minutes — a long line " + strings.Repeat("x", 100)}))
	msgs := srv.Messages()
	require.Len(t, msgs, 1)
	require.Equal(t, "coach@example.com", msgs[0].From)
	require.Equal(t, []string{"client@example.com"}, msgs[0].To)
	parsed, err := mail.ReadMessage(strings.NewReader(msgs[0].Data))
	require.NoError(t, err)
	subject, err := new(mime.WordDecoder).DecodeHeader(parsed.Header.Get("Subject"))
	require.NoError(t, err)
	require.Equal(t, "Séance de demain ✓", subject)
	require.Equal(t, "<abc@trellis>", parsed.Header.Get("Message-ID"))
	body, err := io.ReadAll(quotedprintable.NewReader(parsed.Body))
	require.NoError(t, err)
	require.Equal(t, "Squat 5×5 at 100 kg.\r\nRest 2 minutes — a long line "+strings.Repeat("x", 100)+"\r\n", string(body))

	// 4xx is retryable, 5xx permanent.
	srv.SetReply(func(cmd, arg string) (int, string) {
		if cmd == "RCPT" && strings.Contains(arg, "full@") {
			return 452, "mailbox full, try later"
		}
		if cmd == "RCPT" && strings.Contains(arg, "nobody@") {
			return 550, "no such user"
		}
		return 0, ""
	})
	err = m.Send(ctx, system.OutgoingEmail{MessageID: "<1@t>", To: mail.Address{Address: "full@example.com"}, Subject: "s", Body: "b"})
	require.ErrorContains(t, err, "mailbox full")
	require.False(t, flow.IsPermanent(err))
	err = m.Send(ctx, system.OutgoingEmail{MessageID: "<2@t>", To: mail.Address{Address: "nobody@example.com"}, Subject: "s", Body: "b"})
	require.ErrorContains(t, err, "no such user")
	require.True(t, flow.IsPermanent(err))
	require.Len(t, srv.Messages(), 1)
}

// recorder is a Notifier that records deliveries and can fail on demand.
type recorder struct {
	mu    sync.Mutex
	got   []string
	fails int
}

func (r *recorder) Notify(_ context.Context, id string, n system.Notification) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fails > 0 {
		r.fails--
		return errors.New("push service unavailable")
	}
	r.got = append(r.got, id+":"+n.Title)
	return nil
}

func (r *recorder) deliveries() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func requireBadField(t *testing.T, err error, field string) {
	t.Helper()
	require.Error(t, err)
	require.True(t, flow.IsPermanent(err), "bad data is permanent: %v", err)
	var me *flow.MessageError
	require.True(t, errors.As(err, &me), "%v", err)
	require.Equal(t, field, me.Field, "%v", err)
}

func TestTestStep(t *testing.T) {
	t.Parallel()
	r := steptest.New(t, system.Steps(nil, system.Options{}))
	ctx := context.Background()
	msg := system.Test{Message: "hello", Data: map[string]any{"n": 1.0}, FailTimes: 2, SleepMS: 20}
	start := time.Now()
	_, _, err := r.Run(ctx, "t", 1, msg)
	require.ErrorContains(t, err, "planned failure on attempt 1")
	require.False(t, flow.IsPermanent(err))
	require.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond, "it slept first")
	_, _, err = r.Run(ctx, "t", 2, msg)
	require.Error(t, err)
	raw, _, err := r.Run(ctx, "t", 3, msg)
	require.NoError(t, err)
	require.JSONEq(t, `{"message":"hello","data":{"n":1},"attempt":3}`, string(raw))
	_, _, err = r.RunRaw(ctx, "bad", 1, system.TypeTest, []byte(`{"message":"x","sleepMs":-5}`))
	requireBadField(t, err, "sleepMs")
}

func TestSystemSteps(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		srv := smtptest.Start(t)
		notifier := &recorder{}
		opts := system.Options{Mailer: &system.SMTPMailer{Addr: srv.Addr(), From: "coach@example.com"}, Notifier: notifier}
		r := steptest.New(t, system.Steps(db, opts), workout.Steps(db))

		// Each message: happy path, then a re-run of the same job changes nothing.
		rerun := func(jobID string, msg flow.Message) json.RawMessage {
			t.Helper()
			raw, _, err := r.Run(ctx, jobID, 1, msg)
			require.NoError(t, err)
			before := steptest.Snapshot(t, db)
			raw2, _, err := r.Run(ctx, jobID, 2, msg)
			require.NoError(t, err)
			require.JSONEq(t, string(raw), string(raw2))
			require.Equal(t, before, steptest.Snapshot(t, db), "%s: a re-run changes nothing", msg.MessageType())
			return raw
		}

		raw := rerun("ua-1", system.UserAction{UserID: "user-1", Action: "plan.viewed", Details: map[string]any{"planId": "p1"}})
		require.JSONEq(t, `{"id":"ua-1"}`, string(raw))
		var ua schema.UserAction
		require.NoError(t, db.NewSelect().Model(&ua).Where("id = ?", "ua-1").Scan(ctx))
		require.Equal(t, []string{"user-1", "plan.viewed"}, []string{ua.UserID, ua.Action})
		require.JSONEq(t, `{"planId":"p1"}`, ua.Details)

		raw = rerun("n-1", system.Notification{UserID: "user-1", Title: "Workout Complete!", Message: "Great job", Type: "success", ActionURL: "/workouts"})
		require.JSONEq(t, `{"id":"n-1","delivered":true,"status":"delivered"}`, string(raw))
		require.Equal(t, []string{"n-1:Workout Complete!"}, notifier.deliveries(), "delivered once")
		var n schema.Notification
		require.NoError(t, db.NewSelect().Model(&n).Where("id = ?", "n-1").Scan(ctx))
		require.NotNil(t, n.DeliveredAt)
		require.Equal(t, []string{"user-1", "success", "/workouts"}, []string{n.UserID, n.Type, n.ActionURL})

		raw = rerun("mail-1", system.Email{To: "client@example.com", Subject: "Your plan", Body: "It is ready."})
		require.JSONEq(t, fmt.Sprintf(`{"id":"mail-1","messageId":%q,"to":"client@example.com","sent":true,"status":"sent"}`, system.MessageID("mail-1")), string(raw))
		require.Len(t, srv.Messages(), 1, "sent once")
		require.Contains(t, srv.Messages()[0].Data, "Message-ID: "+system.MessageID("mail-1"))

		// DATA_SYNC: the missing plan is retryable, then the export is the tree.
		_, _, err := r.Run(ctx, "sync-1", 1, system.DataSync{PlanID: "p1"})
		var nf *workout.NotFoundError
		require.True(t, errors.As(err, &nf), "%v", err)
		require.False(t, flow.IsPermanent(err))
		plan := workout.PlanFullSave{PlanID: "p1", Name: "Plan", ClientID: "c", TrainerID: "t", IsActive: true, Phases: []workout.PhaseTree{
			{PhaseData: workout.PhaseData{ID: "ph2", Name: "Second", OrderNumber: 2}, Sessions: []workout.SessionTree{}},
			{PhaseData: workout.PhaseData{ID: "ph1", Name: "First", OrderNumber: 1, IsActive: true}, Sessions: []workout.SessionTree{
				{SessionData: workout.SessionData{ID: "s1", Name: "Day", OrderNumber: 1}, Exercises: []workout.ExerciseData{
					{ID: "e2", Name: "Row", OrderNumber: 2, Sets: 3, Reps: 10, Weight: 40, Rest: 60},
					{ID: "e1", Name: "Squat", OrderNumber: 1, Sets: 5, Reps: 5, Weight: 100.5, Rest: 120, Tempo: "3-1-1", Notes: "deep"},
				}},
			}},
		}}
		for i, m := range []flow.Message{
			workout.PlanCreate{PlanID: "p1", Name: "Plan", ClientID: "c", TrainerID: "t", IsActive: true},
			workout.PhaseCreate{PlanID: "p1", Phase: plan.Phases[0].PhaseData},
			workout.PhaseCreate{PlanID: "p1", Phase: plan.Phases[1].PhaseData},
			workout.SessionCreate{PlanID: "p1", PhaseID: "ph1", Session: plan.Phases[1].Sessions[0].SessionData},
			workout.ExerciseCreate{PlanID: "p1", PhaseID: "ph1", SessionID: "s1", Exercise: plan.Phases[1].Sessions[0].Exercises[0]},
			workout.ExerciseCreate{PlanID: "p1", PhaseID: "ph1", SessionID: "s1", Exercise: plan.Phases[1].Sessions[0].Exercises[1]},
		} {
			_, _, err := r.Run(ctx, fmt.Sprintf("w-%d", i), 1, m)
			require.NoError(t, err)
		}
		raw = rerun("sync-1", system.DataSync{PlanID: "p1"})
		var res system.DataSyncResult
		require.NoError(t, json.Unmarshal(raw, &res))
		require.Equal(t, []int{2, 1, 2}, []int{res.Phases, res.Sessions, res.Exercises})
		var run schema.DataSyncRun
		require.NoError(t, db.NewSelect().Model(&run).Where("id = ?", "sync-1").Scan(ctx))
		require.Equal(t, res.Bytes, len(run.Snapshot))
		var snap workout.PlanFullSave
		require.NoError(t, json.Unmarshal([]byte(run.Snapshot), &snap))
		// ordered by order number
		want := plan
		want.Phases = []workout.PhaseTree{plan.Phases[1], plan.Phases[0]}
		want.Phases[0].Sessions[0].Exercises = []workout.ExerciseData{plan.Phases[1].Sessions[0].Exercises[1], plan.Phases[1].Sessions[0].Exercises[0]}
		require.Equal(t, want, snap)
		require.NoError(t, snap.Validate(), "a snapshot is a valid full save")

		// Import: an unknown run is retryable (its export may be queued), a
		// run of another plan is a permanent error naming runId, and a good
		// one records the run and expands into a full save of the snapshot.
		_, _, err = r.Run(ctx, "imp-0", 1, system.DataSync{PlanID: "p1", Direction: "import", RunID: "nope"})
		require.True(t, errors.As(err, &nf), "%v", err)
		require.Equal(t, "export run", nf.Entity)
		require.False(t, flow.IsPermanent(err))
		_, _, err = r.Run(ctx, "imp-1", 1, system.DataSync{PlanID: "other", Direction: "import", RunID: "sync-1"})
		requireBadField(t, err, "runId")
		raw, sc, err := r.Run(ctx, "imp-2", 1, system.DataSync{PlanID: "p1", Direction: "import", RunID: "sync-1"})
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(raw, &res))
		require.Equal(t, []any{"import", 2, 1, 2}, []any{res.Direction, res.Phases, res.Sessions, res.Exercises})
		specs, err := seam.Expansion(sc)
		require.NoError(t, err)
		require.Len(t, specs, 1)
		require.Equal(t, []string{system.RestoreNodeID("imp-2"), workout.TypePlanFullSave}, []string{specs[0].ID, specs[0].Type})
		_, sc, err = r.Run(ctx, "imp-2", 2, system.DataSync{PlanID: "p1", Direction: "import", RunID: "sync-1"})
		require.NoError(t, err)
		specs2, err := seam.Expansion(sc)
		require.NoError(t, err)
		data := func(payload []byte) string {
			var env flow.Envelope
			require.NoError(t, json.Unmarshal(payload, &env))
			return string(env.Data)
		}
		require.Equal(t, specs[0].ID, specs2[0].ID)
		require.JSONEq(t, data(specs[0].Payload), data(specs2[0].Payload), "a replay restores the same snapshot")
		var restored workout.PlanFullSave
		require.NoError(t, json.Unmarshal([]byte(data(specs[0].Payload)), &restored))
		require.Equal(t, want, restored)

		// Bad data: permanent, names the field, writes nothing.
		before := steptest.Snapshot(t, db)
		for _, c := range []struct{ typ, data, field string }{
			{system.TypeUserAction, `{"userId":"u","action":" "}`, "action"},
			{system.TypeNotification, `{"userId":"u","title":"t","message":"m","type":"shout"}`, "type"},
			{system.TypeNotification, `{"userId":"","title":"t","message":"m"}`, "userId"},
			{system.TypeEmail, `{"to":"not-an-address","subject":"s","body":"b"}`, "to"},
			{system.TypeEmail, `{"to":"a@example.com","subject":"s\r\nBcc: x@example.com","body":"b"}`, "subject"},
			{system.TypeDataSync, `{"planId":"p1","direction":"sideways"}`, "direction"},
			{system.TypeDataSync, `{"planId":"p1","direction":"import"}`, "runId"},
			{system.TypeDataSync, `{"planId":"p1","runId":"x"}`, "runId"},
		} {
			_, _, err := r.RunRaw(ctx, "bad-"+c.typ, 1, c.typ, []byte(c.data))
			requireBadField(t, err, c.field)
		}
		require.Equal(t, before, steptest.Snapshot(t, db))
		require.Len(t, srv.Messages(), 1)
	})
}

// A delivery that fails after the commit is retried, and the retry delivers
// exactly once without storing the notification twice.
func TestNotificationDeliveryRetry(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		notifier := &recorder{fails: 1}
		r := steptest.New(t, system.Steps(db, system.Options{Notifier: notifier}))
		msg := system.Notification{UserID: "u", Title: "Hi", Message: "m"}
		_, _, err := r.Run(ctx, "n", 1, msg)
		require.ErrorContains(t, err, "push service unavailable")
		require.False(t, flow.IsPermanent(err))
		require.Equal(t, 1, steptest.Count(t, db, "notifications", "delivered_at IS NULL"), "stored, not delivered")
		raw, _, err := r.Run(ctx, "n", 2, msg)
		require.NoError(t, err)
		require.JSONEq(t, `{"id":"n","delivered":true,"status":"delivered"}`, string(raw))
		require.Equal(t, []string{"n:Hi"}, notifier.deliveries())
		require.Equal(t, 1, steptest.Count(t, db, "notifications", "delivered_at IS NOT NULL"))
		rec, err := steprun.Record(ctx, db, "n")
		require.NoError(t, err)
		require.Equal(t, 1, rec.Attempt)
	})
}

// The EMAIL crash test through the engine: a runner claims the job, sends
// the email and marks the outbox, then dies before reporting completion.
// The runner that takes the job over must not send it again. And a send
// that fails after the outbox commit is retried into exactly one email.
func TestEmailIsSentOnceAcrossCrashes(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		srv := smtptest.Start(t)
		mailer := &system.SMTPMailer{Addr: srv.Addr(), From: "coach@example.com"}
		steps := system.Steps(e.DB, system.Options{Mailer: mailer})

		job, err := system.SendEmail(ctx, e.Client, "client@example.com", "Plan ready", "See you Monday.", "trainer-1")
		require.NoError(t, err)
		lease := 300 * time.Millisecond
		dead, err := seam.Store(e.Client).Sync(ctx, time.Now(), store.SyncRequest{
			Worker: "doomed", Lease: lease, StallLimit: 3, Queues: []string{"default"}, Types: []string{system.TypeEmail}, Want: 1, RetainCount: -1})
		require.NoError(t, err)
		require.Len(t, dead.Claimed, 1)
		v, err := seam.NewStepContext(e.Client, dead.Claimed[0], steptest.Logger())
		require.NoError(t, err)
		sc := v.(*flow.StepContext)
		var emailStep flow.Step
		for _, s := range steps {
			if s.MessageType() == system.TypeEmail {
				emailStep = s
			}
		}
		_, err = emailStep.Run(ctx, sc)
		require.NoError(t, err)
		require.Len(t, srv.Messages(), 1)
		// ...and the doomed runner never reports.

		e.Start(&runner.Config{Concurrency: 4, Lease: 10 * time.Second, IdleWait: 50 * time.Millisecond}, steps...)
		e.Wait(job.ID)
		j := e.Job(job.ID)
		require.Equal(t, dag.Succeeded, j.State)
		require.Equal(t, 2, j.Attempt)
		require.Len(t, srv.Messages(), 1, "the takeover did not send again")

		// A send that fails after the outbox commit: the retry sends it once.
		failures := 1
		var mu sync.Mutex
		srv.SetReply(func(cmd, _ string) (int, string) {
			mu.Lock()
			defer mu.Unlock()
			if cmd == "DATA-END" && failures > 0 {
				failures--
				return 451, "local error, try again"
			}
			return 0, ""
		})
		backoff := flow.Fixed(50 * time.Millisecond)
		j2, err := e.Client.Add(ctx, system.Email{To: "other@example.com", Subject: "Again", Body: "b"}, &flow.NodeOpts{Backoff: &backoff})
		require.NoError(t, err)
		e.Wait(j2.ID)
		require.Equal(t, dag.Succeeded, e.Job(j2.ID).State)
		require.Equal(t, 2, e.Job(j2.ID).Attempt)
		msgs := srv.Messages()
		require.Len(t, msgs, 2)
		require.Equal(t, []string{"other@example.com"}, msgs[1].To)
		require.Equal(t, 2, steptest.Count(t, e.DB, "email_outbox", "sent_at IS NOT NULL"))
	})
}

// The typed senders enqueue what they say and the runner handles each type.
func TestSendersThroughTheEngine(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		srv := smtptest.Start(t)
		notifier := &recorder{}
		e.Start(nil, append(system.Steps(e.DB, system.Options{
			Mailer: &system.SMTPMailer{Addr: srv.Addr(), From: "coach@example.com"}, Notifier: notifier,
		}), workout.Steps(e.DB)...)...)
		done := func(j flow.EnqueuedJob, err error) *dag.Node {
			t.Helper()
			require.NoError(t, err)
			e.Wait(j.ID)
			got := e.Job(j.ID)
			require.Equal(t, dag.Succeeded, got.State, "%v", got.Error)
			return got
		}
		j := done(system.SendTest(ctx, e.Client, system.Test{Message: "ping", FailTimes: 1}, "user-1"))
		require.Equal(t, 2, j.Attempt)
		done(system.SendUserAction(ctx, e.Client, "user-1", "login", nil))
		done(system.SendNotification(ctx, e.Client, "user-123", "Workout Complete!", "Great job on finishing your workout!", "success", "/workouts"))
		done(system.SendEmail(ctx, e.Client, "client@example.com", "Hello", "Body", "user-1"))
		full := workout.PlanFullSave{PlanID: "p", Name: "P", ClientID: "c", TrainerID: "t", Phases: []workout.PhaseTree{
			{PhaseData: workout.PhaseData{ID: "ph", Name: "Ph"}, Sessions: []workout.SessionTree{
				{SessionData: workout.SessionData{ID: "s", Name: "S"}, Exercises: []workout.ExerciseData{{ID: "x", Name: "X", Sets: 1, Reps: 1}}}}}}}
		done(workout.QueueFullPlanSave(ctx, e.Client, full, nil))
		j = done(system.SendDataSync(ctx, e.Client, "p", "user-1"))
		var res system.DataSyncResult
		require.NoError(t, json.Unmarshal(j.Result, &res))
		require.Equal(t, []int{1, 1, 1}, []int{res.Phases, res.Sessions, res.Exercises})

		// Change the plan, then restore the export: the tree is back.
		done(workout.QueuePhaseDelete(ctx, e.Client, workout.PhaseDelete{PlanID: "p", PhaseID: "ph"}, nil))
		require.Zero(t, steptest.Count(t, e.DB, "workout_exercises", ""))
		restore := done(system.SendDataRestore(ctx, e.Client, "p", j.ID, "user-1"))
		require.True(t, restore.Expanded)
		require.NoError(t, json.Unmarshal(restore.Result, &res))
		require.Equal(t, "import", res.Direction)
		require.Equal(t, dag.Succeeded, e.Job(system.RestoreNodeID(restore.ID)).State)
		snap, err := system.Snapshot(ctx, e.DB, "p")
		require.NoError(t, err)
		require.Equal(t, full, snap, "restored")

		require.Equal(t, 1, steptest.Count(t, e.DB, "user_actions", "user_id = ? AND action = ?", "user-1", "login"))
		require.Len(t, notifier.deliveries(), 1)
		require.Len(t, srv.Messages(), 1)
		require.Equal(t, 1, steptest.Count(t, e.DB, "data_sync_runs", "plan_id = ? AND direction = ?", "p", "export"))
		require.Equal(t, 1, steptest.Count(t, e.DB, "data_sync_runs", "plan_id = ? AND direction = ?", "p", "import"))
	})
}

func TestLogNotifier(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		var buf syncBuffer
		r := steptest.New(t, system.Steps(db, system.Options{Notifier: system.LogNotifier(slog.New(slog.NewTextHandler(&buf, nil)))}))
		raw, _, err := r.Run(context.Background(), "n", 1, system.Notification{UserID: "u", Title: "Done", Message: "Well done", Type: "success"})
		require.NoError(t, err)
		require.JSONEq(t, `{"id":"n","delivered":true,"status":"delivered"}`, string(raw))
		require.Contains(t, buf.String(), "title=Done")
		require.Contains(t, buf.String(), "type=success")
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
