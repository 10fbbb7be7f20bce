// Package rowvalue writes the right-hand side of a row-value IN, as
// PostgreSQL and SQLite both take it: SQLite reads row values only from a
// subquery, so "(a, b) IN (VALUES (…), (…))" rather than "IN ((…), (…))".
package rowvalue

import (
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"
)

// Values is "VALUES (?, ?), (?, ?)…" with rows' values, every row as wide
// as the first: use it as "(x, y) IN (?)". rows must not be empty.
func Values(rows [][]any) schema.QueryWithArgs {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(rows[0])), ", ") + ")"
	args := make([]any, 0, len(rows)*len(rows[0]))
	for _, r := range rows {
		args = append(args, r...)
	}
	return bun.SafeQuery("VALUES "+strings.TrimSuffix(strings.Repeat(one+", ", len(rows)), ", "), args...)
}
