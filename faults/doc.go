// Package faults holds Trellis's fault, security, Redis Cluster and fuzz
// tests (package faults_test) and the helpers they share: redis-server
// processes that a test starts on free loopback ports and stops by PID at
// cleanup, a Redis Cluster made of them, and a log capture.
//
// The tests need the redis-server and redis-cli binaries on PATH; they never
// touch the shared Redis at REDIS_URL. RELIABILITY.md at the repository root
// lists what each test proves and the figures its last run measured.
package faults
