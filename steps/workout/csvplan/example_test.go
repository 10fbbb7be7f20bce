package csvplan_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/trellisflow/trellis/steps/workout/csvplan"
)

func ExampleParse() {
	const file = `plan_name,client_id,trainer_id,phase_order,phase_name,session_order,session_name,exercise_order,exercise_name,sets,reps,weight,rest
Starter,client-1,trainer-1,1,Base,1,Monday,1,Squat,3,10,40,90s
Starter,client-1,trainer-1,1,Base,1,Monday,2,Push-up,3,12,,60
Starter,client-1,trainer-1,1,Base,2,Thursday,1,Deadlift,3,8,60,2m
`
	plan, err := csvplan.Parse(strings.NewReader(file), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, ph := range plan.Phases {
		for _, se := range ph.Sessions {
			for _, ex := range se.Exercises {
				fmt.Printf("%s / %s / %s: %d×%d @ %g, rest %ds\n", ph.Name, se.Name, ex.Name, ex.Sets, ex.Reps, ex.Weight, ex.Rest)
			}
		}
	}
	// Output:
	// Base / Monday / Squat: 3×10 @ 40, rest 90s
	// Base / Monday / Push-up: 3×12 @ 0, rest 60s
	// Base / Thursday / Deadlift: 3×8 @ 60, rest 120s
}

func ExampleError() {
	const file = "plan_name,client_id,trainer_id,phase_order,phase_name,session_order,session_name,exercise_order,exercise_name,sets,reps\r\n" +
		"Starter,client-1,trainer-1,1,Base,1,Monday,1,Squat,three,10\r\n" +
		"Starter,client-1,trainer-1,1,Build,1,Monday,2,Lunge,3,10\r\n"
	_, err := csvplan.Parse(strings.NewReader(file), nil)
	var perr *csvplan.Error
	if errors.As(err, &perr) {
		for _, p := range perr.Problems {
			fmt.Printf("line %d, %s: %s\n", p.Line, p.Column, p.Message)
		}
	}
	// Output:
	// line 2, sets: "three" is not a number
	// line 3, phase_name: "Build" differs from "Base", given for phase 1 on line 2
}
