package jsonobj

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func members(b string) (map[string]string, []string, bool) {
	m := map[string]string{}
	var keys []string
	ok := Members([]byte(b), func(k string, v []byte) bool {
		m[k] = string(v)
		keys = append(keys, k)
		return true
	})
	return m, keys, ok
}

func TestMembers(t *testing.T) {
	m, keys, ok := members(` { "a" : {"x":"}]\"{","y":[1,{"z":null}]} , "b":"q\"\\","c": -1.5e3 ,"d":[],"e":true}  `)
	require.True(t, ok)
	require.Equal(t, []string{"a", "b", "c", "d", "e"}, keys)
	require.Equal(t, `{"x":"}]\"{","y":[1,{"z":null}]}`, m["a"])
	require.Equal(t, `"q\"\\"`, m["b"])
	require.Equal(t, `-1.5e3`, m["c"])
	require.Equal(t, `[]`, m["d"])
	require.Equal(t, `true`, m["e"])

	_, keys, ok = members(`{}`)
	require.True(t, ok)
	require.Empty(t, keys)
	for _, b := range []string{`[]`, `"x"`, `null`, `{"a\u0062":1}`, `{"é":1}`, `{"a":1,"b":2,"a":3}`, `{"1":1,"2":2,"3":3,"4":4,"5":5,"6":6,"7":7,"8":8,"9":9}`} {
		_, _, ok = members(b)
		require.False(t, ok, b)
	}
	// fn stops the walk
	require.False(t, Members([]byte(`{"a":1,"b":2}`), func(string, []byte) bool { return false }))
}

func TestString(t *testing.T) {
	s, ok := String([]byte(`"héllo"`))
	require.True(t, ok)
	require.Equal(t, "héllo", s)
	for _, v := range []string{`"a\nb"`, "\"\xff\"", `x`, `"`, `1`} {
		_, ok := String([]byte(v))
		require.False(t, ok, v)
	}
}

func TestStrings(t *testing.T) {
	s, ok := Strings([]byte(`[ "a" , "b"]`))
	require.True(t, ok)
	require.Equal(t, []string{"a", "b"}, s)
	s, ok = Strings([]byte(`[]`))
	require.True(t, ok)
	require.Equal(t, []string{}, s)
	for _, v := range []string{`["a\"b"]`, `["a",1]`, `{}`, `"a"`} {
		_, ok := Strings([]byte(v))
		require.False(t, ok, v)
	}
}

// FuzzMembers checks Members against encoding/json: on every valid object
// it walks, it reports the members json.Unmarshal finds, byte for byte.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":"}","b":[{"c":"]"}]}`, ` {"x" : null , "y":{}} `, `{"a":"\\"}`, `{"a":1,"a":2}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) || !strings.HasPrefix(strings.TrimLeft(s, " \t\r\n"), "{") {
			return
		}
		got, keys, ok := members(s)
		if !ok {
			return // a key with an escape or beyond ASCII, repeated keys, too many
		}
		var want map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(s), &want))
		require.Len(t, keys, len(want))
		for k, v := range want {
			require.Equal(t, string(v), got[k], k)
		}
	})
}
