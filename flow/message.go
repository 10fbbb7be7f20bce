package flow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/trellisflow/trellis/internal/jsonobj"
)

// Message is a typed job payload. Implement MessageType on a struct with a
// value receiver; the struct is encoded as the envelope's data.
type Message interface {
	MessageType() string
}

// Labeler is implemented by messages that name what they are about for
// people (a plan's or an exercise's name): the default NodeOpts.Label.
type Labeler interface {
	Label() string
}

// MaxLabel is the most characters a node's label keeps.
const MaxLabel = 80

// labelOf is a node's label: the options', else the message's, cut to
// MaxLabel characters.
func labelOf(msg Message, label string) string {
	if label == "" {
		m, _ := unwrap(msg)
		if l, ok := m.(Labeler); ok {
			label = l.Label()
		}
	}
	label = strings.TrimSpace(strings.ToValidUTF8(label, "\uFFFD"))
	if utf8.RuneCountInString(label) > MaxLabel {
		label = string([]rune(label)[:MaxLabel-1]) + "…"
	}
	return label
}

// Validator is implemented by messages that check their own data. Enqueue
// refuses a message whose Validate fails, and a step receiving one fails
// permanently.
type Validator interface {
	Validate() error
}

// OptionsDefaulter is implemented by message types whose jobs need other
// options than the client's defaults: a create that may run before the row
// it hangs under exists, say, retries for minutes rather than seconds.
// Every enqueue (Enqueue, Add, AddBulk, AddJSON, an expansion) fills them
// in where the caller's options leave them unset (see DefaultedOpts).
type OptionsDefaulter interface {
	DefaultOpts() NodeOpts
}

// DefaultedOpts returns a copy of opts (nil for none) with the options of
// msg's type (OptionsDefaulter) for Attempts, Backoff and Timeout where opts
// sets none. A message type without defaults gets opts as they are.
func DefaultedOpts(msg Message, opts *NodeOpts) *NodeOpts {
	var o NodeOpts
	if opts != nil {
		o = *opts
	}
	msg, _ = unwrap(msg)
	d, ok := msg.(OptionsDefaulter)
	if !ok {
		return &o
	}
	def := d.DefaultOpts()
	if o.Attempts == 0 {
		o.Attempts = def.Attempts
	}
	if o.Backoff == nil && def.Backoff != nil {
		b := *def.Backoff
		o.Backoff = &b
	}
	if o.Timeout == 0 {
		o.Timeout = def.Timeout
	}
	return &o
}

// Envelope is the uniform message every job carries:
// {messageType, timestamp, enqueuedAt, userId?, metadata?, data}.
type Envelope struct {
	MessageType string `json:"messageType"`
	// Timestamp is when the message was made: the timestamp of a JSON
	// envelope (AddJSON, the CLI, the HTTP API) or of WithTimestamp, kept as
	// the client sent it (in UTC), since the audit trail is about when the
	// user acted; the enqueue time when the client gave none.
	Timestamp time.Time `json:"timestamp"`
	// EnqueuedAt is when Trellis enqueued the job, by the enqueuing
	// client's clock; it is set at enqueue, whatever a JSON envelope says.
	// Zero in envelopes written before it existed: see Enqueued.
	EnqueuedAt time.Time       `json:"enqueuedAt,omitzero"`
	UserID     string          `json:"userId,omitempty"`
	Metadata   map[string]any  `json:"metadata,omitempty"`
	Data       json.RawMessage `json:"data"`
}

// Enqueued is when the job was enqueued: EnqueuedAt, or Timestamp in an
// envelope written before EnqueuedAt existed (Timestamp was the enqueue
// time then).
func (e Envelope) Enqueued() time.Time {
	if e.EnqueuedAt.IsZero() {
		return e.Timestamp
	}
	return e.EnqueuedAt
}

// WithTimestamp returns msg to be enqueued with the envelope timestamp at
// (when the user acted) instead of the enqueue time. Enqueue it like msg;
// the step receives msg. The timestamp is not part of the job's identity:
// the same message with another timestamp under the same job ID is the same
// job.
func WithTimestamp(msg Message, at time.Time) Message {
	if isNil(msg) || at.IsZero() {
		return msg
	}
	if s, ok := msg.(stamped); ok {
		msg = s.Message
	}
	return stamped{Message: msg, at: at}
}

// stamped is a message with the timestamp its envelope carries.
type stamped struct {
	Message
	at time.Time
}

// Validate runs the wrapped message's checks.
func (s stamped) Validate() error {
	if v, ok := s.Message.(Validator); ok {
		return v.Validate()
	}
	return nil
}

// unwrap returns the message a WithTimestamp wraps, and its timestamp.
func unwrap(msg Message) (Message, time.Time) {
	if s, ok := msg.(stamped); ok {
		return s.Message, s.at
	}
	return msg, time.Time{}
}

