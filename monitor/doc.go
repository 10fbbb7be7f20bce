// Package monitor serves Trellis's HTTP API and dashboard as one
// http.Handler that any Go service can mount:
//
//	h, err := monitor.New(client, monitor.Config{Token: os.Getenv("TRELLIS_TOKEN")})
//	mux.Handle("/trellis/", http.StripPrefix("/trellis", h))
//
// # Endpoints
//
// JSON (GET unless noted; errors are {"error": "..."}):
//
//	/api/queue-stats            counts per state, queue and type, processing rate per
//	                            minute, error rate, average and p95 duration;
//	                            ?includeJobs=true&limit=N adds recent jobs, ?window=MINUTES
//	/api/charts                 per-minute finished runs, failures, retries and p50/p95
//	                            duration of ?queue=&type= (empty: all) over ?minutes=N
//	                            (default 60, at most 120), with the ready and delayed
//	                            backlog now and as runners sampled it each minute
//	/api/admin/queue-health     healthy | warning | critical with a reason and a
//	                            recommendation per finding; HTTP 200 when healthy or
//	                            warning, 503 when critical
//	/api/jobs                   ?state=&type=&queue=&flow=&q=&limit=&cursor= a page of jobs
//	                            and the ?cursor= of the next (see "Cost" below)
//	/api/jobs/{id}              payload, timeline, every attempt, error and stack, result,
//	                            parents and children with their states, waitsFor (why it has not started)
//	/api/flows/{id}             the flow's nodes and edges
//	/api/flows/{id}/view        the flow laid out for the live view (render.Layout):
//	                            ?w=&h= the viewport, ?expand= groups drawn whole,
//	                            ?dir=TB|LR, ?boxes=N
//	/api/flows/{id}/graph.svg   the flow drawn by dag/render in its live state colors;
//	                            also .png, .dot (Graphviz) and .mmd (Mermaid);
//	                            ?dir=LR, ?siblings=N (negative: expand all), ?boxes=N,
//	                            ?rank=N
//	                            (see "Pictures" below)
//	/api/events                 Server-Sent Events: "transition" events whose data is a
//	                            JSON array of {node, from, to, at, attempt, worker};
//	                            Last-Event-ID replays what a reconnecting client missed
//	/api/failures               failed jobs grouped by type and by error message
//	/api/runners                the live runners (a heartbeat within the health's
//	                            RunnerTimeout): host, version, queues, types, concurrency,
//	                            jobs in flight, last heartbeat
//	/api/types                  the message types the registry knows
//	/api/csrf                   the CSRF token for state-changing requests
//	POST /api/jobs/{id}/retry   retry a failed or cancelled job (and what it cancelled)
//	POST /api/jobs/{id}/cancel  cancel an unfinished job
//	POST /api/flows/{id}/cancel cancel every unfinished job of a flow
//	POST /api/jobs/{id}/remove  delete a finished job's flow (development only)
//	POST /api/jobs/retry-failed retry every failed job (?type= narrows)
//	POST /api/jobs/bulk         {"action": "retry"|"cancel"|"remove", "ids": [...]}: up
//	                            to 1000 jobs; {"ok", "failed", "results": [{"id", "ok",
//	                            "error"}]} says what became of each (remove: development only)
//	POST /api/queues/{q}/pause  stop runners claiming from queue q; /resume undoes it
//	POST /api/clean             delete finished flows older than ?olderThan=DURATION
//	POST /api/clear             delete the whole namespace (development only)
//	POST /api/enqueue           {"message": envelope, "options": {...}, "after": [ids]}
//	/livez, /readyz, /metrics   probes (no auth) and Prometheus metrics
//
// Dashboard pages: / (overview), /failed, /jobs, /jobs/{id}, /flows/{id},
// /runners, /charts, /cleanup and /queue-test, served from embedded assets and kept live over
// /api/events.
//
// # Security
//
// Requests are admitted by a bearer token (Config.Token) or HTTP basic auth
// (Config.Username/Password). With neither configured the handler serves only
// loopback clients and logs so; forwarding headers are ignored, and a reverse
// proxy on the same host connects from loopback, so put the monitor behind a
// proxy only with auth configured. State-changing requests are POST only and
// pass net/http's CrossOriginProtection; unless they carry the bearer token
// they must also send the per-process token from /api/csrf (or the page's
// meta tag) in the X-CSRF-Token header. Config.ReadOnly refuses every POST
// with 403, and remove and clear need Config.Development. Job data is
// escaped wherever it is shown: JSON escapes <, > and &, templates use
// html/template, the script writes text with textContent only, and a strict
// Content-Security-Policy forbids inline script.
//
// # Pictures
//
// A picture draws at most 300 boxes and twice as many edges (?boxes= sets
// 2 to 1,000; dag/render's Options.MaxBoxes), whatever the flow's size or
// ?siblings asks: a larger flow is collapsed further, and the response
// then carries X-Trellis-Collapsed, key=value pairs of what was drawn
// ("siblings=2; boxes=297; edges=296; nodes=5011; not-drawn=0;
// max-boxes=300; max-edges=600"), and the picture's title says so in a
// line. The process draws at most two pictures at once: a request waits
// up to 2 s for its turn, then gets 503 with Retry-After: 1. A request
// whose client goes away stops at the next stage (reading the flow,
// laying it out, waiting for Graphviz, drawing the PNG); a Graphviz layout
// itself runs to its end, which the box limit keeps short.
//
// # Cost
//
// Every job is in a sorted set kept by the state machine: ready, delayed and
// active jobs in the sets the engine works from, blocked and finished ones
// in an index per state, queue and type ordered by the time they entered
// it. /api/jobs reads one page from those sets (flow.Inspector.List), in
// O(page) whatever the number of jobs kept: active jobs first, then ready
// ones in the order they start, delayed ones soonest due, then blocked and
// finished ones latest first. A page ends with the cursor of the next one,
// which stays valid while jobs change state. A search (?q=, ?flow=) reads
// the listing's jobs in that order and keeps the matches: a page reads at
// most 1,000 jobs and may hold fewer than ?limit= with a cursor to go on
// from; total is then -1 until the last page. ?q= that is a job's ID shows
// that job at once.
//
// /api/failures and retry-failed read the failed index, at most
// Config.ScanLimit jobs. Jobs written by a Trellis without the indexes are
// in none of them: the counters show that, and the listings then SCAN the
// namespace's node hashes (O(keys in the database), bounded by
// Config.ScanLimit) until `trellis reindex` (flow.Inspector.Reindex) puts
// them in their indexes or retention removes them. Counts, stats,
// health, job and flow detail and the event stream never scan.
package monitor
