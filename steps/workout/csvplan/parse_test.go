package csvplan

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/trellisflow/trellis/steps/workout"
)

func readSample(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/sample.csv")
	require.NoError(t, err)
	return b
}

func parseString(s string, opts *Options) (*workout.PlanFullSave, error) {
	return Parse(strings.NewReader(s), opts)
}

func nodes(m *workout.PlanFullSave) (phases, sessions, exercises int) {
	for _, ph := range m.Phases {
		phases++
		for _, se := range ph.Sessions {
			sessions++
			exercises += len(se.Exercises)
		}
	}
	return
}

func TestSample(t *testing.T) {
	t.Parallel()
	m, err := Parse(bytes.NewReader(readSample(t)), nil)
	require.NoError(t, err)
	require.NoError(t, m.Validate())
	phases, sessions, exercises := nodes(m)
	require.Equal(t, []int{4, 20, 120}, []int{phases, sessions, exercises})
	require.Equal(t, 145, 1+phases+sessions+exercises, "nodes once expanded")

	require.Equal(t, "3f0c1a9e-7b4d-4e6a-9c1f-2a5b8d7e6f01", m.PlanID)
	require.Equal(t, "12-week strength block", m.Name)
	require.Equal(t, "client-042", m.ClientID)
	require.Equal(t, "trainer-007", m.TrainerID)
	require.True(t, m.IsActive)
	require.Equal(t, "Foundation", m.Phases[0].Name)
	require.Equal(t, "Peak", m.Phases[3].Name)
	require.Equal(t, 1, m.Phases[0].OrderNumber)
	require.True(t, m.Phases[0].IsActive)
	ex := m.Phases[0].Sessions[0].Exercises[0]
	require.Equal(t, workout.ExerciseData{
		ID: ex.ID, Name: "Back squat", OrderNumber: 1, Sets: 3, Reps: 12, Weight: 60, Rest: 60,
		Tempo: "4-0-1-1", Notes: "Main lift: warm up with 2 ramp sets, then work sets",
	}, ex)
	// Derived IDs are UUIDv5.
	id, err := uuid.Parse(ex.ID)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(5), id.Version())
	require.Equal(t, 45, m.Phases[0].Sessions[0].Exercises[2].Rest, "45s")
}

func TestSameFileSameIDs(t *testing.T) {
	t.Parallel()
	sample := readSample(t)
	want, err := Parse(bytes.NewReader(sample), nil)
	require.NoError(t, err)

	// Twice, with a BOM and CRLF, with shuffled rows, and through a reader
	// that returns one byte at a time: the same message.
	lines := strings.Split(strings.TrimSuffix(string(sample), "\n"), "\n")
	shuffled := append([]string(nil), lines[1:]...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	variants := map[string]io.Reader{
		"again":    bytes.NewReader(sample),
		"bom+crlf": strings.NewReader("\uFEFF" + strings.Join(lines, "\r\n") + "\r\n"),
		"shuffled": strings.NewReader(lines[0] + "\n" + strings.Join(shuffled, "\n")),
		"one byte": iotest.OneByteReader(bytes.NewReader(sample)),
		"blank rows": strings.NewReader(lines[0] + "\n\n" + strings.Join(lines[1:60], "\n") + "\n,,,,,,,,,,,,,,,\n" +
			strings.Join(lines[60:], "\n") + "\n\n"),
	}
	for name, r := range variants {
		got, err := Parse(r, nil)
		require.NoError(t, err, name)
		require.Equal(t, want, got, name)
	}

	// Write gives the IDs explicitly; parsing that gives the same message.
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, want))
	got, err := Parse(&buf, nil)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func TestDerivedIDs(t *testing.T) {
	t.Parallel()
	const head = "plan_name,client_id,trainer_id,phase_order,phase_name,session_order,session_name,exercise_order,exercise_name,sets,reps\n"
	a, err := parseString(head+"P,c,t,1,Phase,1,S,1,Squat,3,5\nP,c,t,1,Phase,1,S,2,Row,3,5\n", nil)
	require.NoError(t, err)
	// Renaming keeps IDs (they hang on order numbers); another plan gets others.
	b, err := parseString(head+"P,c,t,1,Renamed,1,S2,1,Front squat,3,5\nP,c,t,1,Renamed,1,S2,2,Row,3,5\n", nil)
	require.NoError(t, err)
	require.Equal(t, a.PlanID, b.PlanID)
	require.Equal(t, a.Phases[0].ID, b.Phases[0].ID)
	require.Equal(t, a.Phases[0].Sessions[0].Exercises[1].ID, b.Phases[0].Sessions[0].Exercises[1].ID)
	c, err := parseString(head+"Other,c,t,1,Phase,1,S,1,Squat,3,5\n", nil)
	require.NoError(t, err)
	require.NotEqual(t, a.PlanID, c.PlanID)
	require.NotEqual(t, a.Phases[0].ID, c.Phases[0].ID)
	require.NotEqual(t, a.Phases[0].Sessions[0].Exercises[0].ID, c.Phases[0].Sessions[0].Exercises[0].ID)
	// All IDs differ from each other.
	seen := map[string]bool{a.PlanID: true}
	for _, ph := range a.Phases {
		for _, se := range ph.Sessions {
			for _, ex := range se.Exercises {
				for _, id := range []string{ph.ID, se.ID, ex.ID} {
					seen[id] = true
				}
			}
		}
	}
	require.Len(t, seen, 5)
}

