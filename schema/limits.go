package schema

import "math"

// The bounds of the columns the steps' messages write. Every message checks
// its fields against them when it is enqueued (its Validate method), so a
// value the database would refuse, or a text no screen needs, is refused
// with its field named before anything is queued. Lengths are in bytes: a
// VARCHAR(n) column holds n characters, so n bytes always fit. The VARCHAR
// bounds are the migrations' (TestBoundsMatchTheColumns holds them to it);
// TEXT columns are bounded here only.
const (
	// MaxID bounds the IDs of plans, phases, sessions and exercises and
	// the client, trainer and user IDs: VARCHAR(128).
	MaxID = 128
	// MaxJobID bounds the job IDs rows are keyed by (a user action's, a
	// notification's, an email's, a data sync run's, a step record's):
	// VARCHAR(256), the engine's own limit.
	MaxJobID = 256
	// MaxName bounds the names of plans, phases, sessions and exercises,
	// and a user action's action (TEXT).
	MaxName = 256
	// MaxTempo bounds an exercise's tempo, e.g. "3-1-1-0" (TEXT).
	MaxTempo = 64
	// MaxNotes bounds an exercise's notes (TEXT).
	MaxNotes = 4096
	// MaxDetails bounds a user action's details, encoded as JSON (TEXT).
	MaxDetails = 64 << 10
	// MaxTitle bounds a notification's title (TEXT).
	MaxTitle = 256
	// MaxMessage bounds a notification's message (TEXT).
	MaxMessage = 4096
	// MaxURL bounds a notification's action URL (TEXT).
	MaxURL = 2048
	// MaxEmailAddress bounds an email's recipient (TEXT): the longest
	// address SMTP carries (RFC 5321).
	MaxEmailAddress = 254
	// MaxSubject bounds an email's subject (TEXT): the longest header line
	// RFC 5322 allows.
	MaxSubject = 998
	// MaxBody bounds an email's body (TEXT).
	MaxBody = 256 << 10
	// MaxInt bounds whole numbers (order numbers, sets, reps, rest):
	// INTEGER, 32 bits on PostgreSQL.
	MaxInt = math.MaxInt32
)
