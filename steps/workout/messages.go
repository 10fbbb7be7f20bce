package workout

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/internal/field"
)

// The workout message types, exactly as the BullMQ system they replace names them.
const (
	TypeWorkoutUpdate  = "WORKOUT_UPDATE"
	TypePlanCreate     = "WORKOUT_PLAN_CREATE"
	TypePhaseCreate    = "WORKOUT_PHASE_CREATE"
	TypePhaseUpdate    = "WORKOUT_PHASE_UPDATE"
	TypePhaseDelete    = "WORKOUT_PHASE_DELETE"
	TypeSessionCreate  = "WORKOUT_SESSION_CREATE"
	TypeSessionUpdate  = "WORKOUT_SESSION_UPDATE"
	TypeSessionDelete  = "WORKOUT_SESSION_DELETE"
	TypeExerciseCreate = "WORKOUT_EXERCISE_CREATE"
	TypeExerciseUpdate = "WORKOUT_EXERCISE_UPDATE"
	TypeExerciseDelete = "WORKOUT_EXERCISE_DELETE"
	TypePlanFullSave   = "WORKOUT_PLAN_FULL_SAVE"
)

// The bounds of the fields, in bytes, from the columns that store them
// (package schema); every message checks its fields at enqueue.
const (
	// MaxIDLen bounds the IDs of plans, phases, sessions and exercises and
	// the client and trainer IDs.
	MaxIDLen = schema.MaxID
	// MaxJobIDLen bounds a job ID a message names (the engine's limit).
	MaxJobIDLen = schema.MaxJobID
	// MaxNameLen bounds the names of plans, phases, sessions and exercises.
	MaxNameLen = schema.MaxName
	// MaxTempoLen bounds an exercise's tempo.
	MaxTempoLen = schema.MaxTempo
	// MaxNotesLen bounds an exercise's notes.
	MaxNotesLen = schema.MaxNotes
	// MaxNumber bounds order numbers, sets, reps and rest (seconds).
	MaxNumber = schema.MaxInt
)

// PhaseData is a phase without its sessions.
type PhaseData struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	OrderNumber int    `json:"orderNumber"`
	IsActive    bool   `json:"isActive"`
}

// SessionData is a session without its exercises.
type SessionData struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	OrderNumber int    `json:"orderNumber"`
}

// ExerciseData is one exercise of a session.
type ExerciseData struct {
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	OrderNumber int     `json:"orderNumber"`
	Sets        int     `json:"sets"`
	Reps        int     `json:"reps"`
	Weight      float64 `json:"weight"` // in the trainer's unit; 0 for body weight
	Rest        int     `json:"rest"`   // seconds between sets
	Tempo       string  `json:"tempo,omitempty"`
	Notes       string  `json:"notes,omitempty"`
}

// PhaseTree is a phase with its sessions, as WORKOUT_PLAN_FULL_SAVE carries it.
type PhaseTree struct {
	PhaseData
	Sessions []SessionTree `json:"sessions"`
}

// SessionTree is a session with its exercises.
type SessionTree struct {
	SessionData
	Exercises []ExerciseData `json:"exercises"`
}

// WorkoutUpdate is the legacy change set on one exercise (WORKOUT_UPDATE).
type WorkoutUpdate struct {
	ExercisePlanID string          `json:"exercisePlanId"`
	PhaseID        string          `json:"phaseId"`
	SessionID      string          `json:"sessionId"`
	ExerciseID     string          `json:"exerciseId"`
	Changes        ExerciseChanges `json:"changes"`
}

// PlanCreate creates a workout plan (WORKOUT_PLAN_CREATE).
type PlanCreate struct {
	PlanID    string `json:"planId"`
	Name      string `json:"name"`
	ClientID  string `json:"clientId"`
	TrainerID string `json:"trainerId"`
	IsActive  bool   `json:"isActive"`
}

// Label names the plan in pictures of its flow.
func (m PlanCreate) Label() string { return m.Name }

// PhaseCreate creates a phase in an existing plan (WORKOUT_PHASE_CREATE). A
// plan that does not exist yet is a retryable error: the create race.
type PhaseCreate struct {
	PlanID    string    `json:"planId"`
	ClientID  string    `json:"clientId,omitempty"`
	TrainerID string    `json:"trainerId,omitempty"`
	Phase     PhaseData `json:"phase"`
}

