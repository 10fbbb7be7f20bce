package dag

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trellisflow/trellis/internal/jsonobj"
)

const sep = "\x1f"

// fanIn marks, in a node's list of children, a child of more than one
// parent: the scripts count a parent's success for it without reading it.
const fanIn = "\x1e"

// Store keeps the flows of one namespace in Redis.
type Store struct {
	rdb     redis.UniversalClient
	ns      string
	k       keys
	scripts *scripts
	fns     atomic.Int32 // fnTry or fnOff, see run
}

// NewStore returns the store of namespace ns (letters, digits, '_', '-',
// '.', ':') on rdb. It does not touch Redis.
func NewStore(rdb redis.UniversalClient, ns string) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("dag: nil Redis client")
	}
	if err := CheckName(ns); err != nil {
		return nil, fmt.Errorf("dag: namespace %q %s", ns, err.Error())
	}
	sc, err := loadScripts()
	if err != nil {
		return nil, err
	}
	return &Store{rdb: rdb, ns: ns, k: newKeys(ns), scripts: sc}, nil
}

// Namespace is the store's namespace.
func (s *Store) Namespace() string { return s.ns }

// Redis is the client the store uses.
func (s *Store) Redis() redis.UniversalClient { return s.rdb }

// ms is a time as the scripts take it: the zero time is "", which makes
// them read Redis's own clock (see Time).
func ms(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// Time is Redis's clock. Every method that takes a time decides by it when
// given the zero time, so that runners on machines whose clocks disagree
// share one clock for leases, due times and retention.
func (s *Store) Time(ctx context.Context) (time.Time, error) {
	t, err := s.rdb.Time(ctx).Result()
	if err != nil {
		return time.Time{}, fmt.Errorf("dag: redis: %w", err)
	}
	return t, nil
}

// clock is now, or Redis's time when now is zero.
func (s *Store) clock(ctx context.Context, now time.Time) (time.Time, error) {
	if !now.IsZero() {
		return now, nil
	}
	return s.Time(ctx)
}

func fromMS(v string) time.Time {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil {
			return time.Time{}
		}
		n = int64(f)
	}
	return time.UnixMilli(n)
}

// Enqueued is one node as enqueue left it.
type Enqueued struct {
	ID      string
	State   State
	Existed bool // the same job was enqueued before; nothing was written
}

// Enqueue writes a graph that Validate accepted, all or nothing. single
// makes a one-node flow keyed by the node's own ID.
func (s *Store) Enqueue(ctx context.Context, now time.Time, flowID string, single bool, specs []Spec, order []int) ([]Enqueued, error) {
	res, err := s.EnqueueBatch(ctx, now, []FlowWrite{{FlowID: flowID, Single: single, Specs: specs, Order: order}})
	if err != nil {
		return nil, err
	}
	return res[0].Nodes, res[0].Err
}

// FlowWrite is one graph to enqueue (see Enqueue).
type FlowWrite struct {
	FlowID string
	Single bool
	// Fresh says FlowID was just generated, so no flow of that ID exists:
	// the write skips reading the flow's node count.
	Fresh bool
	Specs []Spec
	Order []int
}

// FlowWritten is the outcome of one FlowWrite. Err is the flow's own error
// (a conflict, an unknown dependency), or ErrNotAttempted when an earlier
// flow of the batch failed and this one was not written.
type FlowWritten struct {
	Nodes []Enqueued
	Err   error
}

// ErrNotAttempted marks a flow of a batch that was not written because an
// earlier one failed; enqueue it again.
var ErrNotAttempted = errors.New("not attempted: an earlier flow of the batch failed")

// EnqueueBatch writes several graphs in one script call, each all or
// nothing. The error is for the call as a whole (Redis unreachable).
func (s *Store) EnqueueBatch(ctx context.Context, now time.Time, flows []FlowWrite) ([]FlowWritten, error) {
	return s.enqueueBatch(ctx, now, flows, "each")
}