func TestOptionsFillClientAndTrainer(t *testing.T) {
	t.Parallel()
	const csv = "Plan Name,PhaseOrder,phase name,session_order,session_name,exercise_order,exercise_name,SETS,reps,plan_active,phase_active\n" +
		"P,0,Phase,0,S,0,Squat,3,5,no,0\n"
	_, err := parseString(csv, nil)
	var perr *Error
	require.ErrorAs(t, err, &perr)
	require.Equal(t, []Problem{
		{Line: 1, Column: "client_id", Message: "column is missing and Options.ClientID is empty"},
		{Line: 1, Column: "trainer_id", Message: "column is missing and Options.TrainerID is empty"},
	}, perr.Problems)

	m, err := parseString(csv, &Options{ClientID: "c1", TrainerID: "t1"})
	require.NoError(t, err)
	require.Equal(t, "c1", m.ClientID)
	require.Equal(t, "t1", m.TrainerID)
	require.False(t, m.IsActive)
	require.False(t, m.Phases[0].IsActive)
	require.Equal(t, 0, m.Phases[0].Sessions[0].Exercises[0].OrderNumber)
}

func TestExplicitIDs(t *testing.T) {
	t.Parallel()
	const head = "plan_id,plan_name,client_id,trainer_id,phase_id,phase_order,phase_name,session_id,session_order,session_name,exercise_id,exercise_order,exercise_name,sets,reps\n"
	m, err := parseString(head+
		"plan-1,P,c,t,ph-1,1,A,se-1,1,S,ex-1,1,Squat,3,5\n"+
		"plan-1,P,c,t,ph-1,1,A,se-1,1,S,,2,Row,3,5\n", nil)
	require.NoError(t, err)
	require.Equal(t, "plan-1", m.PlanID)
	require.Equal(t, "ph-1", m.Phases[0].ID)
	require.Equal(t, "se-1", m.Phases[0].Sessions[0].ID)
	require.Equal(t, "ex-1", m.Phases[0].Sessions[0].Exercises[0].ID)
	require.Equal(t, derive("se-1", "exercise", 2), m.Phases[0].Sessions[0].Exercises[1].ID)
}

// problems parses csv and returns its problems as "line/column: message".
func problems(t *testing.T, csv string, opts *Options) []string {
	t.Helper()
	m, err := parseString(csv, opts)
	require.Nil(t, m)
	require.ErrorIs(t, err, ErrInvalid)
	var perr *Error
	require.ErrorAs(t, err, &perr)
	out := make([]string, 0, len(perr.Problems))
	for _, p := range perr.Problems {
		out = append(out, p.String())
	}
	return out
}

const header = "plan_name,client_id,trainer_id,phase_id,phase_order,phase_name,session_order,session_name,exercise_order,exercise_name,sets,reps,weight,rest,tempo,notes\n"