// phaseCreateJob, sessionCreateJob and exerciseCreateJob are the creates as
// their steps read them: the public message and, for a create of a full
// plan save's sub-graph, FullSave, the save's job ID (FullSaveGraph sets
// it). Once a save enqueued later has replaced the plan's tree, such a
// create writes nothing ("superseded"); until then it may move its row
// within the plan. The public messages have no such field, so a JSON
// envelope, which the Registry decodes strictly into them, cannot claim
// to belong to a save.
type phaseCreateJob struct {
	PhaseCreate
	FullSave string `json:"fullSave,omitempty"`
}

type sessionCreateJob struct {
	SessionCreate
	FullSave string `json:"fullSave,omitempty"`
}

type exerciseCreateJob struct {
	ExerciseCreate
	FullSave string `json:"fullSave,omitempty"`
}

func (m phaseCreateJob) Validate() error {
	return firstErr(m.PhaseCreate.Validate(), checkFullSave(m.FullSave))
}

func (m sessionCreateJob) Validate() error {
	return firstErr(m.SessionCreate.Validate(), checkFullSave(m.FullSave))
}

func (m exerciseCreateJob) Validate() error {
	return firstErr(m.ExerciseCreate.Validate(), checkFullSave(m.FullSave))
}

// PhaseUpdate changes some fields of a phase (WORKOUT_PHASE_UPDATE).
type PhaseUpdate struct {
	PlanID  string       `json:"planId"`
	PhaseID string       `json:"phaseId"`
	Changes PhaseChanges `json:"changes"`
}

// PhaseDelete deletes a phase with its sessions and exercises
// (WORKOUT_PHASE_DELETE). Deleting a missing phase succeeds.
type PhaseDelete struct {
	PlanID  string `json:"planId"`
	PhaseID string `json:"phaseId"`
}

// Label names the phase in pictures of its flow.
func (m PhaseCreate) Label() string { return m.Phase.Name }

// SessionCreate creates a session in an existing phase (WORKOUT_SESSION_CREATE).
type SessionCreate struct {
	PlanID  string      `json:"planId"`
	PhaseID string      `json:"phaseId"`
	Session SessionData `json:"session"`
}

// Label names the session in pictures of its flow.
func (m SessionCreate) Label() string { return m.Session.Name }

// SessionUpdate changes some fields of a session (WORKOUT_SESSION_UPDATE).
type SessionUpdate struct {
	PlanID    string         `json:"planId"`
	PhaseID   string         `json:"phaseId"`
	SessionID string         `json:"sessionId"`
	Changes   SessionChanges `json:"changes"`
}

// SessionDelete deletes a session with its exercises (WORKOUT_SESSION_DELETE).
type SessionDelete struct {
	PlanID    string `json:"planId"`
	PhaseID   string `json:"phaseId"`
	SessionID string `json:"sessionId"`
}

// ExerciseCreate creates an exercise in an existing session (WORKOUT_EXERCISE_CREATE).
type ExerciseCreate struct {
	PlanID    string       `json:"planId"`
	PhaseID   string       `json:"phaseId"`
	SessionID string       `json:"sessionId"`
	Exercise  ExerciseData `json:"exercise"`
}

// Label names the exercise in pictures of its flow.
func (m ExerciseCreate) Label() string { return m.Exercise.Name }

// ExerciseUpdate changes some fields of an exercise (WORKOUT_EXERCISE_UPDATE).
type ExerciseUpdate struct {
	PlanID     string          `json:"planId"`
	PhaseID    string          `json:"phaseId"`
	SessionID  string          `json:"sessionId"`
	ExerciseID string          `json:"exerciseId"`
	Changes    ExerciseChanges `json:"changes"`
}

// ExerciseDelete deletes an exercise (WORKOUT_EXERCISE_DELETE).
type ExerciseDelete struct {
	PlanID     string `json:"planId"`
	PhaseID    string `json:"phaseId"`
	SessionID  string `json:"sessionId"`
	ExerciseID string `json:"exerciseId"`
}

// PlanFullSave is a whole plan in one message (WORKOUT_PLAN_FULL_SAVE): the
// plan, its phases, their sessions and their exercises. The step saves the
// plan and expands the rest into a sub-graph at run time.
type PlanFullSave struct {
	PlanID    string      `json:"planId"`
	Name      string      `json:"name"`
	ClientID  string      `json:"clientId"`
	TrainerID string      `json:"trainerId"`
	IsActive  bool        `json:"isActive"`
	Phases    []PhaseTree `json:"phases"`
}

// Label names the plan in pictures of its flow.
func (m PlanFullSave) Label() string { return m.Name }

// PhaseChanges are the fields a phase update may set; nil means unchanged.
type PhaseChanges struct {
	Name        *string `json:"name,omitempty"`
	OrderNumber *int    `json:"orderNumber,omitempty"`
	IsActive    *bool   `json:"isActive,omitempty"`

	unknown []string
}

