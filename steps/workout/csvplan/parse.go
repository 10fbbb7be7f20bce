package csvplan

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/trellisflow/trellis/steps/workout"
)

type col int

const (
	colPlanID col = iota
	colPlanName
	colClientID
	colTrainerID
	colPlanActive
	colPhaseID
	colPhaseOrder
	colPhaseName
	colPhaseActive
	colSessionID
	colSessionOrder
	colSessionName
	colExerciseID
	colExerciseOrder
	colExerciseName
	colSets
	colReps
	colWeight
	colRest
	colTempo
	colNotes
	numCols
)

// Columns lists the header names in the order Write uses; required ones
// must be in every file.
var columns = [numCols]struct {
	name     string
	required bool
}{
	{"plan_id", false}, {"plan_name", true}, {"client_id", false}, {"trainer_id", false}, {"plan_active", false},
	{"phase_id", false}, {"phase_order", true}, {"phase_name", true}, {"phase_active", false},
	{"session_id", false}, {"session_order", true}, {"session_name", true},
	{"exercise_id", false}, {"exercise_order", true}, {"exercise_name", true},
	{"sets", true}, {"reps", true}, {"weight", false}, {"rest", false}, {"tempo", false}, {"notes", false},
}

func (c col) String() string { return columns[c].name }

// Bounds on numbers, to catch typos ("100" sets) rather than to model
// training.
const (
	maxOrder  = 1_000_000
	maxSets   = 1_000
	maxReps   = 100_000
	maxWeight = 100_000
	maxRest   = 24 * 60 * 60
)

// namespace is the UUIDv5 namespace of derived IDs. Changing it changes
// every derived ID: never do.
var namespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/trellisflow/trellis/steps/workout/csvplan"))

// Parse reads a plan CSV (see the package documentation for the format)
// row by row and returns the full plan save it describes. If anything is
// wrong it returns nil and an *Error listing every problem with its line and
// column; read errors of r are returned as they are.
func Parse(r io.Reader, opts *Options) (*workout.PlanFullSave, error) {
	o := opts.WithDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	p := &parser{o: o, phases: map[int]*phase{}, ids: map[string]idUse{}}
	if err := p.read(r); err != nil {
		return nil, err
	}
	if len(p.err.Problems)+p.err.Omitted > 0 {
		return nil, &p.err
	}
	plan := p.assemble()
	if err := plan.Validate(); err != nil {
		// The checks above should make this unreachable; keep the promise
		// that a returned plan is valid.
		p.problem(0, "", "%v", err)
		return nil, &p.err
	}
	return plan, nil
}

type parser struct {
	o   Options
	err Error
	pos [numCols]int // index of each column in a record, or -1

	unnamed []int // fields whose header is empty

	rows   int
	plan   *planRow
	phases map[int]*phase
	// ids maps an explicit ID to its first use, per kind ("phase\x00id").
	ids map[string]idUse
}

type idUse struct {
	line int
	what string // "phase 2", "session 1 of phase 2", …
}

type planRow struct {
	line                      int
	id, name, client, trainer string
	active                    bool
}

type phase struct {
	line     int
	id, name string
	active   bool
	sessions map[int]*session
}

type session struct {
	line      int
	id, name  string
	exercises map[int]*exerciseRow
}

type exerciseRow struct {
	line int
	data workout.ExerciseData
}

func (p *parser) problem(line int, c string, format string, args ...any) {
	if len(p.err.Problems) >= p.o.MaxProblems {
		p.err.Omitted++
		return
	}
	p.err.Problems = append(p.err.Problems, Problem{Line: line, Column: c, Message: fmt.Sprintf(format, args...)})
}

// limit reports a broken limit; it is always listed, past MaxProblems too.
func (p *parser) limit(line int, format string, args ...any) {
	p.err.limit = true
	p.err.Problems = append(p.err.Problems, Problem{Line: line, Message: fmt.Sprintf(format, args...)})
}

var errTooBig = errors.New("input too large")

// limitReader fails once more than n bytes were read, unlike io.LimitReader
// which would end the file quietly and hide the limit.
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(b []byte) (int, error) {
	if l.n < 0 {
		return 0, errTooBig
	}
	if int64(len(b)) > l.n+1 {
		b = b[:l.n+1]
	}
	n, err := l.r.Read(b)
	l.n -= int64(n)
	if l.n < 0 {
		return n, errTooBig
	}
	return n, err
}

