package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/internal/clip"

	"github.com/redis/go-redis/v9"
)

// OutcomeKind is what a runner reports for a step run.
type OutcomeKind string

const (
	OutcomeOK      OutcomeKind = "ok"      // succeeded with Result
	OutcomeRetry   OutcomeKind = "retry"   // failed; retry after Delay if attempts are left
	OutcomeFail    OutcomeKind = "fail"    // failed for good
	OutcomeSkip    OutcomeKind = "skip"    // condition false: skipped with Reason
	OutcomeRelease OutcomeKind = "release" // runner shutting down: back to ready, attempt not counted
)

// Outcome is one finished step run.
type Outcome struct {
	ID, Token string
	Kind      OutcomeKind
	Result    []byte
	Err       *dag.ErrorInfo
	Delay     time.Duration
	Reason    string
	// Span is the traceparent of the run's span, kept for the children's links.
	Span string
	// Logs are the step's own log records of this run (capped), shown with the job.
	Logs string
	// Batch names the batch the run was part of (a batch step's), shown with the job.
	Batch string
	// Queue, Type, Final and Duration are for the runner's stats, not sent to Redis.
	Queue    string
	Type     string
	Final    bool // a retry with no attempts left: the node fails
	Duration time.Duration
}

// Ended is the outcome as it ends the run: a retry with no attempts left
// is a failure.
func (o *Outcome) Ended() OutcomeKind {
	if o.Kind == OutcomeRetry && o.Final {
		return OutcomeFail
	}
	return o.Kind
}

// Lease is a node a runner holds.
type Lease struct{ ID, Token string }

// Claimed is a node leased to a runner.
type Claimed struct {
	dag.Spec
	FlowID  string
	Attempt int
	Token   string
	ReadyAt time.Time // when it last became ready: queue wait = claim time - ReadyAt
}

// SyncRequest reports outcomes and asks for more work in one round trip.
type SyncRequest struct {
	Worker     string
	Lease      time.Duration
	StallLimit int
	Queues     []string
	// Types are the message types of the runner's single steps: it claims
	// up to Want nodes of these types only (none when empty), so nodes of
	// a type that no runner of this version knows wait for one that does.
	Types []string
	Want  int
	// Batches are the types of its batch steps, each with how many nodes
	// of it to claim, apart from Want.
	Batches []TypeWant
	// Maintain also promotes due delayed nodes, recovers expired leases and
	// trims finished flows; runners ask for it a few times a second, not on
	// every call.
	Maintain    bool
	RetainAge   time.Duration // 0: keep finished flows regardless of age
	RetainCount int           // -1: keep any number
	Outcomes    []Outcome
}

// HistoryError, HistoryStack and HistoryLogs are the most of an error's
// message, its stack and the run's step logs a node's error history
// (dag.Node.Errors) keeps per attempt.
const (
	HistoryError = 1024
	HistoryStack = 2048
	HistoryLogs  = 2048
)

// TypeWant asks for up to Want ready nodes of message type Type.
type TypeWant struct {
	Type string
	Want int
}

// SyncResult says which outcomes applied and which nodes were claimed.
type SyncResult struct {
	Applied []bool
	Claimed []Claimed
	NextDue time.Time // after maintenance: when it is due again (now while finished flows are left to delete, else the earliest delayed node)
}