// SessionChanges are the fields a session update may set; nil means unchanged.
type SessionChanges struct {
	Name        *string `json:"name,omitempty"`
	OrderNumber *int    `json:"orderNumber,omitempty"`

	unknown []string
}

// ExerciseChanges are the fields an exercise update may set; nil means
// unchanged. Any other key in the JSON is an error.
type ExerciseChanges struct {
	Name        *string  `json:"name,omitempty"`
	OrderNumber *int     `json:"orderNumber,omitempty"`
	Sets        *int     `json:"sets,omitempty"`
	Reps        *int     `json:"reps,omitempty"`
	Weight      *float64 `json:"weight,omitempty"`
	Rest        *int     `json:"rest,omitempty"`
	Tempo       *string  `json:"tempo,omitempty"`
	Notes       *string  `json:"notes,omitempty"`

	unknown []string
}

func (WorkoutUpdate) MessageType() string  { return TypeWorkoutUpdate }
func (PlanCreate) MessageType() string     { return TypePlanCreate }
func (PhaseCreate) MessageType() string    { return TypePhaseCreate }
func (PhaseUpdate) MessageType() string    { return TypePhaseUpdate }
func (PhaseDelete) MessageType() string    { return TypePhaseDelete }
func (SessionCreate) MessageType() string  { return TypeSessionCreate }
func (SessionUpdate) MessageType() string  { return TypeSessionUpdate }
func (SessionDelete) MessageType() string  { return TypeSessionDelete }
func (ExerciseCreate) MessageType() string { return TypeExerciseCreate }
func (ExerciseUpdate) MessageType() string { return TypeExerciseUpdate }
func (ExerciseDelete) MessageType() string { return TypeExerciseDelete }
func (PlanFullSave) MessageType() string   { return TypePlanFullSave }

// DefaultOpts is the retry policy of the creates and updates, which may
// run before the row they hang under or change exists: RaceOpts. AddJSON
// (`trellis enqueue`, POST /api/enqueue) and the Queue… helpers apply it
// where the caller's options set none.
func (PlanCreate) DefaultOpts() flow.NodeOpts     { return RaceOpts(nil) }
func (PhaseCreate) DefaultOpts() flow.NodeOpts    { return RaceOpts(nil) }
func (PhaseUpdate) DefaultOpts() flow.NodeOpts    { return RaceOpts(nil) }
func (SessionCreate) DefaultOpts() flow.NodeOpts  { return RaceOpts(nil) }
func (SessionUpdate) DefaultOpts() flow.NodeOpts  { return RaceOpts(nil) }
func (ExerciseCreate) DefaultOpts() flow.NodeOpts { return RaceOpts(nil) }
func (ExerciseUpdate) DefaultOpts() flow.NodeOpts { return RaceOpts(nil) }
func (WorkoutUpdate) DefaultOpts() flow.NodeOpts  { return RaceOpts(nil) }

// DefaultOpts is the retry policy of a full plan save: SturdyOpts, which
// its sub-graph gets too.
func (PlanFullSave) DefaultOpts() flow.NodeOpts { return SturdyOpts(nil) }

// Change sets remember the keys they do not know, so that Validate can
// name them ("changes.colour is not a known field") on every entry point,
// including a step decoding its own payload.

func (c *PhaseChanges) UnmarshalJSON(b []byte) error {
	type plain PhaseChanges
	return decodeChanges(b, (*plain)(c), &c.unknown)
}

func (c *SessionChanges) UnmarshalJSON(b []byte) error {
	type plain SessionChanges
	return decodeChanges(b, (*plain)(c), &c.unknown)
}

func (c *ExerciseChanges) UnmarshalJSON(b []byte) error {
	type plain ExerciseChanges
	return decodeChanges(b, (*plain)(c), &c.unknown)
}

// decodeChanges decodes b into v and lists in unknown the keys of b that v
// has no field for.
func decodeChanges(b []byte, v any, unknown *[]string) error {
	if err := json.Unmarshal(b, v); err != nil {
		return err
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return err
	}
	known := map[string]bool{}
	t := reflect.TypeOf(v).Elem()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" {
			known[name] = true
		}
	}
	*unknown = (*unknown)[:0]
	for k := range keys {
		if !known[k] {
			*unknown = append(*unknown, k)
		}
	}
	sort.Strings(*unknown)
	return nil
}

func checkUnknown(unknown []string) error {
	if len(unknown) > 0 {
		return flow.FieldError("changes."+unknown[0], "is not a known field")
	}
	return nil
}

