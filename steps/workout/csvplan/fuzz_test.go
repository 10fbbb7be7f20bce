package csvplan

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParse checks that Parse never panics, that it either returns a valid
// message or an *Error with located problems, and that a parsed message
// survives Write and Parse unchanged. Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(header + "P,c,t,,1,A,1,S,1,Squat,3,5,60,90s,3-1-1-0,notes\n"))
	f.Add([]byte("\uFEFF" + header + "P,c,t,ph,1,A,1,S,1,Squat,3,5,,,,\r\nP,c,t,ph,1,A,2,T,1,Row,3,5,,,,\r\n"))
	f.Add([]byte(header + "P,c,t,,1,A,1,S,1,Squat,3,5,,,,\"a\r\nb\"\n"))
	opts := &Options{MaxRows: 200, MaxField: 256, MaxBytes: 1 << 16, MaxProblems: 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(bytes.NewReader(data), opts)
		if err != nil {
			require.Nil(t, m)
			require.ErrorIs(t, err, ErrInvalid)
			perr := err.(*Error)
			require.NotEmpty(t, perr.Problems)
			require.LessOrEqual(t, len(perr.Problems), opts.MaxProblems+1)
			for _, p := range perr.Problems {
				require.GreaterOrEqual(t, p.Line, 0)
				require.NotEmpty(t, p.Message)
			}
			return
		}
		require.NoError(t, m.Validate())
		require.NotEmpty(t, m.Phases)

		again, err := Parse(bytes.NewReader(data), opts)
		require.NoError(t, err)
		require.Equal(t, m, again, "the same file gives the same message")

		var buf bytes.Buffer
		require.NoError(t, Write(&buf, m))
		round, err := Parse(&buf, &Options{MaxRows: 200, MaxField: 256})
		require.NoError(t, err, "Write's output parses:\n%s", buf.String())
		require.Equal(t, m, round, "Write then Parse gives the message back")
	})
}