// EnqueueAll writes several graphs in one script call, all of them or none:
// the first flow that fails its check (its FlowWritten.Err says why) leaves
// every flow unwritten, the others with ErrNotAttempted. No node ID may
// appear in two of the flows.
func (s *Store) EnqueueAll(ctx context.Context, now time.Time, flows []FlowWrite) ([]FlowWritten, error) {
	seen := make(map[string]int, len(flows))
	for i, f := range flows {
		for _, sp := range f.Specs {
			if j, dup := seen[sp.ID]; dup && j != i {
				return nil, &InvalidNodeError{ID: sp.ID, Field: "id", Reason: "appears in two of the flows written together"}
			}
			seen[sp.ID] = i
		}
	}
	return s.enqueueBatch(ctx, now, flows, "all")
}

func (s *Store) enqueueBatch(ctx context.Context, now time.Time, flows []FlowWrite, mode string) ([]FlowWritten, error) {
	units := batchUnits(flows, mode)
	n := 3
	for _, f := range flows {
		n += 3
		for i := range f.Specs {
			n += 7 + 2*len(f.Specs[i].Parents)
		}
	}
	args := append(callArgs(n), ms(now), len(units), mode)
	for _, u := range units {
		if u.group {
			// one-node flows travel as one list of nodes; a node of a
			// one-node flow is its own flow, so no flow ID is needed
			specs, order := make([]Spec, 0, u.to-u.from), make([]int, 0, u.to-u.from)
			for i := u.from; i < u.to; i++ {
				specs, order = append(specs, flows[i].Specs[0]), append(order, i-u.from)
			}
			args = append(args, "", "1", len(specs))
			args = appendNodes(args, specs, order, nil)
			continue
		}
		f := flows[u.from]
		kind := "0"
		if f.Single {
			kind = "1"
		} else if f.Fresh {
			kind = "n"
		}
		args = append(args, f.FlowID, kind, len(f.Specs))
		args = appendNodes(args, f.Specs, f.Order, nil)
	}
	res, err := s.run(ctx, s.scripts.enqueue, args)
	if err != nil {
		return nil, err
	}
	out := make([]FlowWritten, len(flows))
	for k, u := range units {
		var reply []any
		if k < len(res) {
			reply, _ = res[k].([]any)
		}
		if len(reply) == 0 || (len(reply) == 1 && reply[0] == "unwritten") {
			for i := u.from; i < u.to; i++ {
				out[i].Err = ErrNotAttempted
			}
			continue
		}
		if !u.group {
			out[u.from].Nodes, out[u.from].Err = parseInsert(reply, orderedIDs(flows[u.from].Specs, flows[u.from].Order))
			continue
		}
		ids := make([]string, 0, u.to-u.from)
		for i := u.from; i < u.to; i++ {
			ids = append(ids, flows[i].Specs[0].ID)
		}
		nodes, err := parseInsert(reply, ids)
		named := err != nil && slices.ContainsFunc(ids, func(id string) bool { return isAbout(err, id) })
		for i := u.from; i < u.to; i++ {
			switch {
			case err == nil:
				out[i].Nodes = nodes[i-u.from : i-u.from+1]
			case !named || isAbout(err, ids[i-u.from]):
				out[i].Err = err // the flow it names, or every flow when it names none
			default:
				out[i].Err = ErrNotAttempted
			}
		}
	}
	return out, nil
}

// batchUnit is a flow of a batch, or (group) a run of one-node flows
// without parents that travel together: flows[from:to].
type batchUnit struct {
	from, to int
	group    bool
}

// batchUnits groups the runs of one-node flows without parents of an
// all-or-nothing batch (AddBulk): Lua then checks and writes them as one
// list, which costs a third less per job than one flow each. Groups keep
// each flow's own result, and whichever flow fails fails the whole batch
// either way; in mode "each" every flow stays on its own, since the flows
// before a failed one must still be written.
func batchUnits(flows []FlowWrite, mode string) []batchUnit {
	units := make([]batchUnit, 0, len(flows))
	lone := func(f *FlowWrite) bool { return f.Single && len(f.Specs) == 1 && len(f.Specs[0].Parents) == 0 }
	for i := 0; i < len(flows); {
		j := i + 1
		if mode == "all" && lone(&flows[i]) {
			for j < len(flows) && lone(&flows[j]) {
				j++
			}
		}
		units = append(units, batchUnit{from: i, to: j, group: j-i > 1})
		i = j
	}
	return units
}

