package flow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// Limits on When conditions, so a condition cannot be abused to hang or
// exhaust a runner: a bounded size, no ranges (1..n) and no loop inside a
// loop (a predicate of all/any/filter/… inside another), so evaluation is
// linear in the parents' results; and a time limit on top.
const (
	MaxConditionLen   = 1000
	MaxConditionNodes = 200
	ConditionTimeout  = time.Second
)

// SafeBuiltins are the only functions a condition may call.
var SafeBuiltins = []string{
	"len", "all", "any", "none", "one", "filter", "map", "count", "sum",
	"abs", "ceil", "floor", "round", "max", "min", "int", "float", "string",
	"lower", "upper", "trim", "hasPrefix", "hasSuffix", "keys", "values", "first", "last",
}

// ConditionEnv is what a When expression sees:
//
//	parents["plan"].state == "succeeded" && parents["plan"].result.count > 0
//	message.sets >= 3
type ConditionEnv struct {
	Parents map[string]ConditionParent `expr:"parents"`
	Message map[string]any             `expr:"message"`
}

// ConditionParent is one parent as a condition sees it.
type ConditionParent struct {
	State  string `expr:"state"`
	Result any    `expr:"result"`
	Error  string `expr:"error"`
}

// Condition is a compiled When expression.
type Condition struct {
	src     string
	program *vm.Program
}

func conditionOptions() []expr.Option {
	opts := []expr.Option{expr.Env(ConditionEnv{}), expr.AsBool(), expr.MaxNodes(MaxConditionNodes), expr.DisableAllBuiltins()}
	for _, b := range SafeBuiltins {
		opts = append(opts, expr.EnableBuiltin(b))
	}
	return opts
}

// CompileCondition parses and type-checks src. parents are the node's
// parent IDs: parents["x"] with a constant x outside them is an error.
func CompileCondition(src string, parents []string) (*Condition, error) {
	if len(src) > MaxConditionLen {
		return nil, fmt.Errorf("is %d characters, over the limit of %d", len(src), MaxConditionLen)
	}
	tree, err := expr.Compile(src, conditionOptions()...)
	if err != nil {
		return nil, err
	}
	// check the source as written, before the optimiser folds it
	parsed, err := parser.Parse(src)
	if err != nil {
		return nil, err
	}
	shape := &loopShape{}
	ast.Walk(&parsed.Node, shape)
	if shape.err != nil {
		return nil, shape.err
	}
	known := make(map[string]bool, len(parents))
	for _, p := range parents {
		known[p] = true
	}
	v := &parentRefs{known: known}
	node := tree.Node()
	ast.Walk(&node, v)
	if v.unknown != "" {
		return nil, fmt.Errorf("refers to parents[%q], which is not a parent of this node", v.unknown)
	}
	return &Condition{src: src, program: tree}, nil
}

// loopShape refuses ranges and predicates nested in predicates.
type loopShape struct{ err error }

func (l *loopShape) Visit(n *ast.Node) {
	if l.err != nil {
		return
	}
	switch x := (*n).(type) {
	case *ast.BinaryNode:
		if x.Operator == ".." {
			l.err = errors.New("ranges (a..b) are not allowed in conditions")
		}
	case *ast.PredicateNode:
		inner := &innerPredicate{}
		ast.Walk(&x.Node, inner)
		if inner.found {
			l.err = errors.New("a loop inside a loop (a predicate within a predicate) is not allowed in conditions")
		}
	}
}

type innerPredicate struct{ found bool }

func (p *innerPredicate) Visit(n *ast.Node) {
	if _, ok := (*n).(*ast.PredicateNode); ok {
		p.found = true
	}
}

type parentRefs struct {
	known   map[string]bool
	unknown string
}

func (p *parentRefs) Visit(n *ast.Node) {
	m, ok := (*n).(*ast.MemberNode)
	if !ok {
		return
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	if !ok || id.Value != "parents" {
		return
	}
	if s, ok := m.Property.(*ast.StringNode); ok && !p.known[s.Value] && p.unknown == "" {
		p.unknown = s.Value
	}
}

// Eval runs the condition. An error is one line, for a node's last error:
// the runner prefixes it with the condition.
func (c *Condition) Eval(env ConditionEnv) (bool, error) {
	out, err := vm.Run(c.program, env)
	if err != nil {
		return false, errors.New(evalMessage(err))
	}
	b, _ := out.(bool)
	return b, nil
}

// evalMessage is an evaluation error on one line: expr's message and
// position, without the source snippet it appends on further lines.
func evalMessage(err error) string {
	var fe *file.Error
	if errors.As(err, &fe) {
		return fmt.Sprintf("%s (%d:%d)", fe.Message, fe.Line, fe.Column+1)
	}
	return err.Error()
}

// ErrConditionTimeout: a condition ran longer than ConditionTimeout.
var ErrConditionTimeout = errors.New("condition evaluation took too long")

// evalBounded runs the condition for at most ConditionTimeout. The shape
// rules keep evaluation linear, so an abandoned evaluation ends soon too.
func (c *Condition) evalBounded(ctx context.Context, env ConditionEnv) (bool, error) {
	type res struct {
		ok  bool
		err error
	}
	done := make(chan res, 1)
	go func() {
		ok, err := c.Eval(env)
		done <- res{ok, err}
	}()
	t := time.NewTimer(ConditionTimeout)
	defer t.Stop()
	select {
	case r := <-done:
		return r.ok, r.err
	case <-t.C:
		return false, fmt.Errorf("%w (over %s)", ErrConditionTimeout, ConditionTimeout)
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// String is the condition's source.
func (c *Condition) String() string { return c.src }

var conditionCache sync.Map // source + parents -> *Condition

// cachedCondition compiles src once per process.
func cachedCondition(src string, parents []string) (*Condition, error) {
	key := src
	for _, p := range parents {
		key += "\x00" + p
	}
	if c, ok := conditionCache.Load(key); ok {
		return c.(*Condition), nil
	}
	c, err := CompileCondition(src, parents)
	if err != nil {
		return nil, err
	}
	conditionCache.Store(key, c)
	return c, nil
}

func decodeAny(raw []byte) any {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	return v
}
