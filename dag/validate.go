package dag

import (
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dominikbraun/graph"
)

// Bounds bound what one enqueue may hold (a type's run-time limits are
// Limit).
type Bounds struct {
	// MaxPayload is the largest payload in bytes. Default 1 MiB.
	MaxPayload int
	// MaxNodes is the largest graph. Default 1,000,000.
	MaxNodes int
}

// WithDefaults fills zero fields with their defaults.
func (l Bounds) WithDefaults() Bounds {
	if l.MaxPayload == 0 {
		l.MaxPayload = 1 << 20
	}
	if l.MaxNodes == 0 {
		l.MaxNodes = 1_000_000
	}
	return l
}

const (
	maxIDLen    = 256
	maxNameLen  = 128
	maxPriority = 1000
	maxAttempts = 1000
)

// CheckID reports whether id can name a node: 1–256 bytes of UTF-8 without
// control characters (quotes, HTML and spaces are fine).
func CheckID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("is empty")
	case len(id) > maxIDLen:
		return fmt.Errorf("is %d bytes, over the limit of %d", len(id), maxIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("is not valid UTF-8")
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("holds the control character %U", r)
		}
	}
	return nil
}

// CheckName reports whether s can name a queue or message type: 1–128 of
// letters, digits, '_', '-', '.', ':'.
func CheckName(s string) error {
	if s == "" {
		return fmt.Errorf("is empty")
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("is %d bytes, over the limit of %d", len(s), maxNameLen)
	}
	for _, r := range s {
		if r >= utf8.RuneSelf || !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' && r != '-' && r != '.' && r != ':' {
			return fmt.Errorf("holds %q; use letters, digits, '_', '-', '.' or ':'", r)
		}
	}
	return nil
}

// Validate checks a graph before anything is written: every node's fields,
// duplicate IDs, dependencies on themselves, and cycles. Parents that are not
// in the graph are returned as external: they must already exist in Redis.
// order is a topological order of specs (indexes), parents first.
func Validate(specs []Spec, limits Bounds) (order []int, external []string, err error) {
	limits = limits.WithDefaults()
	if len(specs) == 0 {
		return nil, nil, ErrEmptyGraph
	}
	if len(specs) > limits.MaxNodes {
		return nil, nil, &InvalidNodeError{Field: "graph", Reason: fmt.Sprintf("%d nodes, over the limit of %d (MaxNodes)", len(specs), limits.MaxNodes)}
	}
	index := make(map[string]int, len(specs))
	for i := range specs {
		s := &specs[i]
		if err := checkSpec(s, limits); err != nil {
			return nil, nil, err
		}
		if _, dup := index[s.ID]; dup {
			return nil, nil, &DuplicateError{ID: s.ID}
		}
		index[s.ID] = i
	}
	indegree := make([]int, len(specs))
	children := make([][]int, len(specs))
	seenExternal := map[string]bool{}
	for i := range specs {
		seen := make(map[string]bool, len(specs[i].Parents))
		for _, p := range specs[i].Parents {
			if err := CheckID(p); err != nil {
				return nil, nil, &InvalidNodeError{ID: specs[i].ID, Field: "dependency", Reason: "ID " + err.Error()}
			}
			if seen[p] {
				return nil, nil, &InvalidNodeError{ID: specs[i].ID, Field: "dependency", Reason: fmt.Sprintf("%q listed twice", p)}
			}
			seen[p] = true
			if p == specs[i].ID {
				return nil, nil, &CycleError{Path: []string{p, p}}
			}
			j, ok := index[p]
			if !ok {
				if !seenExternal[p] {
					seenExternal[p] = true
					external = append(external, p)
				}
				continue
			}
			indegree[i]++
			children[j] = append(children[j], i)
		}
	}
	// Kahn's algorithm, stable in the caller's order.
	order = make([]int, 0, len(specs))
	for i := range specs {
		if indegree[i] == 0 {
			order = append(order, i)
		}
	}
	for k := 0; k < len(order); k++ {
		for _, c := range children[order[k]] {
			if indegree[c]--; indegree[c] == 0 {
				order = append(order, c)
			}
		}
	}
	if len(order) < len(specs) {
		return nil, nil, findCycle(specs, index, indegree)
	}
	return order, external, nil
}

