// Package store keeps the flows of one namespace in Redis: one hash per
// node, a ready sorted set per lane (queue and message type), a delayed
// set, an active set of leases, the failed index and an event stream
// bounded by events. Every state change is one Lua script that checks the
// expected state (and lease token) before it writes; the scripts live in
// scripts/*.lua, on the library in scripts/lib, and every key name is built
// in keys.go (and, the same, in scripts/lib/8-begin.lua).
//
// It is machinery: flow, runner and the tools reach it only through
// flow's public API and the internal seam.
package store
