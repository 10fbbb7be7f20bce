package flowtest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/trellisflow/trellis/dag"
)

// Job reads job id from the store; an unknown ID fails the test.
func (h *Harness) Job(id string) *dag.Node {
	h.t.Helper()
	j, err := h.client.Job(context.Background(), id)
	if err != nil {
		h.t.Fatalf("flowtest: job %q: %v", id, err)
	}
	return j
}

// RequireRan fails the test unless the step of every job in ids ran at
// least once. A node skipped by its condition or cancelled by a parent did
// not run.
func (h *Harness) RequireRan(ids ...string) {
	h.t.Helper()
	ran := h.ran()
	var missing []string
	for _, id := range ids {
		if !ran[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		h.t.Fatalf("flowtest: expected %s to have run; runs: %s", strings.Join(missing, ", "), h.order())
	}
}

// RequireNotRan fails the test if the step of any job in ids ran.
func (h *Harness) RequireNotRan(ids ...string) {
	h.t.Helper()
	ran := h.ran()
	var wrong []string
	for _, id := range ids {
		if ran[id] {
			wrong = append(wrong, id)
		}
	}
	if len(wrong) > 0 {
		h.t.Fatalf("flowtest: expected %s not to have run; runs: %s", strings.Join(wrong, ", "), h.order())
	}
}

// RequireState fails the test unless job id is in state want.
func (h *Harness) RequireState(id string, want dag.State) {
	h.t.Helper()
	j := h.Job(id)
	if j.State != want {
		h.t.Fatalf("flowtest: job %q is %s, want %s%s", id, j.State, want, describe(j))
	}
}

// RequireSucceeded fails the test unless every job in ids succeeded.
func (h *Harness) RequireSucceeded(ids ...string) {
	h.t.Helper()
	for _, id := range ids {
		h.RequireState(id, dag.Succeeded)
	}
}

// RequireOrder fails the test unless the jobs in ids first ran in this
// order (other jobs may have run in between).
func (h *Harness) RequireOrder(ids ...string) {
	h.t.Helper()
	first := map[string]int{}
	for i, r := range h.Runs() {
		if _, ok := first[r.Job]; !ok {
			first[r.Job] = i
		}
	}
	prev := -1
	for k, id := range ids {
		i, ok := first[id]
		if !ok {
			h.t.Fatalf("flowtest: expected order %s, but %s never ran; runs: %s", strings.Join(ids, " → "), id, h.order())
			return
		}
		if i <= prev {
			h.t.Fatalf("flowtest: expected order %s, but %s ran before %s; runs: %s", strings.Join(ids, " → "), id, ids[k-1], h.order())
			return
		}
		prev = i
	}
}

// RequireAttempts fails the test unless job id used n attempts, as the
// engine counts them (a manual Retry starts the count again).
func (h *Harness) RequireAttempts(id string, n int) {
	h.t.Helper()
	j := h.Job(id)
	if j.Attempt != n {
		h.t.Fatalf("flowtest: job %q used %d attempts, want %d%s", id, j.Attempt, n, describe(j))
	}
}

// Result decodes the result of job id into v; a job without a result (not
// succeeded) fails the test.
func (h *Harness) Result(id string, v any) {
	h.t.Helper()
	j := h.Job(id)
	if j.State != dag.Succeeded || len(j.Result) == 0 {
		h.t.Fatalf("flowtest: job %q has no result: it is %s%s", id, j.State, describe(j))
	}
	if err := json.Unmarshal(j.Result, v); err != nil {
		h.t.Fatalf("flowtest: job %q: decode result %s: %v", id, j.Result, err)
	}
}

// ran is the set of jobs whose step ran.
func (h *Harness) ran() map[string]bool {
	out := map[string]bool{}
	for _, r := range h.Runs() {
		out[r.Job] = true
	}
	return out
}

// order describes the recorded runs for failure messages.
func (h *Harness) order() string {
	runs := h.Runs()
	if len(runs) == 0 {
		return "(none)"
	}
	parts := make([]string, 0, len(runs))
	for _, r := range runs {
		s := r.Job
		if r.Attempt > 1 {
			s += fmt.Sprintf("#%d", r.Attempt)
		}
		if r.Err != nil {
			s += " (failed)"
		}
		parts = append(parts, s)
	}
	return strings.Join(slices.Clip(parts), ", ")
}

func describe(j *dag.Node) string {
	var b strings.Builder
	if j.Reason != "" {
		fmt.Fprintf(&b, " (%s)", j.Reason)
	}
	if j.Error != nil {
		fmt.Fprintf(&b, " (last error: %s)", j.Error.Message)
	}
	return b.String()
}