func (p *parser) read(r io.Reader) error {
	br := bufio.NewReader(&limitReader{r: r, n: p.o.MaxBytes})
	if bom, err := br.Peek(3); err == nil && string(bom) == "\uFEFF" {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.ReuseRecord = true

	header, err := cr.Read()
	switch {
	case errors.Is(err, io.EOF):
		p.problem(0, "", "the file is empty; its first line must be the header (%s, …)", strings.Join(requiredNames(), ", "))
		return nil
	case errors.Is(err, errTooBig):
		p.limit(1, "the header is longer than %d bytes (Options.MaxBytes)", p.o.MaxBytes)
		return nil
	case err != nil:
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			p.problem(pe.Line, "", "the header is not valid CSV: %v", pe.Err)
			return nil
		}
		return fmt.Errorf("csvplan: read: %w", err)
	}
	if !p.header(header) {
		return nil
	}

	lastBad := -1
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errTooBig) {
			line, _ := cr.FieldPos(0)
			p.limit(line, "the file is larger than %d bytes (Options.MaxBytes); reading stopped here", p.o.MaxBytes)
			return nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			if errors.Is(pe.Err, csv.ErrFieldCount) {
				if blank(rec) {
					continue
				}
				p.rows++
				if p.rows > p.o.MaxRows {
					p.limit(pe.StartLine, "the file has more than %d exercise rows (Options.MaxRows); reading stopped here", p.o.MaxRows)
					return nil
				}
				p.problem(pe.StartLine, "", "has %d fields; the header has %d", len(rec), len(header))
				continue
			}
			if pe.StartLine != pe.Line {
				// An unclosed quote runs on: name the line it opened on.
				p.problem(pe.StartLine, "", "is not valid CSV: %v (found at line %d, character %d)", pe.Err, pe.Line, pe.Column)
			} else {
				p.problem(pe.Line, "", "is not valid CSV: %v (character %d)", pe.Err, pe.Column)
			}
			if pe.Line == lastBad { // no progress: give up rather than loop
				return nil
			}
			lastBad = pe.Line
			continue
		}
		if err != nil {
			return fmt.Errorf("csvplan: read: %w", err)
		}
		if blank(rec) {
			continue
		}
		p.rows++
		line, _ := cr.FieldPos(0)
		if p.rows > p.o.MaxRows {
			p.limit(line, "the file has more than %d exercise rows (Options.MaxRows); reading stopped here", p.o.MaxRows)
			return nil
		}
		p.row(line, rec, cr)
	}
	if p.rows == 0 {
		p.problem(0, "", "the file has a header but no exercise rows")
	}
	return nil
}

func requiredNames() []string {
	var out []string
	for _, c := range columns {
		if c.required {
			out = append(out, c.name)
		}
	}
	return out
}

// normalize turns a header cell into a lookup key: "Plan Name", "planName"
// and "plan_name" all become "planname".
func normalize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// header maps the columns and reports unknown, duplicate and missing ones.
// It returns false if rows cannot be read.
func (p *parser) header(rec []string) bool {
	for i := range p.pos {
		p.pos[i] = -1
	}
	known := map[string]col{}
	for c := range numCols {
		known[normalize(columns[c].name)] = c
	}
	ok := true
	for i, h := range rec {
		name := strings.TrimSpace(h)
		c, found := known[normalize(name)]
		switch {
		case name == "":
			// Spreadsheets export trailing empty columns; a value under
			// one is reported row by row.
			p.unnamed = append(p.unnamed, i)
		case !found:
			p.problem(1, cutQ(name), "unknown column; the columns are %s", strings.Join(allNames(), ", "))
			ok = false
		case p.pos[c] >= 0:
			p.problem(1, c.String(), "appears twice (fields %d and %d)", p.pos[c]+1, i+1)
			ok = false
		default:
			p.pos[c] = i
		}
	}
	for c := range numCols {
		if columns[c].required && p.pos[c] < 0 {
			p.problem(1, c.String(), "required column is missing")
			ok = false
		}
	}
	if p.pos[colClientID] < 0 && p.o.ClientID == "" {
		p.problem(1, "client_id", "column is missing and Options.ClientID is empty")
		ok = false
	}
	if p.pos[colTrainerID] < 0 && p.o.TrainerID == "" {
		p.problem(1, "trainer_id", "column is missing and Options.TrainerID is empty")
		ok = false
	}
	return ok
}

func allNames() []string {
	out := make([]string, 0, numCols)
	for _, c := range columns {
		out = append(out, c.name)
	}
	return out
}

