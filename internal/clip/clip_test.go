package clip

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestText(t *testing.T) {
	require.Equal(t, "short", Text("short", 100))
	long := strings.Repeat("é", 1000) // 2,000 bytes
	for _, max := range []int{64, 100, 101, 1999} {
		got := Text(long, max)
		require.LessOrEqual(t, len(got), max)
		require.True(t, utf8.ValidString(got), "cut between runes")
		require.Contains(t, got, "more bytes]")
		kept := strings.TrimSuffix(got[:strings.Index(got, "…")], "")
		require.Equal(t, long[:len(kept)], kept)
	}
	require.Equal(t, long, Text(long, 2000))
}