func TestProblems(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		csv  string
		opts *Options
		want []string
	}{
		{"empty file", "", nil, []string{"the file is empty; its first line must be the header (plan_name, phase_order, phase_name, session_order, session_name, exercise_order, exercise_name, sets, reps, …)"}},
		{"header only", header, nil, []string{"the file has a header but no exercise rows"}},
		{"header problems", "plan_name,plan_name,phase_order,Phase-Name,sesion_order,reps\n", nil, []string{
			`line 1, column plan_name: appears twice (fields 1 and 2)`,
			`line 1, column "sesion_order": unknown column; the columns are plan_id, plan_name, client_id, trainer_id, plan_active, phase_id, phase_order, phase_name, phase_active, session_id, session_order, session_name, exercise_id, exercise_order, exercise_name, sets, reps, weight, rest, tempo, notes`,
			"line 1, column session_order: required column is missing",
			"line 1, column session_name: required column is missing",
			"line 1, column exercise_order: required column is missing",
			"line 1, column exercise_name: required column is missing",
			"line 1, column sets: required column is missing",
			"line 1, column client_id: column is missing and Options.ClientID is empty",
			"line 1, column trainer_id: column is missing and Options.TrainerID is empty",
		}},
		{"every bad field of every row", header +
			"P,c,t,,1,A,1,S,1,Squat,ten,5,-2,soon,,\n" +
			"P,c,t,,x,A,1,S,1,Squat,3,5.5,1e400,90,,\n" +
			",c,t,,1,A,1,S,2,,3,5,NaN,-1,,\n", nil, []string{
			`line 2, column sets: "ten" is not a number`,
			`line 2, column weight: -2 is negative`,
			`line 2, column rest: "soon" is neither seconds (90) nor a duration (1m30s)`,
			`line 3, column phase_order: "x" is not a number`,
			`line 3, column reps: "5.5" is not a whole number`,
			`line 3, column weight: "1e400" is not a number`,
			`line 4, column plan_name: is required`,
			`line 4, column exercise_name: is required`,
			`line 4, column weight: "NaN" is not a number`,
			`line 4, column rest: -1 is outside 0…86400 seconds`,
		}},
		{"bounds", header + "P,c,t,,1,A,1,S,1,Squat,1001,100001,100001,1.5s,,\nP,c,t,,1000001,A,1,S,1,Squat,1,1,1,25h,,\n", nil, []string{
			`line 2, column sets: 1001 is over the limit of 1000`,
			`line 2, column reps: 100001 is over the limit of 100000`,
			`line 2, column weight: 100001 is over the limit of 100000`,
			`line 2, column rest: "1.5s" is not a whole number of seconds`,
			`line 3, column phase_order: 1000001 is over the limit of 1000000`,
			`line 3, column rest: "25h" is outside 0s…24h`,
		}},
		{"inconsistent rows", header +
			"P,c,t,ph-1,1,Strength,1,Mon,1,Squat,3,5,,,,\n" +
			"P,c,t,ph-1,1,Hypertrophy,1,Tue,2,Row,3,5,,,,\n" +
			"Q,c,t2,ph-1,2,Peak,1,Mon,1,Squat,3,5,,,,\n" +
			"P,c,t,,1,Strength,1,Mon,1,Deadlift,3,5,,,,\n", nil, []string{
			`line 3, column phase_name: "Hypertrophy" differs from "Strength", given for phase 1 on line 2`,
			`line 3, column session_name: "Tue" differs from "Mon", given for session 1 of phase 1 on line 2`,
			`line 4, column plan_name: "Q" differs from "P", given for the plan on line 2`,
			`line 4, column trainer_id: "t2" differs from "t", given for the plan on line 2`,
			`line 4, column phase_id: "ph-1" is already the ID of phase 1 (line 2)`,
			`line 5, column phase_id: empty differs from "ph-1", given for phase 1 on line 2`,
			`line 5, column exercise_order: exercise 1 of session 1 of phase 1 is already on line 2; each exercise needs its own exercise_order`,
		}},
		{"control characters and bad UTF-8", header +
			"P,c,t,,1,A\x01B,1,S,1,Squat,3,5,,,,\"ok\nmulti-line\"\n" +
			"P,c,t,,1,A,1,S\xff,2,Row,3,5,,,3-1\t1,\"bell\x07\"\n", nil, []string{
			`line 2, column phase_name: holds the control character U+0001; use one line of text`,
			`line 4, column session_name: is not valid UTF-8`,
			`line 4, column tempo: holds the control character U+0009; use one line of text`,
			`line 4, column notes: holds the control character U+0007`,
		}},
		{"broken CSV", header +
			"P,c,t,,1,A,1,S,1,Squat,3,5\n" +
			"P,c,t,,1,A,1,S,2,Row,3,5,,,,\n" +
			"P,c,t,,1,A,1,S,3,Press \"quoted\",3,5,,,,\n" +
			"P,c,t,,1,A,1,S,4,Row,x,5,,,,\n" +
			"P,c,t,,1,A,1,S,5,\"Row,3,5,,,,\nP,c,t,,1,A,1,S,6,Row,3,5,,,,\n", nil, []string{
			`line 2: has 12 fields; the header has 16`,
			`line 4: is not valid CSV: bare " in non-quoted-field (character 24)`,
			`line 5, column sets: "x" is not a number`,
			`line 6: is not valid CSV: extraneous or missing " in quoted-field (found at line 7, character 30)`,
		}},
		{"ID too long", header + "P," + strings.Repeat("c", 129) + ",t,,1,A,1,S,1,Squat,3,5,,,,\n", nil, []string{
			`line 2, column client_id: is 129 bytes, over the limit of 128`,
		}},
		{"texts too long for their columns", header + "P,c,t,,1," + strings.Repeat("a", 257) + ",1,S,1,Squat,3,5,,," + strings.Repeat("1", 65) + "," + strings.Repeat("n", 4097) + "\n", &Options{MaxField: 5000}, []string{
			`line 2, column phase_name: is 257 bytes, over the limit of 256`,
			`line 2, column tempo: is 65 bytes, over the limit of 64`,
			`line 2, column notes: is 4097 bytes, over the limit of 4096`,
		}},
		{"client column empty", header + "P,,t,,1,A,1,S,1,Squat,3,5,,,,\n", nil, []string{
			`line 2, column client_id: is required (or set Options.ClientID)`,
		}},
		{"bad booleans", "plan_name,client_id,trainer_id,plan_active,phase_order,phase_name,phase_active,session_order,session_name,exercise_order,exercise_name,sets,reps\n" +
			"P,c,t,maybe,1,A,si,1,S,1,Squat,3,5\n", nil, []string{
			`line 2, column plan_active: "maybe" is not true or false (yes/no, 1/0 also work)`,
			`line 2, column phase_active: "si" is not true or false (yes/no, 1/0 also work)`,
		}},
		{"unnamed columns", "plan_name,client_id,trainer_id,phase_order,phase_name,session_order,session_name,exercise_order,exercise_name,sets,reps,,\n" +
			"P,c,t,1,A,1,S,1,Squat,3,5,,\nP,c,t,1,A,1,S,2,Row,3,5,,oops\n", nil, []string{
			`line 3: field 13 holds "oops" but its column has no name in the header`,
		}},
		{"max problems", header + strings.Repeat("P,c,t,,1,A,1,S,x,Squat,3,5,,,,\n", 5), &Options{MaxProblems: 2}, []string{
			`line 2, column exercise_order: "x" is not a number`,
			`line 3, column exercise_order: "x" is not a number`,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, problems(t, tc.csv, tc.opts))
		})
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	_, err := parseString(header+strings.Repeat("P,c,t,,1,A,1,S,x,Squat,3,5,,,,\n", 3), &Options{MaxProblems: 2})
	require.EqualError(t, err, "csvplan: 3 problems in the CSV:\n"+
		"  line 2, column exercise_order: \"x\" is not a number\n"+
		"  line 3, column exercise_order: \"x\" is not a number\n"+
		"  … and 1 more")
	require.NotErrorIs(t, err, ErrLimit)
}

