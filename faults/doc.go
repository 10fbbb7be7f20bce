// Package faults holds Trellis's fault, security, Redis Cluster and fuzz
// tests (package faults_test). The redis-server processes they start on
// free loopback ports and stop by PID, the Cluster made of them and the log
// capture are package internal/redistest's.
//
// The tests need the redis-server and redis-cli binaries on PATH; they never
// touch the shared Redis at REDIS_URL. RELIABILITY.md at the repository root
// lists what each test proves and the figures its last run measured.
package faults
