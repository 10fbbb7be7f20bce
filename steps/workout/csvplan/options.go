package csvplan

import "fmt"

// Options steer Parse. A nil *Options means the defaults.
type Options struct {
	// ClientID and TrainerID are the plan's when the file has no client_id
	// or trainer_id column, or leaves it empty. Default none: the column is
	// then required.
	ClientID, TrainerID string
	// MaxRows is the most exercise rows a file may hold. Default 10,000.
	MaxRows int
	// MaxField is the most bytes in one field. Default 2,000.
	MaxField int
	// MaxBytes is the most bytes read from the input. Default 16 MiB.
	MaxBytes int64
	// MaxProblems is how many problems the error lists; the rest are only
	// counted. Default 100.
	MaxProblems int
}

// WithDefaults returns a copy of o (nil allowed) with zero fields filled.
func (o *Options) WithDefaults() Options {
	var c Options
	if o != nil {
		c = *o
	}
	if c.MaxRows == 0 {
		c.MaxRows = 10_000
	}
	if c.MaxField == 0 {
		c.MaxField = 2_000
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 16 << 20
	}
	if c.MaxProblems == 0 {
		c.MaxProblems = 100
	}
	return c
}

func (o Options) validate() error {
	switch {
	case o.MaxRows < 0:
		return fmt.Errorf("csvplan: Options.MaxRows is %d; it must be positive", o.MaxRows)
	case o.MaxField < 0:
		return fmt.Errorf("csvplan: Options.MaxField is %d; it must be positive", o.MaxField)
	case o.MaxBytes < 0:
		return fmt.Errorf("csvplan: Options.MaxBytes is %d; it must be positive", o.MaxBytes)
	case o.MaxProblems < 0:
		return fmt.Errorf("csvplan: Options.MaxProblems is %d; it must be positive", o.MaxProblems)
	}
	return nil
}
