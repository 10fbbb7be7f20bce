// Package redistest starts redis-server processes of this machine on free
// loopback ports and stops them by PID: a plain server (with AOF, TLS,
// passwords, ACLs as the flags say), a Redis Cluster of them, a Sentinel,
// and a capture of log records. The fault tests use them (stopped at their
// cleanup), and so does the benchmark's own Redis (Start, Stop). They need
// the redis-server and redis-cli binaries on PATH.
package redistest
