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
// Run enqueues a graph and returns when every node is terminal; RunJob does
// the same for one message, Wait for a flow enqueued through Client, and
// Drain for everything in the namespace. Whenever no node can be claimed
// and none is running, the harness moves the fake clock straight to the
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
// Rate limits (Client().SetLimit) run on the fake clock too: when every
// ready node waits for its type's next window, the clock moves to it.
//
// A Run that cannot finish — its nodes wait in a paused queue or one the
// harness does not serve — fails the test at once; one that does not finish
// within Config.Timeout of real time (a step that never returns) fails
// then. Either way the message lists the state of every node.
package flowtest
