// Package csvplan reads a whole workout plan from a CSV file into the
// WORKOUT_PLAN_FULL_SAVE message ([workout.PlanFullSave]), which expands into
// the graph plan → phases → sessions → exercises.
//
// # Format
//
// The first line is the header; then one row per exercise. Every row repeats
// the columns of its plan, phase and session, exactly as a spreadsheet export
// does:
//
//	plan_id,plan_name,client_id,trainer_id,phase_order,phase_name,session_order,session_name,exercise_order,exercise_name,sets,reps,weight,rest,tempo,notes
//	,12-week block,client-042,trainer-007,1,Foundation,1,Lower A,1,Back squat,3,12,60,90s,3-1-1-0,"Warm up first, then work sets"
//	,12-week block,client-042,trainer-007,1,Foundation,1,Lower A,2,Romanian deadlift,3,12,50,1m30s,,
//
// The columns, in any order (header names ignore case, spaces and
// underscores: "Phase Order" and "phaseOrder" both mean phase_order):
//
//	column          required  meaning
//	plan_name       yes       the plan's name (≤ 256 bytes, as every name); one plan per file
//	plan_id         no        the plan's ID; derived if empty (see below)
//	client_id       yes*      the client the plan is for
//	trainer_id      yes*      the trainer who owns it
//	plan_active     no        true/false, yes/no, 1/0; default true
//	phase_order     yes       whole number ≥ 0; identifies the phase in the plan
//	phase_name      yes       the phase's name
//	phase_id        no        the phase's ID; derived if empty
//	phase_active    no        true/false; default true
//	session_order   yes       whole number ≥ 0; identifies the session in its phase
//	session_name    yes       the session's name
//	session_id      no        the session's ID; derived if empty
//	exercise_order  yes       whole number ≥ 0; unique in its session
//	exercise_name   yes       the exercise's name
//	exercise_id     no        the exercise's ID; derived if empty
//	sets            yes       whole number 0…1000
//	reps            yes       whole number 0…100000
//	weight          no        number ≥ 0 in the trainer's unit; empty or 0 for body weight
//	rest            no        seconds between sets: 90, or a duration such as 90s or 1m30s (≤ 24h)
//	tempo           no        free text on one line, e.g. 3-1-1-0 (≤ 64 bytes)
//	notes           no        free text; line breaks are fine inside quotes (≤ 4,096 bytes)
//
// (*) client_id and trainer_id may be left out when [Options] gives them.
//
// Rows belong to the phase with their phase_order and to the session with
// their (phase_order, session_order). Every row of a phase must give the same
// phase_name, phase_id and phase_active, every row of a session the same
// session_name and session_id, and every row the same plan columns; a row that
// disagrees is an error that names the line of the first row it disagrees
// with. An explicit ID may be used by one phase (session, exercise) only.
// The message lists phases, sessions and exercises by order number, whatever
// the order of the rows.
//
// # Derived IDs
//
// A missing ID is a UUIDv5, so importing the same file twice gives the same
// IDs and, since the steps upsert by ID, changes nothing:
//
//	plan      from client_id, trainer_id and plan_name
//	phase     from the plan's ID and phase_order
//	session   from the phase's ID and session_order
//	exercise  from the session's ID and exercise_order
//
// IDs hang on order numbers, not names: renaming a session in the file
// updates it in place, while renumbering makes a new one.
//
// # Errors
//
// [Parse] reads the file as a stream, row by row, and checks all of it
// before it answers: the *[Error] it returns lists every problem with its
// line, its column and what is wrong, e.g.
//
//	csvplan: 2 problems in the CSV:
//	  line 4, column reps: "ten" is not a whole number
//	  line 9, column phase_name: "Strength" differs from "Foundation", given for phase 1 on line 2
//
// A UTF-8 byte order mark and CRLF line ends are accepted; blank rows are
// skipped, and so are columns with an empty header as long as they hold
// nothing. Limits (rows, bytes per field, bytes in all) are in [Options];
// breaking one stops the reading and the error matches [ErrLimit].
// testdata/sample.csv is a complete example: one plan, 4 phases of 5 sessions
// of 6 exercises (120 rows, 145 nodes once expanded).
package csvplan