func blank(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

// rowReader reads the fields of one record and collects their problems.
type rowReader struct {
	p    *parser
	rec  []string
	cr   *csv.Reader
	line int
	// failed marks the fields that have one.
	failed [numCols]bool
}

func (r *rowReader) lineOf(c col) int {
	if i := r.p.pos[c]; i >= 0 {
		if l, _ := r.cr.FieldPos(i); l > 0 {
			return l
		}
	}
	return r.line
}

func (r *rowReader) anyFailed(cs ...col) bool {
	for _, c := range cs {
		if r.failed[c] {
			return true
		}
	}
	return false
}

func (r *rowReader) fail(c col, format string, args ...any) {
	r.failed[c] = true
	r.p.problem(r.lineOf(c), c.String(), format, args...)
}

// raw returns the trimmed field of c ("" if the column is absent) and
// whether it is usable: within MaxField and valid UTF-8.
func (r *rowReader) raw(c col) (string, bool) {
	i := r.p.pos[c]
	if i < 0 {
		return "", true
	}
	v := r.rec[i]
	if len(v) > r.p.o.MaxField {
		r.p.err.limit = true
		r.fail(c, "is %d bytes, over the limit of %d (Options.MaxField)", len(v), r.p.o.MaxField)
		return "", false
	}
	if !utf8.ValidString(v) {
		r.fail(c, "is not valid UTF-8")
		return "", false
	}
	return strings.TrimSpace(v), true
}

// text reads a one-line text field: a name (at most workout.MaxNameLen
// bytes) or a tempo (workout.MaxTempoLen).
func (r *rowReader) text(c col, required bool) string {
	v, ok := r.raw(c)
	if !ok {
		return ""
	}
	if v == "" {
		if required {
			r.fail(c, "is required")
		}
		return ""
	}
	limit := workout.MaxNameLen
	if c == colTempo {
		limit = workout.MaxTempoLen
	}
	if len(v) > limit {
		r.fail(c, "is %d bytes, over the limit of %d", len(v), limit)
		return ""
	}
	if i := strings.IndexFunc(v, unicode.IsControl); i >= 0 {
		r.fail(c, "holds the control character %U; use one line of text", []rune(v[i:])[0])
		return ""
	}
	return v
}

// notes reads free text: line breaks (made "\n") and tabs are fine, other
// control characters are not.
func (r *rowReader) notes(c col) string {
	v, ok := r.raw(c)
	if !ok {
		return ""
	}
	v = strings.ReplaceAll(strings.ReplaceAll(v, "\r\n", "\n"), "\r", "\n")
	if len(v) > workout.MaxNotesLen {
		r.fail(c, "is %d bytes, over the limit of %d", len(v), workout.MaxNotesLen)
		return ""
	}
	if i := strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' }); i >= 0 {
		r.fail(c, "holds the control character %U", []rune(v[i:])[0])
		return ""
	}
	return v
}

// id reads an optional ID: at most workout.MaxIDLen bytes, no spaces at the
// ends (already trimmed), no control characters.
func (r *rowReader) id(c col) string {
	v, ok := r.raw(c)
	if !ok || v == "" {
		return ""
	}
	if len(v) > workout.MaxIDLen {
		r.fail(c, "is %d bytes, over the limit of %d", len(v), workout.MaxIDLen)
		return ""
	}
	if i := strings.IndexFunc(v, unicode.IsControl); i >= 0 {
		r.fail(c, "holds the control character %U", []rune(v[i:])[0])
		return ""
	}
	return v
}

// integer reads a whole number in [0, max]; def is used when the field is
// empty and not required.
func (r *rowReader) integer(c col, required bool, max, def int) (int, bool) {
	v, ok := r.raw(c)
	if !ok {
		return 0, false
	}
	if v == "" {
		if required {
			r.fail(c, "is required")
			return 0, false
		}
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		if f, ferr := strconv.ParseFloat(v, 64); ferr == nil && !math.IsNaN(f) {
			r.fail(c, "%s is not a whole number", cutQ(v))
		} else {
			r.fail(c, "%s is not a number", cutQ(v))
		}
		return 0, false
	}
	if n < 0 {
		r.fail(c, "%d is negative", n)
		return 0, false
	}
	if n > max {
		r.fail(c, "%d is over the limit of %d", n, max)
		return 0, false
	}
	return n, true
}

func (r *rowReader) weight(c col) float64 {
	v, ok := r.raw(c)
	if !ok || v == "" {
		return 0
	}
	f, err := strconv.ParseFloat(v, 64)
	switch {
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
		r.fail(c, "%s is not a number", cutQ(v))
	case f < 0:
		r.fail(c, "%s is negative", v)
	case f > maxWeight:
		r.fail(c, "%s is over the limit of %d", v, maxWeight)
	default:
		return f
	}
	return 0
}

