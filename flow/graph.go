package flow

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/trellisflow/trellis/dag"
)

// NodeOpts are the per-node options. Every field is optional.
type NodeOpts struct {
	// ID is the job ID. Default: a new UUIDv7. Enqueueing an existing ID with
	// the same message and options returns the existing job; with different
	// ones it is an ErrConflict.
	ID string
	// Attempts is how many times the step may run. Default Config.DefaultAttempts (3).
	Attempts int
	// Backoff is the delay before each retry. Default Config.DefaultBackoff
	// (exponential from 2s: 2s, 4s, 8s…).
	Backoff *dag.Backoff
	// Timeout bounds one run of the step. Default runner.Config.DefaultTimeout.
	Timeout time.Duration
	// Priority orders ready nodes of a queue: higher first, from -1000 to 1000. Default 0.
	Priority int
	// Delay holds the node for this long after it becomes ready.
	Delay time.Duration
	// Queue is the queue whose runners take the node. Default Config.DefaultQueue ("default").
	Queue string
	// Policy is what the node does when a parent does not succeed. Default Require.
	Policy dag.Policy
	// When is an expr-lang condition over the parents' states and results
	// (see ConditionEnv); false skips the node. Checked at enqueue.
	When string
	// Label is a short name for people, shown in place of the ID in
	// pictures of the flow (at most MaxLabel characters; longer is cut).
	// Default: the message's Label(), if it has one (Labeler).
	Label string
	// UserID and Metadata go into the message envelope.
	UserID   string
	Metadata map[string]any
}

// Graph is a flow being composed: nodes and their dependencies. Build it with
// New and Add, then pass it to Client.Enqueue. A Graph is not safe for
// concurrent use.
type Graph struct {
	id    string
	nodes []*Node
	byID  map[string]*Node
	err   error
}

// New returns an empty graph. Its flow ID is generated unless set with WithID.
func New() *Graph { return &Graph{byID: map[string]*Node{}} }

// WithID sets the flow ID.
func (g *Graph) WithID(id string) *Graph { g.id = id; return g }

// ID is the flow ID set with WithID, or "" until enqueued.
func (g *Graph) ID() string { return g.id }

// Len is the number of nodes.
func (g *Graph) Len() int { return len(g.nodes) }

// Nodes lists the nodes in the order they were added.
func (g *Graph) Nodes() []*Node { return g.nodes }

// Node is one node of a Graph.
type Node struct {
	g       *Graph
	id      string
	msg     Message
	opts    NodeOpts
	parents []string
	fresh   bool // the ID was generated here
}

// Add adds a node carrying msg. opts may be nil. Mistakes (a nil message, a
// duplicate ID) are reported by Enqueue, so calls can be chained.
func (g *Graph) Add(msg Message, opts *NodeOpts) *Node {
	n := &Node{g: g, msg: msg}
	if opts != nil {
		n.opts = *opts
	}
	n.id = n.opts.ID
	if n.id == "" {
		n.id, n.fresh = newID(), true
	}
	if isNil(msg) && g.err == nil {
		g.err = fmt.Errorf("node %q (#%d): %w", n.id, len(g.nodes)+1, ErrNilMessage)
	}
	if _, dup := g.byID[n.id]; dup && g.err == nil {
		g.err = &dag.DuplicateError{ID: n.id}
	}
	g.byID[n.id] = n
	g.nodes = append(g.nodes, n)
	return n
}