// Sync applies outcomes, promotes due delayed nodes, recovers expired
// leases, trims finished flows and claims up to Want ready nodes.
func (s *Store) Sync(ctx context.Context, now time.Time, req SyncRequest) (SyncResult, error) {
	args := callArgs(12 + len(req.Queues) + len(req.Types) + 2*len(req.Batches) + 9*len(req.Outcomes))
	args = append(args, ms(now), req.Worker, req.Lease.Milliseconds(), req.StallLimit, req.Want,
		boolArg(req.Maintain), req.RetainAge.Milliseconds(), req.RetainCount, len(req.Queues))
	for _, q := range req.Queues {
		args = append(args, q)
	}
	args = append(args, len(req.Types))
	for _, t := range req.Types {
		args = append(args, t)
	}
	args = append(args, len(req.Batches))
	for _, b := range req.Batches {
		args = append(args, b.Type, b.Want)
	}
	args = append(args, len(req.Outcomes))
	for _, o := range req.Outcomes {
		var a, b, h string
		switch o.Kind {
		case OutcomeOK:
			a = string(o.Result)
		case OutcomeRetry, OutcomeFail:
			e, _ := json.Marshal(o.Err)
			a, b = string(e), strconv.FormatInt(o.Delay.Milliseconds(), 10)
			if o.Err != nil {
				e, _ = json.Marshal(dag.ErrorInfo{Message: clip.Text(o.Err.Message, HistoryError), Attempt: o.Err.Attempt,
					Stack: clip.Text(o.Err.Stack, HistoryStack), Logs: clip.Text(o.Logs, HistoryLogs)})
				h = string(e)
			}
		case OutcomeSkip:
			a = o.Reason
		}
		args = append(args, o.ID, o.Token, string(o.Kind), a, b, o.Span, o.Logs, o.Batch, h)
	}
	res, err := s.run(ctx, s.scripts.sync, args)
	if err != nil {
		return SyncResult{}, err
	}
	var out SyncResult
	n := len(req.Outcomes)
	if len(res) < n+1 {
		return out, fmt.Errorf("store: short reply from sync: %d values", len(res))
	}
	out.Applied = make([]bool, n)
	for i := 0; i < n; i++ {
		out.Applied[i] = str(res[i]) == "1"
	}
	rest := res[n : len(res)-1]
	for i := 0; i+5 < len(rest); i += 6 {
		id := str(rest[i])
		var c Claimed
		if err := decodeData([]byte(str(rest[i+4])), &c.Spec); err != nil {
			return out, fmt.Errorf("dag: node %q: corrupt data: %w", id, err)
		}
		c.ID = id
		c.FlowID = decodeMeta(&c.Spec, str(rest[i+1]))
		c.Attempt, _ = strconv.Atoi(str(rest[i+2]))
		c.Token = str(rest[i+3])
		c.ReadyAt = fromMS(str(rest[i+5]))
		out.Claimed = append(out.Claimed, c)
	}
	if due := str(res[len(res)-1]); due != "" {
		// in ms from the script's clock; the caller plans with its own
		d, _ := strconv.ParseInt(due, 10, 64)
		if now.IsZero() {
			now = time.Now()
		}
		out.NextDue = now.Add(time.Duration(d) * time.Millisecond)
	}
	return out, nil
}

// Heartbeat extends the leases a runner holds and records it as alive,
// with its record (nil keeps the last one sent). It returns the IDs whose
// lease is gone (recovered by another runner, cancelled, …), whose steps
// should stop, and the time by the clock that decides (Redis's, unless
// now is set).
func (s *Store) Heartbeat(ctx context.Context, now time.Time, worker string, lease time.Duration, info *dag.RunnerInfo, held []Lease) (lost []string, at time.Time, err error) {
	var record []byte
	if info != nil {
		if record, err = json.Marshal(info); err != nil {
			return nil, time.Time{}, err
		}
	}
	args := callArgs(4 + 2*len(held))
	args = append(args, ms(now), worker, lease.Milliseconds(), string(record))
	for _, l := range held {
		args = append(args, l.ID, l.Token)
	}
	res, err := s.run(ctx, s.scripts.heartbeat, args)
	if err != nil {
		return nil, time.Time{}, err
	}
	if len(res) == 0 {
		return nil, time.Time{}, errors.New("dag: empty reply from heartbeat")
	}
	lost = make([]string, len(res)-1)
	for i, v := range res[1:] {
		lost[i] = str(v)
	}
	return lost, fromMS(str(res[0])), nil
}

// WaitReady blocks until a node of one of types may have become ready on
// one of queues, or timeout passes. It returns early on a wake-up token.
func (s *Store) WaitReady(ctx context.Context, queues, types []string, timeout time.Duration) error {
	if timeout < 10*time.Millisecond {
		timeout = 10 * time.Millisecond
	}
	if timeout > 2*time.Second {
		timeout = 2 * time.Second // stay under go-redis's default read timeout
	}
	args := make([]any, 0, len(queues)*(len(types)+1)+2)
	args = append(args, "BLPOP")
	for _, q := range queues {
		args = append(args, s.k.wake(q))
		for _, t := range types {
			args = append(args, s.k.laneWake(q, t))
		}
	}
	// BLPOP takes fractional seconds since Redis 6; go-redis's BLPop rounds up to whole seconds.
	args = append(args, strconv.FormatFloat(timeout.Seconds(), 'f', 3, 64))
	err := s.rdb.Do(ctx, args...).Err()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}