// Validation. Field names in errors are the JSON paths.

func checkID(name, v string) error { return field.Required(name, v, MaxIDLen) }

// checkOptionalID checks an ID a message may leave out.
func checkOptionalID(name, v string) error { return field.Text(name, v, MaxIDLen) }

// checkFullSave checks the optional job ID of a full plan save.
func checkFullSave(v string) error { return field.Text("fullSave", v, MaxJobIDLen) }

func checkName(name, v string) error { return field.Required(name, v, MaxNameLen) }

func checkNonNegative(name string, v float64) error {
	if v < 0 {
		return flow.FieldError(name, "must not be negative, got %v", v)
	}
	return nil
}

func firstErr(errs ...error) error { return field.First(errs...) }

func (p PhaseData) validate(prefix string) error {
	return firstErr(
		checkID(prefix+"id", p.ID),
		checkName(prefix+"name", p.Name),
		field.Count(prefix+"orderNumber", p.OrderNumber),
	)
}

func (s SessionData) validate(prefix string) error {
	return firstErr(
		checkID(prefix+"id", s.ID),
		checkName(prefix+"name", s.Name),
		field.Count(prefix+"orderNumber", s.OrderNumber),
	)
}

func (e ExerciseData) validate(prefix string) error {
	return firstErr(
		checkID(prefix+"id", e.ID),
		checkName(prefix+"name", e.Name),
		field.Count(prefix+"orderNumber", e.OrderNumber),
		field.Count(prefix+"sets", e.Sets),
		field.Count(prefix+"reps", e.Reps),
		checkNonNegative(prefix+"weight", e.Weight),
		field.Count(prefix+"rest", e.Rest),
		field.Text(prefix+"tempo", e.Tempo, MaxTempoLen),
		field.Text(prefix+"notes", e.Notes, MaxNotesLen),
	)
}

func (c PhaseChanges) validate() error {
	if err := checkUnknown(c.unknown); err != nil {
		return err
	}
	if c.Name == nil && c.OrderNumber == nil && c.IsActive == nil {
		return flow.FieldError("changes", "is empty")
	}
	if c.Name != nil {
		if err := checkName("changes.name", *c.Name); err != nil {
			return err
		}
	}
	if c.OrderNumber != nil {
		return field.Count("changes.orderNumber", *c.OrderNumber)
	}
	return nil
}

func (c SessionChanges) validate() error {
	if err := checkUnknown(c.unknown); err != nil {
		return err
	}
	if c.Name == nil && c.OrderNumber == nil {
		return flow.FieldError("changes", "is empty")
	}
	if c.Name != nil {
		if err := checkName("changes.name", *c.Name); err != nil {
			return err
		}
	}
	if c.OrderNumber != nil {
		return field.Count("changes.orderNumber", *c.OrderNumber)
	}
	return nil
}

func (c ExerciseChanges) validate() error {
	if err := checkUnknown(c.unknown); err != nil {
		return err
	}
	if c.Name == nil && c.OrderNumber == nil && c.Sets == nil && c.Reps == nil &&
		c.Weight == nil && c.Rest == nil && c.Tempo == nil && c.Notes == nil {
		return flow.FieldError("changes", "is empty")
	}
	if c.Name != nil {
		if err := checkName("changes.name", *c.Name); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"changes.orderNumber", c.OrderNumber}, {"changes.sets", c.Sets}, {"changes.reps", c.Reps}, {"changes.rest", c.Rest}} {
		if f.v != nil {
			if err := field.Count(f.name, *f.v); err != nil {
				return err
			}
		}
	}
	for _, f := range []struct {
		name  string
		v     *string
		limit int
	}{{"changes.tempo", c.Tempo, MaxTempoLen}, {"changes.notes", c.Notes, MaxNotesLen}} {
		if f.v != nil {
			if err := field.Text(f.name, *f.v, f.limit); err != nil {
				return err
			}
		}
	}
	if c.Weight != nil {
		return checkNonNegative("changes.weight", *c.Weight)
	}
	return nil
}

// Validate checks the message; errors name the field.
func (m WorkoutUpdate) Validate() error {
	return firstErr(
		checkID("exercisePlanId", m.ExercisePlanID),
		checkID("phaseId", m.PhaseID),
		checkID("sessionId", m.SessionID),
		checkID("exerciseId", m.ExerciseID),
		m.Changes.validate(),
	)
}

// Validate checks the message; errors name the field.
func (m PlanCreate) Validate() error {
	return firstErr(
		checkID("planId", m.PlanID),
		checkName("name", m.Name),
		checkID("clientId", m.ClientID),
		checkID("trainerId", m.TrainerID),
	)
}