// rest reads seconds: a whole number ("90") or a duration ("90s", "1m30s").
func (r *rowReader) rest(c col) int {
	v, ok := r.raw(c)
	if !ok || v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 || n > maxRest {
			r.fail(c, "%d is outside 0…%d seconds", n, maxRest)
			return 0
		}
		return n
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		r.fail(c, "%s is neither seconds (90) nor a duration (1m30s)", cutQ(v))
	case d%time.Second != 0:
		r.fail(c, "%s is not a whole number of seconds", cutQ(v))
	case d < 0 || d > maxRest*time.Second:
		r.fail(c, "%s is outside 0s…24h", cutQ(v))
	default:
		return int(d / time.Second)
	}
	return 0
}

// boolean reads yes/no in its usual spellings; empty means true.
func (r *rowReader) boolean(c col) bool {
	v, ok := r.raw(c)
	if !ok {
		return true
	}
	switch strings.ToLower(v) {
	case "", "true", "yes", "y", "1":
		return true
	case "false", "no", "n", "0":
		return false
	}
	r.fail(c, "%s is not true or false (yes/no, 1/0 also work)", cutQ(v))
	return true
}

// cutQ quotes s for a message, shortened so that a huge field cannot make a
// huge error.
func cutQ(s string) string {
	const max = 40
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max-1]) + "…"
	}
	return strconv.Quote(s)
}

// row checks one exercise row and merges it into the plan.
func (p *parser) row(line int, rec []string, cr *csv.Reader) {
	r := &rowReader{p: p, rec: rec, cr: cr, line: line}
	for _, i := range p.unnamed {
		if strings.TrimSpace(rec[i]) != "" {
			l, _ := cr.FieldPos(i)
			p.problem(l, "", "field %d holds %s but its column has no name in the header", i+1, cutQ(rec[i]))
		}
	}

	pl := planRow{line: line}
	pl.id = r.id(colPlanID)
	pl.name = r.text(colPlanName, true)
	pl.client = r.id(colClientID)
	if pl.client == "" && p.pos[colClientID] >= 0 && p.o.ClientID == "" && !r.failed[colClientID] {
		r.fail(colClientID, "is required (or set Options.ClientID)")
	}
	pl.trainer = r.id(colTrainerID)
	if pl.trainer == "" && p.pos[colTrainerID] >= 0 && p.o.TrainerID == "" && !r.failed[colTrainerID] {
		r.fail(colTrainerID, "is required (or set Options.TrainerID)")
	}
	if pl.client == "" {
		pl.client = p.o.ClientID
	}
	if pl.trainer == "" {
		pl.trainer = p.o.TrainerID
	}
	pl.active = r.boolean(colPlanActive)

	phID := r.id(colPhaseID)
	phOrder, phOK := r.integer(colPhaseOrder, true, maxOrder, 0)
	phName := r.text(colPhaseName, true)
	phActive := r.boolean(colPhaseActive)

	seID := r.id(colSessionID)
	seOrder, seOK := r.integer(colSessionOrder, true, maxOrder, 0)
	seName := r.text(colSessionName, true)

	ex := workout.ExerciseData{ID: r.id(colExerciseID)}
	exOrder, exOK := r.integer(colExerciseOrder, true, maxOrder, 0)
	ex.OrderNumber = exOrder
	ex.Name = r.text(colExerciseName, true)
	ex.Sets, _ = r.integer(colSets, true, maxSets, 0)
	ex.Reps, _ = r.integer(colReps, true, maxReps, 0)
	ex.Weight = r.weight(colWeight)
	ex.Rest = r.rest(colRest)
	ex.Tempo = r.text(colTempo, false)
	ex.Notes = r.notes(colNotes)

	// The plan columns must agree on every row.
	// A row with bad fields still founds its plan, phase or session when
	// their own fields are fine, so later rows are checked against it.
	if p.plan == nil {
		if !r.anyFailed(colPlanID, colPlanName, colClientID, colTrainerID, colPlanActive) {
			p.plan = &pl
		}
	} else {
		p.same(r, colPlanID, pl.id, p.plan.id, "the plan", p.plan.line)
		p.same(r, colPlanName, pl.name, p.plan.name, "the plan", p.plan.line)
		p.same(r, colClientID, pl.client, p.plan.client, "the plan", p.plan.line)
		p.same(r, colTrainerID, pl.trainer, p.plan.trainer, "the plan", p.plan.line)
		p.same(r, colPlanActive, pl.active, p.plan.active, "the plan", p.plan.line)
	}
	if !phOK || !seOK || !exOK {
		return // the row cannot be placed
	}

	phWhat := fmt.Sprintf("phase %d", phOrder)
	ph := p.phases[phOrder]
	if ph == nil {
		if !p.claim(r, colPhaseID, "phase", phID, phWhat) || r.anyFailed(colPhaseID, colPhaseName, colPhaseActive) {
			return
		}
		ph = &phase{line: line, id: phID, name: phName, active: phActive, sessions: map[int]*session{}}
		p.phases[phOrder] = ph
	} else {
		p.same(r, colPhaseID, phID, ph.id, phWhat, ph.line)
		p.same(r, colPhaseName, phName, ph.name, phWhat, ph.line)
		p.same(r, colPhaseActive, phActive, ph.active, phWhat, ph.line)
	}

	seWhat := fmt.Sprintf("session %d of phase %d", seOrder, phOrder)
	se := ph.sessions[seOrder]
	if se == nil {
		if !p.claim(r, colSessionID, "session", seID, seWhat) || r.anyFailed(colSessionID, colSessionName) {
			return
		}
		se = &session{line: line, id: seID, name: seName, exercises: map[int]*exerciseRow{}}
		ph.sessions[seOrder] = se
	} else {
		p.same(r, colSessionID, seID, se.id, seWhat, se.line)
		p.same(r, colSessionName, seName, se.name, seWhat, se.line)
	}

	exWhat := fmt.Sprintf("exercise %d of session %d of phase %d", exOrder, seOrder, phOrder)
	if prev := se.exercises[exOrder]; prev != nil {
		r.fail(colExerciseOrder, "%s is already on line %d; each exercise needs its own exercise_order", exWhat, prev.line)
		return
	}
	// A bad exercise is kept too: the file fails anyway, and its order
	// number still counts for duplicates.
	p.claim(r, colExerciseID, "exercise", ex.ID, exWhat)
	se.exercises[exOrder] = &exerciseRow{line: line, data: ex}
}

