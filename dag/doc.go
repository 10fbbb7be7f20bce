// Package dag is Trellis's graph model and its Redis store.
//
// A flow is a directed acyclic graph of nodes. Each node carries one message
// (the uniform envelope) and the options that steer its execution. The Store
// persists flows in Redis: one hash per node, a ready sorted set per queue, a
// delayed set, an active set of leases, and a capped event stream. Every state
// change is one Lua script that checks the expected state (and lease token)
// before it writes; the scripts live in scripts/*.lua.
//
// Most users never import dag directly: package flow is the public API.
package dag