// isAbout reports whether err, from a group's check, names node id.
func isAbout(err error, id string) bool {
	var ce *ConflictError
	var ue *UnknownDependencyError
	switch {
	case errors.As(err, &ce):
		return ce.ID == id
	case errors.As(err, &ue):
		return ue.Node == id
	}
	return false
}

// Expand completes the active node id (under token) by adding a sub-graph to
// its flow; the node finishes when the sub-graph's sinks do.
func (s *Store) Expand(ctx context.Context, now time.Time, id, token string, result []byte, specs []Spec, order []int) ([]Enqueued, error) {
	n := 5
	for i := range specs {
		n += 8 + 2*len(specs[i].Parents)
	}
	args := append(callArgs(n), ms(now), id, token, string(result), len(specs))
	args = appendNodes(args, specs, order, &id)
	res, err := s.run(ctx, s.scripts.expand, args)
	if err != nil {
		return nil, err
	}
	if len(res) == 1 && res[0] == "lost" {
		return nil, fmt.Errorf("dag: expand %q: %w", id, ErrLeaseLost)
	}
	return parseInsert(res, orderedIDs(specs, order))
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// appendNodes encodes specs in topological order for insert() in scripts/lib/7-insert.lua.
// joiner, when set, is added as a child of every sink (expansion).
func appendNodes(args []any, specs []Spec, order []int, joiner *string) []any {
	children := make(map[string][]string, len(specs))
	inBatch := make(map[string]bool, len(specs))
	for i := range specs {
		inBatch[specs[i].ID] = true
	}
	for _, i := range order {
		id := specs[i].ID
		if len(specs[i].Parents) > 1 {
			id = fanIn + id
		}
		for _, p := range specs[i].Parents {
			if inBatch[p] {
				children[p] = append(children[p], id)
			}
		}
	}
	metas := map[metaKey]string{} // nodes of a graph share a few metas
	var buf []byte
	for _, i := range order {
		sp := &specs[i]
		data := encodeData(sp)
		ch := children[sp.ID]
		if joiner != nil && len(ch) == 0 {
			ch = []string{*joiner}
		}
		mk := metaKey{sp.Queue, sp.Type, sp.Policy, sp.Priority, sp.Delay, sp.Attempts}
		m, ok := metas[mk]
		if !ok {
			m = meta(sp)
			metas[mk] = m
		}
		var h string
		h, buf = identityOf(buf, m, sp, data)
		args = append(args, sp.ID, boolArg(sp.Fresh), h, m, data, len(sp.Parents))
		for _, p := range sp.Parents {
			args = append(args, p)
		}
		args = append(args, len(ch))
		for _, c := range ch {
			args = append(args, c)
		}
	}
	return args
}

// encodeData is json.Marshal(sp), written by hand: the payload is already
// JSON (json.Marshal would copy and re-validate it), and on a 100,000-node
// enqueue the reflection cost more than the rest of the encoding.
func encodeData(sp *Spec) []byte {
	out := make([]byte, 0, len(sp.Payload)+64+40*len(sp.Parents))
	out = append(out, `{"e":`...)
	if len(sp.Payload) == 0 {
		out = append(out, "null"...)
	} else {
		out = append(out, sp.Payload...)
	}
	if len(sp.Parents) > 0 {
		out = append(out, `,"p":[`...)
		for i, p := range sp.Parents {
			if i > 0 {
				out = append(out, ',')
			}
			out = appendJSONString(out, p)
		}
		out = append(out, ']')
	}
	if b := sp.Backoff; b != (Backoff{}) {
		out = append(out, `,"bo":{`...)
		n := len(out)
		comma := func() {
			if len(out) > n {
				out = append(out, ',')
			}
		}
		if b.Kind != "" {
			out = appendJSONString(append(out, `"k":`...), string(b.Kind))
		}
		if b.Base != 0 {
			comma()
			out = strconv.AppendInt(append(out, `"b":`...), int64(b.Base), 10)
		}
		if b.Max != 0 {
			comma()
			out = strconv.AppendInt(append(out, `"m":`...), int64(b.Max), 10)
		}
		if b.Jitter {
			comma()
			out = append(out, `"j":true`...)
		}
		if b.Name != "" {
			comma()
			out = appendJSONString(append(out, `"n":`...), b.Name)
		}
		out = append(out, '}')
	}
	if sp.Timeout != 0 {
		out = strconv.AppendInt(append(out, `,"to":`...), int64(sp.Timeout), 10)
	}
	if sp.When != "" {
		out = appendJSONString(append(out, `,"w":`...), sp.When)
	}
	if sp.Trace != "" {
		out = appendJSONString(append(out, `,"tr":`...), sp.Trace)
	}
	return append(out, '}')
}

// decodeData is json.Unmarshal(b, sp) for a data blob, without the
// reflection, for the blobs encodeData writes; anything else (and every
// error) goes through encoding/json. Payload aliases b.
func decodeData(b []byte, sp *Spec) error {
	var d Spec
	if jsonobj.Decode(b, func(key string, v []byte) (ok bool) {
		switch key {
		case "e":
			d.Payload, ok = v, true
		case "p":
			d.Parents, ok = jsonobj.Strings(v)
		case "bo":
			ok = decodeBackoff(v, &d.Backoff)
		case "to":
			ok = jsonDuration(v, &d.Timeout)
		case "w":
			d.When, ok = jsonobj.String(v)
		case "tr":
			d.Trace, ok = jsonobj.String(v)
		}
		return ok
	}) {
		sp.Payload, sp.Parents, sp.Backoff, sp.Timeout, sp.When, sp.Trace = d.Payload, d.Parents, d.Backoff, d.Timeout, d.When, d.Trace
		return nil
	}
	return json.Unmarshal(b, sp)
}

func decodeBackoff(v []byte, b *Backoff) bool {
	return jsonobj.Members(v, func(key string, v []byte) (ok bool) {
		switch key {
		case "k":
			var k string
			k, ok = jsonobj.String(v)
			b.Kind = BackoffKind(k)
		case "b":
			ok = jsonDuration(v, &b.Base)
		case "m":
			ok = jsonDuration(v, &b.Max)
		case "j":
			b.Jitter, ok = string(v) == "true", string(v) == "true" || string(v) == "false"
		case "n":
			b.Name, ok = jsonobj.String(v)
		}
		return ok
	})
}

// jsonDuration reads a JSON integer as encoding/json reads it into a
// time.Duration.
func jsonDuration(v []byte, d *time.Duration) bool {
	n, err := strconv.ParseInt(string(v), 10, 64)
	*d = time.Duration(n)
	return err == nil
}

// appendJSONString appends s as a JSON string. s is valid UTF-8 (IDs and
// conditions are checked); quotes, backslashes and control characters are
// escaped, everything else is copied.
func appendJSONString(out []byte, s string) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c < 0x20:
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}

