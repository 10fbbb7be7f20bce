// Package embedded gives Trellis an in-process Redis (miniredis) for the
// examples, `trellis dev` and tests that must run with no services. It is
// not for production: nothing is persisted and one process holds it all.
package embedded
