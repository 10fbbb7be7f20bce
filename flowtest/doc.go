// Package flowtest runs whole Trellis graphs inside a test: an in-process
// Redis, a client and a runner on a fake clock, and assertions on what ran.
//
//	func TestPlanThenPhases(t *testing.T) {
//		h := flowtest.New(t, planStep, phaseStep)
//		h.Run(graph)
//		h.RequireSucceeded("plan", "phase-1", "phase-2")
//		h.RequireOrder("plan", "phase-1")
//	}
//
// Run enqueues a graph and returns when every node is terminal. Whenever no
// node is ready or running, the harness moves the fake clock straight to the
// next delayed node's due time, so delays and retry backoffs (2s, 4s, 8s…)
// take no real time; Elapsed reports the fake time that passed. Steps run
// one at a time by default, in the engine's order (priority, then ready
// time, then ID), so the order is deterministic wherever the graph allows
// one.
//
// Steps can be replaced with stubs (Returns, Fails, FailsFirst, or any
// flow.StepFunc) through New, Register or Stub, and wrapped with Wrap. Every
// run is recorded (Runs, RunsOf) and checked with RequireRan, RequireNotRan,
// RequireSucceeded, RequireState, RequireOrder, RequireAttempts and Result.
//
// A Run that does not finish — a paused queue, a node in a queue the
// harness does not serve, a step that never returns — fails the test after
// Config.Timeout with the state of every node.
package flowtest
