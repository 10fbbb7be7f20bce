package dag

import (
	"slices"
	"time"
)

// What Trellis reports of itself: counters, events, runners' heartbeats,
// a flow's progress, a type's limits.

// Limit bounds how many nodes of one message type run at once (per queue)
// and how many may start per window, across all runners.
type Limit struct {
	Concurrency int           `json:"concurrency,omitempty"` // 0: unlimited
	Rate        int           `json:"rate,omitempty"`        // starts per Per; 0: unlimited
	Per         time.Duration `json:"per,omitempty"`
}

// Event is one transition from the event stream.
type Event struct {
	StreamID string    `json:"streamId"`
	Node     string    `json:"node"`
	From     State     `json:"from,omitempty"`
	To       State     `json:"to"`
	At       time.Time `json:"at"`
	Attempt  int       `json:"attempt"`
	Worker   string    `json:"worker,omitempty"`
}

// Count is the number of nodes in one state, queue and message type.
type Count struct {
	State State  `json:"state"`
	Queue string `json:"queue"`
	Type  string `json:"type"`
	N     int64  `json:"n"`
}

// FlowStatus is a cheap summary of a flow's progress.
type FlowStatus struct {
	Nodes, Unfinished int
	Done              bool
}

// RunnerInfo is what a runner says of itself with each heartbeat.
type RunnerInfo struct {
	Host        string    `json:"host,omitempty"`
	PID         int       `json:"pid,omitempty"`
	Version     string    `json:"version,omitempty"`
	Queues      []string  `json:"queues"`
	Types       []string  `json:"types"` // the message types it has steps for: all it claims
	Concurrency int       `json:"concurrency"`
	InFlight    int       `json:"inFlight"`
	Started     time.Time `json:"started"`
	// Library is the Redis Functions library its scripts run as, where
	// Redis has Functions (one per Trellis version); empty from a Trellis
	// that did not say.
	Library string `json:"library,omitempty"`
}

// Serves reports whether the runner claims nodes of type typ on queue.
func (ri *RunnerInfo) Serves(queue, typ string) bool {
	return slices.Contains(ri.Queues, queue) && slices.Contains(ri.Types, typ)
}

// Heartbeat is a runner's last heartbeat. Info is nil for a runner of a
// Trellis that sent no record.
type Heartbeat struct {
	ID       string      `json:"id"`
	LastSeen time.Time   `json:"lastSeen"`
	Info     *RunnerInfo `json:"info,omitempty"`
}

// DurationBuckets are the upper bounds of the step-duration histogram kept
// per minute (the last bucket is unbounded).
var DurationBuckets = []time.Duration{
	time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
}