// Validate checks the message; errors name the field.
func (m PhaseCreate) Validate() error {
	return firstErr(checkID("planId", m.PlanID), checkOptionalID("clientId", m.ClientID),
		checkOptionalID("trainerId", m.TrainerID), m.Phase.validate("phase."))
}

// Validate checks the message; errors name the field.
func (m PhaseUpdate) Validate() error {
	return firstErr(checkID("planId", m.PlanID), checkID("phaseId", m.PhaseID), m.Changes.validate())
}

// Validate checks the message; errors name the field.
func (m PhaseDelete) Validate() error {
	return firstErr(checkID("planId", m.PlanID), checkID("phaseId", m.PhaseID))
}

// Validate checks the message; errors name the field.
func (m SessionCreate) Validate() error {
	return firstErr(checkID("planId", m.PlanID), checkID("phaseId", m.PhaseID), m.Session.validate("session."))
}

// Validate checks the message; errors name the field.
func (m SessionUpdate) Validate() error {
	return firstErr(checkID("planId", m.PlanID), checkID("phaseId", m.PhaseID),
		checkID("sessionId", m.SessionID), m.Changes.validate())
}

// Validate checks the message; errors name the field.
func (m SessionDelete) Validate() error {
	return firstErr(checkID("planId", m.PlanID), checkID("phaseId", m.PhaseID), checkID("sessionId", m.SessionID))
}

// Validate checks the message; errors name the field.
func (m ExerciseCreate) Validate() error {
	return firstErr(checkID("planId", m.PlanID), checkID("phaseId", m.PhaseID),
		checkID("sessionId", m.SessionID), m.Exercise.validate("exercise."))
}

// Validate checks the message; errors name the field.
func (m ExerciseUpdate) Validate() error {
	return firstErr(checkID("planId", m.PlanID), checkID("phaseId", m.PhaseID),
		checkID("sessionId", m.SessionID), checkID("exerciseId", m.ExerciseID), m.Changes.validate())
}

// Validate checks the message; errors name the field.
func (m ExerciseDelete) Validate() error {
	return firstErr(checkID("planId", m.PlanID), checkID("phaseId", m.PhaseID),
		checkID("sessionId", m.SessionID), checkID("exerciseId", m.ExerciseID))
}

// Validate checks the whole tree. Errors name the path, e.g.
// "phases[1].sessions[0].exercises[3].reps". IDs must be unique within
// their kind across the plan, since they key rows and sub-graph nodes.
func (m PlanFullSave) Validate() error {
	if err := firstErr(
		checkID("planId", m.PlanID),
		checkName("name", m.Name),
		checkID("clientId", m.ClientID),
		checkID("trainerId", m.TrainerID),
	); err != nil {
		return err
	}
	phases, sessions, exercises := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i, p := range m.Phases {
		pp := fmt.Sprintf("phases[%d].", i)
		if err := p.validate(pp); err != nil {
			return err
		}
		if phases[p.ID] {
			return flow.FieldError(pp+"id", "%q is used twice", p.ID)
		}
		phases[p.ID] = true
		for j, s := range p.Sessions {
			sp := fmt.Sprintf("%ssessions[%d].", pp, j)
			if err := s.validate(sp); err != nil {
				return err
			}
			if sessions[s.ID] {
				return flow.FieldError(sp+"id", "%q is used twice", s.ID)
			}
			sessions[s.ID] = true
			for k, e := range s.Exercises {
				ep := fmt.Sprintf("%sexercises[%d].", sp, k)
				if err := e.validate(ep); err != nil {
					return err
				}
				if exercises[e.ID] {
					return flow.FieldError(ep+"id", "%q is used twice", e.ID)
				}
				exercises[e.ID] = true
			}
		}
	}
	return nil
}

// RegisterTypes adds the twelve workout message types to reg, for decoding
// JSON envelopes.
func RegisterTypes(reg *flow.Registry) {
	flow.RegisterType[WorkoutUpdate](reg)
	flow.RegisterType[PlanCreate](reg)
	flow.RegisterType[PhaseCreate](reg)
	flow.RegisterType[PhaseUpdate](reg)
	flow.RegisterType[PhaseDelete](reg)
	flow.RegisterType[SessionCreate](reg)
	flow.RegisterType[SessionUpdate](reg)
	flow.RegisterType[SessionDelete](reg)
	flow.RegisterType[ExerciseCreate](reg)
	flow.RegisterType[ExerciseUpdate](reg)
	flow.RegisterType[ExerciseDelete](reg)
	flow.RegisterType[PlanFullSave](reg)
}