func isNil(m Message) bool {
	if m == nil {
		return true
	}
	v := reflect.ValueOf(m)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// ID is the node's job ID.
func (n *Node) ID() string { return n.id }

// Message is the node's message.
func (n *Node) Message() Message { return n.msg }

// Parents lists the node's parent IDs.
func (n *Node) Parents() []string { return n.parents }

// After makes n wait for parents, which must belong to the same graph.
func (n *Node) After(parents ...*Node) *Node {
	for _, p := range parents {
		if p == nil || p.g != n.g {
			if n.g.err == nil {
				n.g.err = &dag.InvalidNodeError{ID: n.id, Field: "dependency", Reason: "After takes nodes of the same graph; use AfterJob for jobs enqueued earlier"}
			}
			continue
		}
		n.parents = append(n.parents, p.id)
	}
	return n
}

// AfterJob makes n wait for jobs enqueued earlier, by ID. A job that already
// succeeded satisfies the dependency at once; one that failed applies n's
// policy; an unknown ID makes Enqueue fail with ErrUnknownDependency.
func (n *Node) AfterJob(ids ...string) *Node {
	n.parents = append(n.parents, ids...)
	return n
}

// specs turns the graph into validated node specs in topological order.
func (c *Client) specs(g *Graph, now time.Time) ([]dag.Spec, error) {
	if g.err != nil {
		return nil, g.err
	}
	if len(g.nodes) == 0 {
		return nil, dag.ErrEmptyGraph
	}
	specs := make([]dag.Spec, len(g.nodes))
	for i, n := range g.nodes {
		sp, err := c.spec(n.id, n.msg, &n.opts, n.parents, now)
		if err != nil {
			return nil, err
		}
		sp.Fresh = n.fresh
		specs[i] = sp
	}
	order, _, err := dag.Validate(specs, dag.Bounds{MaxPayload: c.cfg.MaxPayload, MaxNodes: c.cfg.MaxNodes})
	if err != nil {
		return nil, err
	}
	sorted := make([]dag.Spec, len(order))
	for k, i := range order {
		sorted[k] = specs[i]
	}
	return sorted, nil
}

// spec builds one node: defaults, envelope, message validation, condition check.
func (c *Client) spec(id string, msg Message, o *NodeOpts, parents []string, now time.Time) (dag.Spec, error) {
	if isNil(msg) {
		return dag.Spec{}, fmt.Errorf("node %q: %w", id, ErrNilMessage)
	}
	if err := validate(msg); err != nil {
		return dag.Spec{}, fmt.Errorf("node %q: %w", id, err)
	}
	o = DefaultedOpts(msg, o) // what the message's type asks for, where o sets nothing
	payload, data, err := encode(msg, now, o.UserID, o.Metadata)
	if err != nil {
		return dag.Spec{}, fmt.Errorf("node %q: %w", id, err)
	}
	sp := dag.Spec{
		ID: id, Type: msg.MessageType(), Payload: payload, Parents: parents,
		MaxAttempts: o.Attempts, Timeout: o.Timeout, Priority: o.Priority, Delay: o.Delay,
		Queue: o.Queue, Policy: o.Policy, When: o.When, Label: labelOf(msg, o.Label),
	}
	if sp.MaxAttempts == 0 {
		sp.MaxAttempts = c.cfg.DefaultAttempts
	}
	if sp.Queue == "" {
		sp.Queue = c.cfg.DefaultQueue
	}
	if sp.Policy == "" {
		sp.Policy = dag.Require
	}
	sp.Backoff = c.cfg.DefaultBackoff
	if o.Backoff != nil {
		sp.Backoff = *o.Backoff
	}
	if sp.When != "" {
		if _, err := CompileCondition(sp.When, parents); err != nil {
			return dag.Spec{}, &ConditionError{Node: id, Expr: sp.When, Reason: err.Error()}
		}
	}
	// The identity leaves out the envelope's timestamp, so the same message
	// enqueued again later is recognised as the same job.
	sp.Identity = jobIdentity(data, o, parents, &sp)
	return sp, nil
}

// jobIdentity digests what makes two enqueues the same job: the message
// data, user, metadata, dependencies, condition and retry options.
func jobIdentity(data []byte, o *NodeOpts, parents []string, sp *dag.Spec) string {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field(data)
	field([]byte(o.UserID))
	if len(o.Metadata) > 0 {
		md, _ := json.Marshal(o.Metadata) // map keys are sorted: stable
		field(md)
	} else {
		field(nil)
	}
	field([]byte(strings.Join(parents, "\x00")))
	field([]byte(sp.When))
	b := sp.Backoff
	opts := append([]byte(b.Kind), '|')
	opts = strconv.AppendInt(opts, int64(b.Base), 10)
	opts = strconv.AppendInt(append(opts, '|'), int64(b.Max), 10)
	opts = strconv.AppendBool(append(opts, '|'), b.Jitter)
	opts = append(append(opts, '|'), b.Name...)
	opts = strconv.AppendInt(append(opts, '|'), int64(sp.Timeout), 10)
	field(opts)
	return string(h.Sum(nil))
}

// Enqueued is the result of an enqueue.
type Enqueued struct {
	FlowID string
	Jobs   []EnqueuedJob
}

// EnqueuedJob is one job as enqueue left it.
type EnqueuedJob struct {
	ID      string
	State   dag.State
	Existed bool // the same job existed already; nothing was written for it
}

// Job returns the enqueued job with the given ID.
func (e *Enqueued) Job(id string) (EnqueuedJob, bool) {
	for _, j := range e.Jobs {
		if j.ID == id {
			return j, true
		}
	}
	return EnqueuedJob{}, false
}
