package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trellisflow/trellis/dag"
)

// Enqueued is one node as enqueue left it.
type Enqueued struct {
	ID      string
	State   dag.State
	Existed bool // the same job was enqueued before; nothing was written
}

// Enqueue writes a graph that Validate accepted, all or nothing.
func (s *Store) Enqueue(ctx context.Context, now time.Time, f FlowWrite) ([]Enqueued, error) {
	res, err := s.EnqueueBatch(ctx, now, []FlowWrite{f})
	if err != nil {
		return nil, err
	}
	return res[0].Nodes, res[0].Err
}

// FlowWrite is one graph to enqueue (see Enqueue).
type FlowWrite struct {
	FlowID string
	// Single makes a one-node flow, keyed by its node's own ID.
	Single bool
	// Fresh says FlowID was just generated, so no flow of that ID exists:
	// the write skips reading the flow's node count.
	Fresh bool
	// Specs are the nodes in topological order: a parent before its children.
	Specs []dag.Spec
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
				return nil, &dag.InvalidNodeError{ID: sp.ID, Field: "id", Reason: "appears in two of the flows written together"}
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
			specs := make([]dag.Spec, 0, u.to-u.from)
			for i := u.from; i < u.to; i++ {
				specs = append(specs, flows[i].Specs[0])
			}
			args = append(args, "", "1", len(specs))
			args = appendNodes(args, specs, nil)
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
		args = appendNodes(args, f.Specs, nil)
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
			out[u.from].Nodes, out[u.from].Err = parseInsert(reply, idsOf(flows[u.from].Specs))
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
	var ce *dag.ConflictError
	var ue *dag.UnknownDependencyError
	switch {
	case errors.As(err, &ce):
		return ce.ID == id
	case errors.As(err, &ue):
		return ue.Node == id
	}
	return false
}

// Expansion is a sub-graph an active node's step added (see Expand).
type Expansion struct {
	ID, Token string // the node, and the lease it is held under
	Result    []byte // its step's result
	// Specs are the sub-graph's nodes in topological order.
	Specs []dag.Spec
}

// Expand completes the active node x.ID by adding a sub-graph to its flow;
// the node finishes when the sub-graph's sinks do.
func (s *Store) Expand(ctx context.Context, now time.Time, x Expansion) ([]Enqueued, error) {
	id, specs := x.ID, x.Specs
	n := 5
	for i := range specs {
		n += 8 + 2*len(specs[i].Parents)
	}
	args := append(callArgs(n), ms(now), id, x.Token, string(x.Result), len(specs))
	args = appendNodes(args, specs, &id)
	res, err := s.run(ctx, s.scripts.expand, args)
	if err != nil {
		return nil, err
	}
	if len(res) == 1 && res[0] == "lost" {
		return nil, fmt.Errorf("dag: expand %q: %w", id, dag.ErrLeaseLost)
	}
	return parseInsert(res, idsOf(specs))
}

// appendNodes encodes specs in topological order for insert() in scripts/lib/7-insert.lua.
// joiner, when set, is added as a child of every sink (expansion).
func appendNodes(args []any, specs []dag.Spec, joiner *string) []any {
	children := make(map[string][]string, len(specs))
	inBatch := make(map[string]bool, len(specs))
	for i := range specs {
		inBatch[specs[i].ID] = true
	}
	for i := range specs {
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
	for i := range specs {
		sp := &specs[i]
		data := encodeData(sp)
		ch := children[sp.ID]
		if joiner != nil && len(ch) == 0 {
			ch = []string{*joiner}
		}
		mk := metaKey{sp.Queue, sp.Type, sp.Policy, sp.Priority, sp.Delay, sp.MaxAttempts}
		m, ok := metas[mk]
		if !ok {
			m = meta(sp)
			metas[mk] = m
		}
		var h string
		h, buf = identityHash(buf, m, sp, data)
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

// meta packs what Lua needs: queue, type, policy, priority, delay ms, attempts.
func meta(sp *dag.Spec) string {
	return strings.Join([]string{
		sp.Queue, sp.Type, string(sp.Policy), strconv.Itoa(sp.Priority),
		strconv.FormatInt(sp.Delay.Milliseconds(), 10), strconv.Itoa(sp.MaxAttempts),
	}, sep)
}

type metaKey struct {
	queue, typ string
	policy     dag.Policy
	priority   int
	delay      time.Duration
	attempts   int
}

// identityHash is the hash a re-enqueue of the same ID is compared by: the
// node's meta and its Identity, or its data (less its label) when Identity is empty. buf is
// reused across calls.
func identityHash(buf []byte, meta string, sp *dag.Spec, data []byte) (string, []byte) {
	buf = append(append(buf[:0], meta...), 0)
	switch {
	case sp.Identity != "":
		buf = append(buf, sp.Identity...)
	case sp.Label != "":
		// a label is for people: the same job with another label (or an
		// older Trellis's, which wrote none) is still the same job.
		// encodeData writes it last: the data without it is the data up
		// to it, closed.
		tail := appendJSONString([]byte(`,"lb":`), sp.Label)
		n := len(data) - len(tail) - 1
		buf = append(append(buf, data[:n]...), '}')
	default:
		buf = append(buf, data...)
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:12]), buf
}

func idsOf(specs []dag.Spec) []string {
	ids := make([]string, len(specs))
	for i := range specs {
		ids[i] = specs[i].ID
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
		return nil, &dag.ConflictError{ID: str(res[1])}
	case "unknown":
		return nil, &dag.UnknownDependencyError{Node: str(res[1]), Dependency: str(res[2])}
	case "flowid":
		return nil, &dag.FlowIDError{ID: str(res[1])}
	case "cycle":
		path := make([]string, 0, len(res))
		for _, v := range res[1:] {
			path = append(path, str(v))
		}
		return nil, &dag.CycleError{Path: append(path, path[0])}
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
		out[i] = Enqueued{ID: id, State: dag.State(strings.TrimPrefix(st, "=")), Existed: existed}
	}
	return out, nil
}
