package flow

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/compiler"
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
//
// Every sub-expression that reads no data (no parent, message or loop
// element, only literals and lets of such) is evaluated once here, and one
// that fails is an error: it would fail on every run, even where a branch or
// a short circuit hides it from some runs (`int("abc") > 0`, `[1][3] == 1`,
// `1 % x == 0` after `let x = 0;`, `1 / 0 > 0`); so is a name that is
// neither data nor a let in scope, which expr's checker lets through in
// places (`len == nil`). A condition that is constant as a whole must be a
// bool, and is accepted (`true`, `1 > 2`): it is legal, and a generated graph
// may switch a node on or off that way (false skips it on every run).
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
	// after the shape rules, so that each evaluation is linear
	if err := constantFailure(src, parsed.Node); err != nil {
		return nil, err
	}
	return &Condition{src: src, program: tree}, nil
}

// conditionVars are the names a condition reads data by.
var conditionVars = func() map[string]bool {
	names := map[string]bool{"$env": true}
	t := reflect.TypeFor[ConditionEnv]()
	for i := range t.NumField() {
		names[t.Field(i).Tag.Get("expr")] = true
	}
	return names
}()

// constantFailure evaluates each constant sub-expression of src (one that
// reads no data), innermost first, and returns the first failure; a
// constant condition must also be a bool (`true ? 1 : "a"` type-checks as
// any). parsed is src's parse tree: only when it has a constant
// sub-expression worth evaluating (the usual condition has none) is src
// compiled again, type-checked and unoptimised, since the optimiser folds
// away what a short circuit never reaches.
func constantFailure(src string, parsed ast.Node) error {
	return foldConstants(src, parsed).err
}

// foldConstants is constantFailure's walk, returned whole so that a test
// can see how much it ran.
func foldConstants(src string, parsed ast.Node) *constFolder {
	find := &constFolder{root: &parsed}
	find.visit(&parsed)
	if !find.found {
		return find
	}
	checked, err := expr.Compile(src, append(conditionOptions(), expr.Optimize(false))...)
	if err != nil {
		return &constFolder{err: err}
	}
	root := checked.Node()
	fold := &constFolder{fold: true, source: file.NewSource(src), root: &root}
	fold.visit(&root)
	return fold
}

// constFolder walks a condition's tree keeping the lets in scope, innermost
// last. It finds the constant sub-expressions, or with fold evaluates each
// and puts its value in its place, so that evaluating its parent is one
// step on values, not the whole subtree again.
type constFolder struct {
	fold   bool
	source file.Source
	root   *ast.Node

	scope []binding
	found bool
	err   error
	undo  []folded // in order of folding
	ran   int      // instructions compiled for the evaluations
}

type binding struct {
	let      *ast.VariableDeclaratorNode
	constant bool // its value reads no data
}

type folded struct {
	slot *ast.Node
	was  ast.Node
}

// visit finds (and folds) the constant sub-expressions of *slot and
// reports whether it reads data (a parent, the message, a let bound to
// data) or a loop element (#) from outside it.
func (f *constFolder) visit(slot *ast.Node) (data, element bool) {
	if f.err != nil {
		return true, false
	}
	switch x := (*slot).(type) {
	case nil, *ast.NilNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.StringNode,
		*ast.BytesNode, *ast.ConstantNode:
		if slot == f.root {
			f.found = true // a literal condition: still checked for a bool
			f.evaluate(slot)
		}
		return false, false // otherwise nothing to evaluate
	case *ast.IdentifierNode:
		for i := len(f.scope) - 1; i >= 0; i-- {
			if f.scope[i].let.Name == x.Value {
				return !f.scope[i].constant, false
			}
		}
		if conditionVars[x.Value] {
			return true, false
		}
		// a name expr's checker let through (a builtin's name without a
		// call, or any name in the bounds of a slice of an untyped value):
		// it fails wherever it runs
		f.found = true
		if f.fold && f.err == nil {
			msg := "unknown name " + x.Value
			if slices.Contains(SafeBuiltins, x.Value) {
				msg = fmt.Sprintf("%s is a function, not a value: call it, %s(…)", x.Value, x.Value)
			}
			f.err = errors.New(evalMessage((&file.Error{Location: x.Location(), Message: msg}).Bind(f.source)))
		}
		return true, false
	case *ast.PointerNode:
		return false, true
	case *ast.PredicateNode:
		data, _ = f.visit(&x.Node) // binds # for its body
		return data, false
	case *ast.VariableDeclaratorNode:
		dv, ev := f.visit(&x.Value)
		f.scope = append(f.scope, binding{let: x, constant: !dv && !ev})
		de, ee := f.visit(&x.Expr)
		f.scope = f.scope[:len(f.scope)-1]
		data, element = dv || de, ev || ee
	default:
		kids, known := children(*slot)
		if !known {
			return true, false // a node this code does not know: leave it be
		}
		for _, k := range kids {
			d, e := f.visit(k)
			data, element = data || d, element || e
		}
	}
	if _, pair := (*slot).(*ast.PairNode); data || element || pair || optionalLink(*slot) {
		// a pair or a link of an optional chain cannot run on its own
		return data, element
	}
	f.found = true
	f.evaluate(slot)
	return false, false
}

