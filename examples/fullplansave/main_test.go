package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The README's main job, end to end on the embedded default.
func TestFullPlanSaveEndToEnd(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-out", out}, &stdout, &stderr)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	s := stdout.String()
	require.Contains(t, s, "redis: in-process")
	require.Contains(t, s, "4 phases, 20 sessions, 120 exercises (145 nodes)")
	require.Contains(t, s, "145 nodes — succeeded 145; 0 retries")
	require.Contains(t, s, "rows in the database: workout_plans 1, workout_phases 4, workout_sessions 20, workout_exercises 120")
	// stdout is no terminal: progress is plain lines, never a bar redrawn with \r
	require.NotContains(t, s, "\r")
	require.NotContains(t, s, "█")
	require.Contains(t, s, "progress: 145/145 nodes done\n")

	svg, err := os.ReadFile(filepath.Join(out, "graph.svg"))
	require.NoError(t, err)
	require.NoError(t, xml.Unmarshal(svg, new(struct{ XMLName xml.Name })), "the SVG parses")
	f, err := os.Open(filepath.Join(out, "graph.png"))
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	require.Greater(t, img.Bounds().Dx(), 200)
	dot, err := os.ReadFile(filepath.Join(out, "graph.dot"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(dot), "strict digraph") || strings.HasPrefix(string(dot), "digraph"), string(dot[:40]))
	mmd, err := os.ReadFile(filepath.Join(out, "graph.mmd"))
	require.NoError(t, err)
	require.Contains(t, string(mmd), "flowchart")

	// importing the same file again changes nothing: same IDs, same rows
	stdout.Reset()
	require.NoError(t, run(context.Background(), []string{"-out", out}, &stdout, &stderr))
	require.Contains(t, stdout.String(), "workout_plans 1, workout_phases 4, workout_sessions 20, workout_exercises 120")
}

func TestBadCSVExitsWithTheProblems(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	require.NoError(t, os.WriteFile(bad, []byte("plan_name,client_id,trainer_id,phase_order,phase_name,session_order,session_name,exercise_order,exercise_name,sets,reps\n"+
		"Block,c1,t1,1,Base,1,Lower,1,Squat,three,10\n"+
		"Block,c1,t1,1,Base,1,Lower,2,,3,-4\n"), 0o644))
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-csv", bad, "-out", filepath.Join(dir, "out")}, &stdout, &stderr)
	require.Error(t, err)
	msg := err.Error()
	require.Contains(t, msg, "bad.csv")
	require.Contains(t, msg, "sets")
	require.Contains(t, msg, "exercise_name")
	require.Contains(t, msg, "reps")
	require.NoDirExists(t, filepath.Join(dir, "out"), "nothing was queued or written")

	_, err = parseFlags([]string{"-fail-rate", "1.5"}, &stderr)
	require.ErrorContains(t, err, "-fail-rate 1.5")
}

// Only a terminal gets a bar redrawn in place: not a buffer, a file or a pipe.
func TestIsTerminal(t *testing.T) {
	t.Parallel()
	require.False(t, isTerminal(&bytes.Buffer{}))
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	defer f.Close()
	require.False(t, isTerminal(f))
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	require.False(t, isTerminal(w))
}