func checkSpec(s *Spec, limits Bounds) error {
	if err := CheckID(s.ID); err != nil {
		return &InvalidNodeError{ID: s.ID, Field: "ID", Reason: err.Error()}
	}
	if err := CheckName(s.Type); err != nil {
		return &InvalidNodeError{ID: s.ID, Field: "message type", Reason: err.Error()}
	}
	if err := CheckName(s.Queue); err != nil {
		return &InvalidNodeError{ID: s.ID, Field: "queue", Reason: err.Error()}
	}
	if len(s.Payload) > limits.MaxPayload {
		return &PayloadTooLargeError{ID: s.ID, Size: len(s.Payload), Limit: limits.MaxPayload}
	}
	if !s.Policy.Valid() {
		return &InvalidNodeError{ID: s.ID, Field: "policy", Reason: fmt.Sprintf("%q is not require, ignore or skip", s.Policy)}
	}
	if s.MaxAttempts < 1 || s.MaxAttempts > maxAttempts {
		return &InvalidNodeError{ID: s.ID, Field: "attempts", Reason: fmt.Sprintf("%d is outside 1..%d", s.MaxAttempts, maxAttempts)}
	}
	if s.Priority < -maxPriority || s.Priority > maxPriority {
		return &InvalidNodeError{ID: s.ID, Field: "priority", Reason: fmt.Sprintf("%d is outside -%d..%d", s.Priority, maxPriority, maxPriority)}
	}
	if s.Delay < 0 || s.Delay > 365*24*time.Hour {
		return &InvalidNodeError{ID: s.ID, Field: "delay", Reason: fmt.Sprintf("%s is outside 0..1 year", s.Delay)}
	}
	if s.Timeout < 0 {
		return &InvalidNodeError{ID: s.ID, Field: "timeout", Reason: "is negative"}
	}
	b := s.Backoff
	switch b.Kind {
	case Exponential, Fixed:
		if b.Base <= 0 {
			return &InvalidNodeError{ID: s.ID, Field: "backoff", Reason: "base must be positive"}
		}
	case Custom:
		if b.Name == "" {
			return &InvalidNodeError{ID: s.ID, Field: "backoff", Reason: "custom backoff needs a name"}
		}
	default:
		return &InvalidNodeError{ID: s.ID, Field: "backoff", Reason: fmt.Sprintf("unknown kind %q", b.Kind)}
	}
	if b.Max < 0 {
		return &InvalidNodeError{ID: s.ID, Field: "backoff", Reason: "cap is negative"}
	}
	return nil
}

// findCycle names one cycle among the nodes Kahn's algorithm could not order.
func findCycle(specs []Spec, index map[string]int, indegree []int) error {
	g := graph.New(graph.StringHash, graph.Directed())
	for i := range specs {
		if indegree[i] > 0 {
			_ = g.AddVertex(specs[i].ID)
		}
	}
	for i := range specs {
		if indegree[i] == 0 {
			continue
		}
		for _, p := range specs[i].Parents {
			if j, ok := index[p]; ok && indegree[j] > 0 {
				_ = g.AddEdge(p, specs[i].ID)
			}
		}
	}
	sccs, err := graph.StronglyConnectedComponents(g)
	if err == nil {
		for _, scc := range sccs {
			if len(scc) < 2 {
				continue
			}
			in := map[string]bool{}
			for _, v := range scc {
				in[v] = true
			}
			start := scc[0]
			adj, _ := g.AdjacencyMap()
			for next := range adj[start] {
				if !in[next] {
					continue
				}
				path, err := graph.ShortestPath(g, next, start)
				if err == nil {
					return &CycleError{Path: rotate(append([]string{start}, path...), index)}
				}
			}
		}
	}
	return &CycleError{}
}

// rotate starts a cycle (first node repeated last) at the node added first,
// so the same graph always names its cycle the same way.
func rotate(cycle []string, index map[string]int) []string {
	ring := cycle[:len(cycle)-1]
	first := 0
	for i, id := range ring {
		if index[id] < index[ring[first]] {
			first = i
		}
	}
	out := append(append([]string{}, ring[first:]...), ring[:first]...)
	return append(out, out[0])
}
