package csvplan

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrInvalid matches every *Error: the file is not a valid plan.
	ErrInvalid = errors.New("csvplan: invalid plan CSV")
	// ErrLimit matches an *Error whose file broke a limit of Options
	// (rows, bytes); reading stopped there.
	ErrLimit = errors.New("csvplan: limit exceeded")
)

// Problem is one thing wrong with the file.
type Problem struct {
	// Line is the 1-based line of the file where the row (or field) starts;
	// 0 for a problem of the whole file.
	Line int
	// Column is the header name of the field ("reps"), or "" for a problem
	// of the whole row or file.
	Column string
	// Message says what is wrong, e.g. `"ten" is not a whole number`.
	Message string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d", p.Line)
	}
	if p.Column != "" {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "column %s", p.Column)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Error lists every problem found in a file, in the order of the file. It
// matches ErrInvalid, and ErrLimit when reading stopped at a limit.
type Error struct {
	// Problems holds the first Options.MaxProblems problems.
	Problems []Problem
	// Omitted counts the problems found past Options.MaxProblems.
	Omitted int
	limit   bool
}

func (e *Error) Error() string {
	n := len(e.Problems) + e.Omitted
	var b strings.Builder
	if n == 1 {
		b.WriteString("csvplan: 1 problem in the CSV:")
	} else {
		fmt.Fprintf(&b, "csvplan: %d problems in the CSV:", n)
	}
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	if e.Omitted > 0 {
		fmt.Fprintf(&b, "\n  … and %d more", e.Omitted)
	}
	return b.String()
}

// Is reports whether target is ErrInvalid, or ErrLimit for a file that
// broke a limit.
func (e *Error) Is(target error) bool {
	return target == ErrInvalid || (target == ErrLimit && e.limit)
}