// decodeEnvelope is json.Unmarshal(b, env) into a zero env, without the
// reflection for the envelopes the client writes; anything else (and every
// error) goes through encoding/json. A runner decodes one per job.
func decodeEnvelope(b []byte, env *Envelope) error {
	var e Envelope
	if jsonobj.Decode(b, func(key string, v []byte) (ok bool) {
		switch key {
		case "messageType":
			e.MessageType, ok = jsonobj.String(v)
		case "timestamp":
			ok = v[0] == '"' && e.Timestamp.UnmarshalJSON(v) == nil
		case "enqueuedAt":
			ok = v[0] == '"' && e.EnqueuedAt.UnmarshalJSON(v) == nil
		case "userId":
			e.UserID, ok = jsonobj.String(v)
		case "metadata":
			ok = v[0] == '{' && json.Unmarshal(v, &e.Metadata) == nil
		case "data":
			e.Data, ok = append(json.RawMessage(nil), v...), true
		}
		return ok
	}) {
		*env = e
		return nil
	}
	return json.Unmarshal(b, env)
}

// ErrInvalidMessage is matched by every error about a message's content.
var ErrInvalidMessage = errors.New("invalid message")

// MessageError names what is wrong with a message.
type MessageError struct {
	Type   string // the message type, when known
	Field  string // the offending field, when known
	Reason string
}

func (e *MessageError) Error() string {
	s := "invalid message"
	if e.Type != "" {
		s += " " + e.Type
	}
	if e.Field != "" {
		s += ": field " + e.Field
	}
	return s + ": " + e.Reason
}
func (e *MessageError) Is(target error) bool { return target == ErrInvalidMessage }

// FieldError reports a bad field from a message's Validate method.
func FieldError(field, format string, args ...any) error {
	return &MessageError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Registry maps message types to Go types, to decode JSON envelopes from
// outside Go (the CLI, the HTTP API).
type Registry struct {
	mu    sync.RWMutex
	types map[string]reflect.Type
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{types: map[string]reflect.Type{}} }

// RegisterType adds message type M to r.
func RegisterType[M Message](r *Registry) {
	var m M
	r.mu.Lock()
	defer r.mu.Unlock()
	r.types[m.MessageType()] = reflect.TypeFor[M]()
}

// Types lists the registered message types, sorted.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.types))
	for t := range r.types {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Known reports whether typ is registered.
func (r *Registry) Known(typ string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.types[typ]
	return ok
}

// Decode parses a JSON envelope into its typed message, strictly: unknown
// fields, a missing or unknown messageType, missing data and data that fails
// Validate are errors that name the problem.
func (r *Registry) Decode(raw []byte) (Envelope, Message, error) {
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return env, nil, &MessageError{Reason: "malformed envelope: " + jsonReason(err)}
	}
	if dec.More() {
		return env, nil, &MessageError{Reason: "malformed envelope: trailing data after the JSON object"}
	}
	if env.MessageType == "" {
		return env, nil, &MessageError{Field: "messageType", Reason: "is missing"}
	}
	r.mu.RLock()
	t, ok := r.types[env.MessageType]
	r.mu.RUnlock()
	if !ok {
		return env, nil, &MessageError{Field: "messageType", Reason: fmt.Sprintf("unknown message type %q", env.MessageType)}
	}
	if len(env.Data) == 0 || string(env.Data) == "null" {
		return env, nil, &MessageError{Type: env.MessageType, Field: "data", Reason: "is missing"}
	}
	ptr := reflect.New(t)
	dd := json.NewDecoder(bytes.NewReader(env.Data))
	dd.DisallowUnknownFields()
	if err := dd.Decode(ptr.Interface()); err != nil {
		return env, nil, &MessageError{Type: env.MessageType, Field: "data", Reason: jsonReason(err)}
	}
	msg := ptr.Elem().Interface().(Message)
	if err := validate(msg); err != nil {
		return env, nil, err
	}
	return env, msg, nil
}

func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "(top level)"
		}
		return fmt.Sprintf("field %s: expected %s, got JSON %s", field, te.Type, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	return err.Error()
}

// validate runs a message's own checks, tagging errors with its type.
func validate(msg Message) error {
	v, ok := msg.(Validator)
	if !ok {
		return nil
	}
	err := v.Validate()
	if err == nil {
		return nil
	}
	var me *MessageError
	if errors.As(err, &me) {
		c := *me
		c.Type = msg.MessageType()
		return &c
	}
	return &MessageError{Type: msg.MessageType(), Reason: err.Error()}
}

// encode builds the envelope JSON of msg, enqueued now: its timestamp is
// the one WithTimestamp gave msg, or now.
func encode(msg Message, now time.Time, userID string, metadata map[string]any) (payload, data []byte, err error) {
	msg, at := unwrap(msg)
	if at.IsZero() {
		at = now
	} else if y := at.UTC().Year(); y < 0 || y > 9999 {
		return nil, nil, &MessageError{Type: msg.MessageType(), Field: "timestamp", Reason: fmt.Sprintf("year %d is outside 0..9999", y)}
	}
	data, err = json.Marshal(msg)
	if err != nil {
		return nil, nil, &MessageError{Type: msg.MessageType(), Reason: "cannot encode: " + err.Error()}
	}
	payload, err = json.Marshal(Envelope{
		MessageType: msg.MessageType(), Timestamp: at.UTC(), EnqueuedAt: now.UTC(), UserID: userID, Metadata: metadata, Data: data,
	})
	if err != nil {
		return nil, nil, &MessageError{Type: msg.MessageType(), Field: "metadata", Reason: "cannot encode: " + err.Error()}
	}
	return payload, data, nil
}
