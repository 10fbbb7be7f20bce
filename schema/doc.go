// Package schema holds the bun models of the workout planner and Trellis'
// own tables, the embedded SQL migrations that create them, and Open, which
// connects to PostgreSQL or SQLite from a URL.
//
// Migrate brings a database up to date; several workers may call it at once
// (on PostgreSQL they take turns on an advisory lock). The same migrations
// run on both dialects: they are written in the SQL both accept, with the
// few type names that differ filled in from a template.
package schema