// evaluate runs the constant *slot on its own, inside the constant lets in
// scope, and with fold replaces it by its value.
func (f *constFolder) evaluate(slot *ast.Node) {
	if !f.fold || f.err != nil {
		return
	}
	n := *slot
	for i := len(f.scope) - 1; i >= 0; i-- {
		if b := f.scope[i]; b.constant {
			let := &ast.VariableDeclaratorNode{Name: b.let.Name, Value: b.let.Value, Expr: n}
			let.SetNature(*n.Nature())
			n = let
		}
	}
	program, err := compiler.Compile(&parser.Tree{Node: n, Source: f.source}, nil)
	if err != nil {
		// cut out of its context, which the whole condition compiled in:
		// not the condition's fault
		return
	}
	f.ran += len(program.Bytecode)
	out, err := vm.Run(program, nil)
	switch fl, isFloat := out.(float64); {
	case err != nil:
		f.fail(slot, ": %s; it reads no data, so it would fail on every run", evalMessage(err))
	case isFloat && (math.IsInf(fl, 0) || math.IsNaN(fl)):
		f.fail(slot, " is %v on every run: a division by zero or an overflow of constants", fl)
	case slot == f.root:
		if _, ok := out.(bool); !ok {
			f.err = fmt.Errorf("is %v (%T) on every run, not a bool", out, out)
		}
	default:
		c := &ast.ConstantNode{Value: out}
		c.SetNature(*(*slot).Nature())
		f.undo = append(f.undo, folded{slot: slot, was: *slot})
		ast.Patch(slot, c)
	}
}

// fail records the failure of *slot, naming it as written: the folded
// values go back first.
func (f *constFolder) fail(slot *ast.Node, format string, args ...any) {
	for i := len(f.undo) - 1; i >= 0; i-- {
		*f.undo[i].slot = f.undo[i].was
	}
	f.err = fmt.Errorf("%s"+format, append([]any{*slot}, args...)...)
}

// children are the sub-expressions of the nodes constFolder.visit does not
// handle itself, as ast.Walk visits them.
func children(n ast.Node) ([]*ast.Node, bool) {
	switch x := n.(type) {
	case *ast.UnaryNode:
		return []*ast.Node{&x.Node}, true
	case *ast.BinaryNode:
		return []*ast.Node{&x.Left, &x.Right}, true
	case *ast.ChainNode:
		return []*ast.Node{&x.Node}, true
	case *ast.MemberNode:
		return []*ast.Node{&x.Node, &x.Property}, true
	case *ast.SliceNode:
		return []*ast.Node{&x.Node, &x.From, &x.To}, true // From, To may be nil
	case *ast.CallNode:
		return append([]*ast.Node{&x.Callee}, slots(x.Arguments)...), true
	case *ast.BuiltinNode:
		return slots(x.Arguments), true
	case *ast.SequenceNode:
		return slots(x.Nodes), true
	case *ast.ConditionalNode:
		return []*ast.Node{&x.Cond, &x.Exp1, &x.Exp2}, true
	case *ast.ArrayNode:
		return slots(x.Nodes), true
	case *ast.MapNode:
		return slots(x.Pairs), true
	case *ast.PairNode:
		return []*ast.Node{&x.Key, &x.Value}, true
	}
	return nil, false
}

func slots(nodes []ast.Node) []*ast.Node {
	out := make([]*ast.Node, len(nodes))
	for i := range nodes {
		out[i] = &nodes[i]
	}
	return out
}

// optionalLink: n is a link of an optional chain (a?.b.c) below its
// ChainNode; on its own it would not stop at a nil.
func optionalLink(n ast.Node) bool {
	for {
		switch x := n.(type) {
		case *ast.MemberNode:
			if x.Optional {
				return true
			}
			n = x.Node
		case *ast.CallNode:
			n = x.Callee
		case *ast.SliceNode:
			n = x.Node
		default:
			return false
		}
	}
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

// conditionCacheSize bounds the compiled conditions a process keeps: one
// per distinct condition and parent list, and generated graphs may have any
// number of those.
const conditionCacheSize = 1024

var conditionCache = newConditionLRU(conditionCacheSize)

// cachedCondition compiles src once per process while it stays in use.
func cachedCondition(src string, parents []string) (*Condition, error) {
	return conditionCache.compile(src, parents)
}

// conditionLRU holds up to max compiled conditions, dropping the least
// recently used; safe for concurrent use.
type conditionLRU struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *conditionEntry, most recently used first
	byKey map[string]*list.Element
}

type conditionEntry struct {
	key  string
	cond *Condition
}

func newConditionLRU(max int) *conditionLRU {
	return &conditionLRU{max: max, order: list.New(), byKey: make(map[string]*list.Element, max)}
}

// compile returns src compiled for parents, from the cache when it is there.
func (l *conditionLRU) compile(src string, parents []string) (*Condition, error) {
	// src's length first, so that no src and parents run together into
	// another's key (parent IDs have no control characters)
	key := strconv.Itoa(len(src)) + ":" + src + "\x00" + strings.Join(parents, "\x00")
	if c := l.get(key); c != nil {
		return c, nil
	}
	c, err := CompileCondition(src, parents) // unlocked: it takes tens of µs
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.byKey[key]; ok { // compiled meanwhile by another goroutine
		l.order.MoveToFront(e)
		return e.Value.(*conditionEntry).cond, nil
	}
	l.byKey[key] = l.order.PushFront(&conditionEntry{key: key, cond: c})
	if l.order.Len() > l.max {
		last := l.order.Back()
		l.order.Remove(last)
		delete(l.byKey, last.Value.(*conditionEntry).key)
	}
	return c, nil
}

func (l *conditionLRU) get(key string) *Condition {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.byKey[key]
	if !ok {
		return nil
	}
	l.order.MoveToFront(e)
	return e.Value.(*conditionEntry).cond
}

func (l *conditionLRU) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.order.Len()
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