func TestLimits(t *testing.T) {
	t.Parallel()
	row := "P,c,t,,1,A,1,S,%d,Squat,3,5,,,,\n"
	var b strings.Builder
	b.WriteString(header)
	for i := range 20 {
		b.WriteString(strings.Replace(row, "%d", string(rune('a'+i)), 1))
	}
	many := b.String()

	p := problems(t, many, &Options{MaxRows: 3, MaxProblems: 1000})
	require.Equal(t, "line 5: the file has more than 3 exercise rows (Options.MaxRows); reading stopped here", p[len(p)-1])
	require.Len(t, p, 4, "3 bad rows, then the limit")
	_, err := parseString(many, &Options{MaxRows: 3})
	require.ErrorIs(t, err, ErrLimit)

	_, err = parseString(header+"P,c,t,,1,A,1,S,1,Squat,3,5,,,,"+strings.Repeat("x", 5001)+"\n", &Options{MaxField: 5000})
	require.ErrorIs(t, err, ErrLimit)
	require.ErrorContains(t, err, "line 2, column notes: is 5001 bytes, over the limit of 5000 (Options.MaxField)")

	_, err = Parse(io.MultiReader(strings.NewReader(header), strings.NewReader(strings.Repeat("P,c,t,,1,A,1,S,1,Squat,3,5,,,,\n", 1000))), &Options{MaxBytes: 4096})
	require.ErrorIs(t, err, ErrLimit)
	require.ErrorContains(t, err, "the file is larger than 4096 bytes (Options.MaxBytes); reading stopped here")
	_, err = parseString(strings.Repeat("a", 100), &Options{MaxBytes: 10})
	require.ErrorIs(t, err, ErrLimit)

	require.ErrorContains(t, func() error { _, err := parseString(header, &Options{MaxRows: -1}); return err }(), "Options.MaxRows")
}

func TestReadErrorIsReturned(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk on fire")
	_, err := Parse(io.MultiReader(strings.NewReader(header+"P,c,t,,1,A,1,S,1,Squat,3,5,,,,\n"), iotest.ErrReader(boom)), nil)
	require.ErrorIs(t, err, boom)
	require.NotErrorIs(t, err, ErrInvalid)
}

func TestWriteEmpty(t *testing.T) {
	t.Parallel()
	require.Error(t, Write(io.Discard, nil))
}
