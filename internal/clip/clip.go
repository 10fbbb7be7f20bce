// Package clip shortens stored texts (error messages, stacks) to a limit,
// with a visible marker, on a UTF-8 boundary.
package clip

import (
	"strconv"
	"unicode/utf8"
)

// Text returns s when it is at most max bytes; else its longest prefix
// that fits, with the marker, in max bytes, cut between runes.
func Text(s string, max int) string {
	if len(s) <= max {
		return s
	}
	marker := func(rest int) string { return "… [cut: " + strconv.Itoa(rest) + " more bytes]" }
	keep := max - len(marker(len(s)))
	if keep < 0 {
		keep = 0
	}
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + marker(len(s)-keep)
}
