package monitor

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPrettyJSONShowsCharactersAsSent(t *testing.T) {
	raw, err := json.Marshal(map[string]string{"a": `<b> & \u003c "q"`})
	require.NoError(t, err)
	require.Contains(t, string(raw), `\u003cb\u003e \u0026 \\u003c`)
	// <, > and & come back; an escaped backslash followed by u003c stays as it was
	require.Equal(t, "{\n  \"a\": \"<b> & \\\\u003c \\\"q\\\"\"\n}", prettyJSON(raw))
	require.Equal(t, "not json", prettyJSON(json.RawMessage("not json")))
	require.Equal(t, "", prettyJSON(nil))
}
