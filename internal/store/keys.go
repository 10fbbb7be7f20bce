package store

import "github.com/trellisflow/trellis/dag"

// Every Redis key of a namespace is built here. All of them start with
// "trellis:{ns}:", so one namespace lives in one Redis Cluster slot and every
// script can touch all of its keys. The Lua scripts derive the same names
// from the prefix they receive as KEYS[1]; keep the two in step. A lane is
// a queue and a message type: "|" separates them, as it is in no name.
type keys struct{ prefix string }

func newKeys(namespace string) keys { return keys{prefix: "trellis:{" + namespace + "}:"} }

func (k keys) node(id string) string             { return k.prefix + "n:" + id }                 // hash: one node
func (k keys) flow(id string) string             { return k.prefix + "f:" + id }                 // set: a flow's node IDs
func (k keys) flowMeta(id string) string         { return k.prefix + "fm:" + id }                // hash: n, left, ca
func (k keys) ready(queue, typ string) string    { return k.prefix + "rq:" + queue + "|" + typ } // zset by priority, time: a lane's ready nodes
func (k keys) laneWake(queue, typ string) string { return k.prefix + "wk:" + queue + "|" + typ } // list: wake-up tokens of a lane
func (k keys) wake(queue string) string          { return k.prefix + "q:" + queue + ":wake" }    // list: wake-up tokens of every lane of a queue (Resume)
func (k keys) oldReady(queue string) string      { return k.prefix + "q:" + queue + ":ready" }   // zset: a queue's ready nodes before lanes (migrated)
func (k keys) oldFailed() string                 { return k.prefix + "failed" }                  // zset: failed nodes before the state indexes (Reindex deletes it)
func (k keys) delayed() string                   { return k.prefix + "delayed" }                 // zset by due time
func (k keys) active() string                    { return k.prefix + "active" }                  // zset by lease deadline
func (k keys) done() string                      { return k.prefix + "done" }                    // zset: finished flows by time
func (k keys) index(st dag.State, queue, typ string) string {
	return k.prefix + "ix:" + string(st) + ":" + queue + "|" + typ // zset by time: a lane's nodes in state st (blocked and terminal states)
}
func (k keys) counts() string                        { return k.prefix + "counts" }                      // hash: "state|queue|type" -> n
func (k keys) events() string                        { return k.prefix + "events" }                      // stream of transitions, bounded by events
func (k keys) eventSeq() string                      { return k.prefix + "evseq" }                       // string: events written, the stream's next ID
func (k keys) runners() string                       { return k.prefix + "runners" }                     // zset: runner -> last heartbeat
func (k keys) runnerInfo() string                    { return k.prefix + "rinfo" }                       // hash: runner -> its record (JSON RunnerInfo)
func (k keys) control() string                       { return k.prefix + "ctl" }                         // hash: "t:"+type -> "concurrency|rate|per ms", "p:"+queue -> "1" while paused
func (k keys) rateWindow(typ string, w int64) string { return k.prefix + "rate:" + typ + ":" + itoa(w) } // string: claims in a window (Lua builds it)
func (k keys) minute(m int64) string                 { return k.prefix + "m:" + itoa(m) }                // hash: one minute's stats
func (k keys) pattern() string                       { return k.prefix + "*" }
