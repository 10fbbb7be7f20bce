package csvplan

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/trellisflow/trellis/steps/workout"
)

// Write writes m in the format Parse reads, one row per exercise, with
// every column and every ID, so that Parse(Write(m)) gives m back. Sessions
// without exercises and phases without sessions have no row and are lost.
func Write(w io.Writer, m *workout.PlanFullSave) error {
	if m == nil {
		return errors.New("csvplan: nil plan")
	}
	cw := csv.NewWriter(w)
	header := make([]string, numCols)
	for c := range numCols {
		header[c] = columns[c].name
	}
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("csvplan: write: %w", err)
	}
	rec := make([]string, numCols)
	for _, ph := range m.Phases {
		for _, se := range ph.Sessions {
			for _, ex := range se.Exercises {
				rec[colPlanID] = m.PlanID
				rec[colPlanName] = m.Name
				rec[colClientID] = m.ClientID
				rec[colTrainerID] = m.TrainerID
				rec[colPlanActive] = strconv.FormatBool(m.IsActive)
				rec[colPhaseID] = ph.ID
				rec[colPhaseOrder] = strconv.Itoa(ph.OrderNumber)
				rec[colPhaseName] = ph.Name
				rec[colPhaseActive] = strconv.FormatBool(ph.IsActive)
				rec[colSessionID] = se.ID
				rec[colSessionOrder] = strconv.Itoa(se.OrderNumber)
				rec[colSessionName] = se.Name
				rec[colExerciseID] = ex.ID
				rec[colExerciseOrder] = strconv.Itoa(ex.OrderNumber)
				rec[colExerciseName] = ex.Name
				rec[colSets] = strconv.Itoa(ex.Sets)
				rec[colReps] = strconv.Itoa(ex.Reps)
				rec[colWeight] = strconv.FormatFloat(ex.Weight, 'g', -1, 64)
				rec[colRest] = strconv.Itoa(ex.Rest)
				rec[colTempo] = ex.Tempo
				rec[colNotes] = ex.Notes
				if err := cw.Write(rec); err != nil {
					return fmt.Errorf("csvplan: write: %w", err)
				}
			}
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("csvplan: write: %w", err)
	}
	return nil
}