// meta packs what Lua needs: queue, type, policy, priority, delay ms, attempts.
func meta(sp *Spec) string {
	return strings.Join([]string{
		sp.Queue, sp.Type, string(sp.Policy), strconv.Itoa(sp.Priority),
		strconv.FormatInt(sp.Delay.Milliseconds(), 10), strconv.Itoa(sp.Attempts),
	}, sep)
}

type metaKey struct {
	queue, typ string
	policy     Policy
	priority   int
	delay      time.Duration
	attempts   int
}

// identityOf is the hash a re-enqueue of the same ID is compared by: the
// node's meta and its Identity, or its data when Identity is empty. buf is
// reused across calls.
func identityOf(buf []byte, meta string, sp *Spec, data []byte) (string, []byte) {
	buf = append(append(buf[:0], meta...), 0)
	if sp.Identity != "" {
		buf = append(buf, sp.Identity...)
	} else {
		buf = append(buf, data...)
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:12]), buf
}

func orderedIDs(specs []Spec, order []int) []string {
	ids := make([]string, len(order))
	for k, i := range order {
		ids[k] = specs[i].ID
	}
	return ids
}

// parseInsert reads insert()'s reply; ids are the nodes in the order sent.
func parseInsert(res []any, ids []string) ([]Enqueued, error) {
	if len(res) == 0 {
		return nil, errors.New("dag: empty reply from enqueue")
	}
	switch res[0] {
	case "ok":
	case "conflict":
		return nil, &ConflictError{ID: str(res[1])}
	case "unknown":
		return nil, &UnknownDependencyError{Node: str(res[1]), Dependency: str(res[2])}
	case "flowid":
		return nil, &FlowIDError{ID: str(res[1])}
	case "cycle":
		path := make([]string, 0, len(res))
		for _, v := range res[1:] {
			path = append(path, str(v))
		}
		return nil, &CycleError{Path: append(path, path[0])}
	default:
		return nil, fmt.Errorf("dag: unexpected reply %v", res[0])
	}
	if len(res)-1 != len(ids) {
		return nil, fmt.Errorf("dag: enqueue replied for %d nodes, sent %d", len(res)-1, len(ids))
	}
	out := make([]Enqueued, len(ids))
	for i, id := range ids {
		st := str(res[i+1])
		existed := strings.HasPrefix(st, "=")
		out[i] = Enqueued{ID: id, State: State(strings.TrimPrefix(st, "=")), Existed: existed}
	}
	return out, nil
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

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
	Err       *ErrorInfo
	Delay     time.Duration
	Reason    string
	// Span is the traceparent of the run's span, kept for the children's links.
	Span string
	// Logs are the step's own log records of this run (capped), shown with the job.
	Logs string
	// Type, Final and Duration are for the runner's stats, not sent to Redis.
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
	Spec
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
	// Types are the message types the runner has steps for: it claims
	// nodes of these types only (none when empty), so nodes of a type
	// that no runner of this version knows wait for one that does.
	Types []string
	Want  int
	// Maintain also promotes due delayed nodes, recovers expired leases and
	// trims finished flows; runners ask for it a few times a second, not on
	// every call.
	Maintain    bool
	RetainAge   time.Duration // 0: keep finished flows regardless of age
	RetainCount int           // -1: keep any number
	Outcomes    []Outcome
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
	args := callArgs(11 + len(req.Queues) + len(req.Types) + 7*len(req.Outcomes))
	args = append(args, ms(now), req.Worker, req.Lease.Milliseconds(), req.StallLimit, req.Want,
		boolArg(req.Maintain), req.RetainAge.Milliseconds(), req.RetainCount, len(req.Queues))
	for _, q := range req.Queues {
		args = append(args, q)
	}
	args = append(args, len(req.Types))
	for _, t := range req.Types {
		args = append(args, t)
	}
	args = append(args, len(req.Outcomes))
	for _, o := range req.Outcomes {
		var a, b string
		switch o.Kind {
		case OutcomeOK:
			a = string(o.Result)
		case OutcomeRetry, OutcomeFail:
			e, _ := json.Marshal(o.Err)
			a, b = string(e), strconv.FormatInt(o.Delay.Milliseconds(), 10)
		case OutcomeSkip:
			a = o.Reason
		}
		args = append(args, o.ID, o.Token, string(o.Kind), a, b, o.Span, o.Logs)
	}
	res, err := s.run(ctx, s.scripts.complete, args)
	if err != nil {
		return SyncResult{}, err
	}
	var out SyncResult
	n := len(req.Outcomes)
	if len(res) < n+1 {
		return out, fmt.Errorf("dag: short reply from complete: %d values", len(res))
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
func (s *Store) Heartbeat(ctx context.Context, now time.Time, worker string, lease time.Duration, info *RunnerInfo, held []Lease) (lost []string, at time.Time, err error) {
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
	// BLPOP takes fractional seconds since Redis 6; go-redis's BLPop rounds up to 1s.
	args = append(args, strconv.FormatFloat(timeout.Seconds(), 'f', 3, 64))
	err := s.rdb.Do(ctx, args...).Err()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// Cancel cancels one unfinished job; its descendants follow their
// policies, and if it expanded, the unfinished nodes of its sub-graph are
// cancelled too. It returns how many nodes it ended (the job included); a
// finished job is a StateError.
func (s *Store) Cancel(ctx context.Context, now time.Time, id, reason string) (int, error) {
	return s.cancel(ctx, now, "node", id, reason)
}

// CancelFlow cancels every unfinished node of a flow and returns how many
// nodes it ended: the flow's unfinished ones, and the dependents in other
// flows that their policies ended.
func (s *Store) CancelFlow(ctx context.Context, now time.Time, flowID, reason string) (int, error) {
	return s.cancel(ctx, now, "flow", flowID, reason)
}

func (s *Store) cancel(ctx context.Context, now time.Time, mode, id, reason string) (int, error) {
	res, err := s.run(ctx, s.scripts.cancel, append(callArgs(4), ms(now), reason, mode, id))
	if err != nil {
		return 0, err
	}
	switch str(res[0]) {
	case "notfound":
		what := "job"
		if mode == "flow" {
			what = "flow"
		}
		return 0, &NotFoundError{What: what, ID: id}
	case "state":
		return 0, &StateError{ID: id, State: State(str(res[1])), Op: "cancel"}
	}
	n, _ := strconv.Atoi(str(res[1]))
	return n, nil
}

// Retry runs a failed or cancelled job again, together with the descendants
// that were cancelled or skipped because of it. Children its end released
// that have not started (an ignore child of a failed job) wait for it
// again; ones already running are left to finish, retries included. It
// returns how many nodes were reopened.
func (s *Store) Retry(ctx context.Context, now time.Time, id string) (int, error) {
	res, err := s.run(ctx, s.scripts.retry, append(callArgs(2), ms(now), id))
	if err != nil {
		return 0, err
	}
	switch str(res[0]) {
	case "notfound":
		return 0, &NotFoundError{What: "job", ID: id}
	case "state":
		return 0, &StateError{ID: id, State: State(str(res[1])), Op: "retry"}
	}
	n, _ := strconv.Atoi(str(res[1]))
	return n, nil
}

// Remove deletes a finished flow (every node terminal) with its nodes now,
// instead of waiting for retention. An unfinished flow is a StateError.
// A flow of more than 10,000 nodes is deleted over several calls (Redis
// runs each alone); between them it is partly there.
func (s *Store) Remove(ctx context.Context, now time.Time, flowID string) error {
	for call := 0; ; call++ {
		res, err := s.run(ctx, s.scripts.remove, append(callArgs(3), ms(now), "flow", flowID))
		if err != nil {
			return err
		}
		switch str(res[0]) {
		case "notfound":
			if call > 0 { // a trim deleted the rest meanwhile
				return nil
			}
			return &NotFoundError{What: "flow", ID: flowID}
		case "state":
			return fmt.Errorf("%w: flow %q has %s unfinished nodes; cancel it before removing it", ErrState, flowID, str(res[1]))
		}
		if str(res[2]) != "1" {
			return nil
		}
	}
}

// Trim deletes flows that finished more than olderThan ago, up to limit
// per call (0: 500); it returns how many it deleted, and whether to call
// again because more are due. One call deletes at most 10,000 nodes (Redis
// runs it alone), so a larger flow takes several calls, and counts as
// deleted in the last.
func (s *Store) Trim(ctx context.Context, now time.Time, olderThan time.Duration, limit int) (deleted int, more bool, err error) {
	if limit <= 0 {
		limit = 500
	}
	if olderThan < time.Millisecond {
		olderThan = time.Millisecond
	}
	res, err := s.run(ctx, s.scripts.remove, append(callArgs(5), ms(now), "trim", olderThan.Milliseconds(), -1, limit))
	if err != nil {
		return 0, false, err
	}
	deleted, _ = strconv.Atoi(str(res[1]))
	return deleted, deleted == limit || str(res[2]) == "1", nil
}

// Node reads one node.
func (s *Store) Node(ctx context.Context, id string) (*Node, error) {
	nodes, err := s.Nodes(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	if nodes[0] == nil {
		return nil, &NotFoundError{What: "job", ID: id}
	}
	return nodes[0], nil
}

// Nodes reads many nodes in one round trip; missing ones are nil.
func (s *Store) Nodes(ctx context.Context, ids []string) ([]*Node, error) {
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, s.k.node(id))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	out := make([]*Node, len(ids))
	for i, c := range cmds {
		h := c.Val()
		if len(h) == 0 || h["st"] == "" {
			continue
		}
		n, err := decodeNode(ids[i], h)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

func decodeNode(id string, h map[string]string) (*Node, error) {
	n := &Node{State: State(h["st"])}
	if err := decodeData([]byte(h["d"]), &n.Spec); err != nil {
		return nil, fmt.Errorf("dag: node %q: corrupt data: %w", id, err)
	}
	n.ID = id
	n.FlowID = decodeMeta(&n.Spec, h["m"])
	n.Attempt, _ = strconv.Atoi(h["at"])
	n.Stalls, _ = strconv.Atoi(h["sl"])
	if n.State == Blocked {
		n.Pending, _ = strconv.Atoi(h["pe"])
	}
	if c := h["c"]; c != "" {
		n.Children = strings.Split(c, sep)
		for i, id := range n.Children {
			n.Children[i] = strings.TrimPrefix(id, fanIn)
		}
	}
	if r := h["r"]; r != "" {
		n.Result = json.RawMessage(r)
	}
	if e := h["er"]; e != "" {
		var ei ErrorInfo
		if json.Unmarshal([]byte(e), &ei) == nil {
			n.Error = &ei
		}
	}
	n.Reason, n.Cause, n.Expanded, n.Logs = h["why"], h["cz"], h["ex"] == "1", h["lg"]
	if tk := h["tk"]; tk != "" {
		if i := strings.LastIndex(tk, ":"); i > 0 {
			if j := strings.LastIndex(tk[:i], ":"); j > 0 {
				n.Worker = tk[:j]
			}
		}
	}
	n.Timeline = parseTimeline(h["tl"])
	return n, nil
}

// decodeMeta fills the fields packed in a node's meta (see meta) and
// returns its flow ID.
func decodeMeta(sp *Spec, packed string) string {
	m := strings.Split(packed, sep)
	if len(m) < 7 {
		return ""
	}
	sp.Queue, sp.Type, sp.Policy = m[1], m[2], Policy(m[3])
	sp.Priority, _ = strconv.Atoi(m[4])
	d, _ := strconv.ParseInt(m[5], 10, 64)
	sp.Delay = time.Duration(d) * time.Millisecond
	sp.Attempts, _ = strconv.Atoi(m[6])
	if m[0] == "-" {
		return sp.ID
	}
	return m[0]
}

func parseTimeline(tl string) []Transition {
	var out []Transition
	for _, e := range strings.Split(tl, "|") {
		if e == "" {
			continue
		}
		f := strings.SplitN(e, ",", 4)
		if len(f) < 3 {
			continue
		}
		t := Transition{To: State(f[0]), At: fromMS(f[1])}
		t.Attempt, _ = strconv.Atoi(f[2])
		if len(f) == 4 {
			t.Worker = f[3]
		}
		out = append(out, t)
	}
	return out
}

// Peek is a parent's state and result, as a step or a condition sees it.
type Peek struct {
	ID     string
	State  State
	Result json.RawMessage
	Error  *ErrorInfo
	Span   string // traceparent of its last run, when tracing was on
}

// Peek reads the state and result of several nodes in one round trip.
// A node removed by retention reads as succeeded with no result.
func (s *Store) Peek(ctx context.Context, ids []string) ([]Peek, error) {
	cmds := make([]*redis.SliceCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, s.k.node(id), "st", "r", "er", "sp")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	out := make([]Peek, len(ids))
	for i, c := range cmds {
		v := c.Val()
		out[i] = Peek{ID: ids[i], State: Succeeded}
		if st := str(v[0]); st != "" {
			out[i].State = State(st)
		}
		if r := str(v[1]); r != "" {
			out[i].Result = json.RawMessage(r)
		}
		if e := str(v[2]); e != "" {
			var ei ErrorInfo
			if json.Unmarshal([]byte(e), &ei) == nil {
				out[i].Error = &ei
			}
		}
		out[i].Span = str(v[3])
	}
	return out, nil
}

// FlowIDs lists the node IDs of a flow.
func (s *Store) FlowIDs(ctx context.Context, flowID string) ([]string, error) {
	ids, err := s.rdb.SMembers(ctx, s.k.flow(flowID)).Result()
	if err != nil {
		return nil, fmt.Errorf("dag: redis: %w", err)
	}
	if len(ids) == 0 {
		// a one-node flow is keyed by its node
		if n, err := s.rdb.Exists(ctx, s.k.node(flowID)).Result(); err == nil && n == 1 {
			return []string{flowID}, nil
		}
		return nil, &NotFoundError{What: "flow", ID: flowID}
	}
	sort.Strings(ids)
	return ids, nil
}

// Flow reads a whole flow, its nodes in topological order (ties by ID).
func (s *Store) Flow(ctx context.Context, flowID string) (*Flow, error) {
	ids, err := s.FlowIDs(ctx, flowID)
	if err != nil {
		return nil, err
	}
	nodes, err := s.Nodes(ctx, ids)
	if err != nil {
		return nil, err
	}
	f := &Flow{ID: flowID}
	for _, n := range nodes {
		if n != nil {
			f.Nodes = append(f.Nodes, n)
		}
	}
	f.Nodes = topoNodes(f.Nodes)
	return f, nil
}

func topoNodes(nodes []*Node) []*Node {
	specs := make([]Spec, len(nodes))
	for i, n := range nodes {
		specs[i] = Spec{ID: n.ID, Parents: n.Parents}
	}
	index := make(map[string]int, len(nodes))
	for i, n := range nodes {
		index[n.ID] = i
	}
	indegree := make([]int, len(nodes))
	for i, n := range nodes {
		for _, p := range n.Parents {
			if _, ok := index[p]; ok {
				indegree[i]++
			}
		}
	}
	var order []int
	for i := range nodes {
		if indegree[i] == 0 {
			order = append(order, i)
		}
	}
	for k := 0; k < len(order); k++ {
		for _, c := range nodes[order[k]].Children {
			if j, ok := index[c]; ok {
				if indegree[j]--; indegree[j] == 0 {
					order = append(order, j)
				}
			}
		}
	}
	out := make([]*Node, 0, len(nodes))
	seen := make([]bool, len(nodes))
	for _, i := range order {
		if !seen[i] {
			seen[i] = true
			out = append(out, nodes[i])
		}
	}
	for i, n := range nodes { // expansion joins are not in Parents; keep the rest stable
		if !seen[i] {
			out = append(out, n)
		}
	}
	return out
}

// FlowStatus is a cheap summary of a flow's progress.
type FlowStatus struct {
	Nodes, Unfinished int
	Done              bool
}

// FlowStatus reads a flow's progress without reading its nodes.
func (s *Store) FlowStatus(ctx context.Context, flowID string) (FlowStatus, error) {
	h, err := s.rdb.HGetAll(ctx, s.k.flowMeta(flowID)).Result()
	if err != nil {
		return FlowStatus{}, fmt.Errorf("dag: redis: %w", err)
	}
	if len(h) == 0 {
		st, err := s.rdb.HGet(ctx, s.k.node(flowID), "st").Result()
		if errors.Is(err, redis.Nil) {
			return FlowStatus{}, &NotFoundError{What: "flow", ID: flowID}
		}
		if err != nil {
			return FlowStatus{}, fmt.Errorf("dag: redis: %w", err)
		}
		done := State(st).Terminal()
		left := 1
		if done {
			left = 0
		}
		return FlowStatus{Nodes: 1, Unfinished: left, Done: done}, nil
	}
	n, _ := strconv.Atoi(h["n"])
	left, _ := strconv.Atoi(h["left"])
	return FlowStatus{Nodes: n, Unfinished: left, Done: left == 0}, nil
}
