// Package field checks the fields of the steps' messages against the
// bounds of the columns that store them (package schema), with errors that
// name the field (flow.FieldError), so that enqueue refuses what the
// database would.
package field

import (
	"strings"
	"unicode/utf8"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
)

// Text checks a string stored in a column: at most limit bytes, valid
// UTF-8 and no NUL byte, which PostgreSQL's text types refuse.
func Text(name, v string, limit int) error {
	switch {
	case len(v) > limit:
		return flow.FieldError(name, "is %d bytes, over the limit of %d", len(v), limit)
	case !utf8.ValidString(v):
		return flow.FieldError(name, "is not valid UTF-8")
	case strings.IndexByte(v, 0) >= 0:
		return flow.FieldError(name, "holds a NUL byte")
	}
	return nil
}

// Required is Text for a string that must hold more than white space.
func Required(name, v string, limit int) error {
	if strings.TrimSpace(v) == "" {
		return flow.FieldError(name, "is required")
	}
	return Text(name, v, limit)
}

// Count checks a whole number stored in an INTEGER column that must not
// be negative: 0 to schema.MaxInt.
func Count(name string, v int) error {
	switch {
	case v < 0:
		return flow.FieldError(name, "must not be negative, got %d", v)
	case v > schema.MaxInt:
		return flow.FieldError(name, "is %d, over the limit of %d", v, schema.MaxInt)
	}
	return nil
}

// First returns the first error of errs that is not nil.
func First(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
