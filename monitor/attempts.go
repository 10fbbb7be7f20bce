package monitor

import (
	"time"

	"github.com/trellisflow/trellis/dag"
)

// AttemptView is one run of a job, read off its timeline: from its change
// to active to its change out of it.
type AttemptView struct {
	Attempt    int        `json:"attempt"`
	Start      time.Time  `json:"start"`
	End        *time.Time `json:"end,omitempty"` // nil while it runs
	DurationMS *float64   `json:"durationMs,omitempty"`
	Worker     string     `json:"worker,omitempty"`
	Batch      string     `json:"batch,omitempty"`
	Outcome    dag.State  `json:"outcome,omitempty"` // the state it went to; empty while it runs
	Error      string     `json:"error,omitempty"`   // its message, from dag.Node.Errors
	Stack      string     `json:"stack,omitempty"`   // its stack (cut), when it had one
	Logs       string     `json:"logs,omitempty"`    // the step's logs of a failed attempt (cut)
}

// attempts lists every run of n, oldest first.
func attempts(n *dag.Node) []AttemptView {
	var out []AttemptView
	open := false // the last attempt has not ended yet
	for _, t := range n.Timeline {
		if t.To == dag.Active {
			out = append(out, AttemptView{Attempt: t.Attempt, Start: t.At.UTC(), Worker: t.Worker})
			open = true
			continue
		}
		if !open {
			continue
		}
		a := &out[len(out)-1]
		a.End, a.Outcome, a.Batch, open = tp(t.At), t.To, t.Batch, false
		if a.Worker == "" {
			a.Worker = t.Worker
		}
		if d := t.At.Sub(a.Start); d >= 0 {
			dur := ms(d)
			a.DurationMS = &dur
		}
	}
	// each failed attempt's error, on the latest run of that number (a retry
	// by hand starts the numbers and the errors again)
	for _, e := range n.Errors {
		for i := len(out) - 1; i >= 0; i-- {
			if out[i].Attempt == e.Attempt && out[i].Outcome != "" && out[i].Outcome != dag.Succeeded {
				out[i].Error, out[i].Stack, out[i].Logs = e.Message, e.Stack, e.Logs
				break
			}
		}
	}
	return out
}
