package render_test

import (
	"context"
	"os"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/dag/render"
)

func ExampleMermaid() {
	plan := &dag.Node{State: dag.Succeeded, Attempt: 1}
	plan.ID, plan.Type, plan.MaxAttempts = "plan", "WORKOUT_PLAN_CREATE", 3
	phase := &dag.Node{State: dag.Failed, Attempt: 3, Error: &dag.ErrorInfo{Message: "plan \"p1\" not found\nstack…"}}
	phase.ID, phase.Type, phase.MaxAttempts, phase.Parents = "phase", "WORKOUT_PHASE_CREATE", 3, []string{"plan"}
	f := &dag.Flow{ID: "save", Nodes: []*dag.Node{plan, phase}}

	_ = render.Mermaid(context.Background(), os.Stdout, f, nil)
	// Output:
	// ---
	// title: "flow save — 2 nodes: 1 succeeded · 1 failed"
	// ---
	// flowchart TB
	//   n0["plan<br>WORKOUT_PLAN_CREATE<br>succeeded · attempt 1/3"]
	//   n1["phase<br>WORKOUT_PHASE_CREATE<br>failed · attempt 3/3<br>plan #quot;p1#quot; not found"]
	//   n0 --> n1
	//   classDef succeeded fill:#DCFCE7,stroke:#16A34A,color:#14532D,stroke-width:1px
	//   class n0 succeeded
	//   classDef failed fill:#FEE2E2,stroke:#DC2626,color:#7F1D1D,stroke-width:2px
	//   class n1 failed
}

func ExampleDOT() {
	a := &dag.Node{State: dag.Active, Attempt: 1}
	a.ID, a.Type, a.MaxAttempts = `say "hi"`, "TEST", 1
	_ = render.DOT(context.Background(), os.Stdout, &dag.Flow{ID: "one", Nodes: []*dag.Node{a}}, &render.Options{Title: "-"})
	// Output:
	// strict digraph {
	// 	fontname="Helvetica";
	// 	fontsize="12";
	// 	label="1 node: 1 active";
	// 	labelloc="t";
	// 	nodesep="0.25";
	// 	rankdir="TB";
	// 	ranksep="0.45";
	// 	"say \"hi\"" [ color="#4338CA", fillcolor="#C7D2FE", fontcolor="#1E1B4B", fontname="Helvetica", fontsize="10", label="say \"hi\"\nTEST\nactive · attempt 1/1", margin="0.12,0.06", penwidth="2.5", shape="box", style="rounded,filled",  weight=0 ];
	// }
}