// same reports a field that disagrees with the value an earlier row gave the
// same plan, phase or session; a field already reported is not reported
// again.
func (p *parser) same(r *rowReader, c col, got, want any, what string, line int) {
	if got != want && !r.failed[c] {
		r.fail(c, "%s differs from %s, given for %s on line %d", show(got), show(want), what, line)
	}
}

func show(v any) string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return "empty"
		}
		return cutQ(v)
	default:
		return fmt.Sprint(v)
	}
}

// claim records an explicit ID for what, and reports an ID that another
// phase, session or exercise already has.
func (p *parser) claim(r *rowReader, c col, kind, id, what string) bool {
	if id == "" {
		return true
	}
	key := kind + "\x00" + id
	if prev, ok := p.ids[key]; ok && prev.what != what {
		r.fail(c, "%s is already the ID of %s (line %d)", cutQ(id), prev.what, prev.line)
		return false
	}
	if _, ok := p.ids[key]; !ok {
		p.ids[key] = idUse{line: r.line, what: what}
	}
	return true
}

// derive makes the ID of a child from its parent's ID and its order number,
// so the same file always gives the same IDs.
func derive(parent, kind string, order int) string {
	return uuid.NewSHA1(namespace, []byte(parent+"\x00"+kind+"\x00"+strconv.Itoa(order))).String()
}

// assemble builds the message, in order-number order, deriving missing IDs.
func (p *parser) assemble() *workout.PlanFullSave {
	pl := p.plan
	m := &workout.PlanFullSave{PlanID: pl.id, Name: pl.name, ClientID: pl.client, TrainerID: pl.trainer, IsActive: pl.active}
	if m.PlanID == "" {
		m.PlanID = uuid.NewSHA1(namespace, []byte("plan\x00"+pl.client+"\x00"+pl.trainer+"\x00"+pl.name)).String()
	}
	for _, po := range sortedKeys(p.phases) {
		ph := p.phases[po]
		t := workout.PhaseTree{PhaseData: workout.PhaseData{ID: ph.id, Name: ph.name, OrderNumber: po, IsActive: ph.active}}
		if t.ID == "" {
			t.ID = derive(m.PlanID, "phase", po)
		}
		for _, so := range sortedKeys(ph.sessions) {
			se := ph.sessions[so]
			st := workout.SessionTree{SessionData: workout.SessionData{ID: se.id, Name: se.name, OrderNumber: so}}
			if st.ID == "" {
				st.ID = derive(t.ID, "session", so)
			}
			for _, eo := range sortedKeys(se.exercises) {
				ex := se.exercises[eo].data
				if ex.ID == "" {
					ex.ID = derive(st.ID, "exercise", eo)
				}
				st.Exercises = append(st.Exercises, ex)
			}
			t.Sessions = append(t.Sessions, st)
		}
		m.Phases = append(m.Phases, t)
	}
	return m
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
