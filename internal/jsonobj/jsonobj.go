// Package jsonobj walks the members of a JSON object without reflection.
//
// The engine decodes two objects per job it runs: the node's data blob and
// the message envelope. encoding/json spends most of its time there on
// reflection; both objects have a handful of known members, so the decoders
// walk them with Decode and fall back to encoding/json for anything out of
// the ordinary (an escaped key, a null, a duplicate, a member they do not
// know), which keeps encoding/json's results and errors exactly.
package jsonobj

import (
	"encoding/json"
	"slices"
	"unicode/utf8"
)

// maxMembers is the most members an object Members walks may have.
const maxMembers = 8

// Decode walks the members of b with Members when b is valid JSON, and
// reports whether it walked them all; false leaves b to encoding/json.
func Decode(b []byte, fn func(key string, val []byte) bool) bool {
	return json.Valid(b) && Members(b, fn)
}

// Members calls fn with each member of the JSON object b, in order: the key
// (unquoted; keys must be ASCII without escapes) and the raw value. It stops
// when fn returns false and reports whether it walked the whole object.
// b must be valid JSON (json.Valid): Members finds where values end, it does
// not check them. It returns false when b is not an object, a key is not
// plain ASCII, a key repeats (encoding/json keeps the last one) or the
// object has more than maxMembers members: the callers leave those to
// encoding/json.
func Members(b []byte, fn func(key string, val []byte) bool) bool {
	var seen [maxMembers]string
	n := 0
	i := space(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = space(b, i+1)
	if i < len(b) && b[i] == '}' {
		return true
	}
	for i < len(b) && b[i] == '"' {
		end := i + 1
		for end < len(b) && b[end] != '"' {
			if b[end] == '\\' || b[end] >= utf8.RuneSelf {
				return false
			}
			end++
		}
		if end >= len(b) {
			return false
		}
		key := string(b[i+1 : end])
		if n == maxMembers || slices.Contains(seen[:n], key) {
			return false
		}
		seen[n] = key
		n++
		i = space(b, end+1)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = space(b, i+1)
		vend := skip(b, i)
		if vend <= i {
			return false
		}
		if !fn(key, b[i:vend]) {
			return false
		}
		i = space(b, vend)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			return true
		}
		if b[i] != ',' {
			return false
		}
		i = space(b, i+1)
	}
	return false
}

// String returns the JSON string v unquoted, when it has no escapes and is
// valid UTF-8 (encoding/json replaces invalid bytes).
func String(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	s := v[1 : len(v)-1]
	ascii := true
	for _, c := range s {
		if c == '\\' {
			return "", false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(s) {
		return "", false
	}
	return string(s), true
}

func space(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skip returns the index just after the valid JSON value at b[i].
func skip(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return str(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = str(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // a number, true, false or null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// str returns the index just after the string starting at b[i].
func str(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// Strings returns the JSON array of strings v, when none has an escape.
func Strings(v []byte) ([]string, bool) {
	i := space(v, 0)
	if i >= len(v) || v[i] != '[' {
		return nil, false
	}
	var out []string
	i = space(v, i+1)
	if i < len(v) && v[i] == ']' {
		return []string{}, space(v, i+1) == len(v)
	}
	for i < len(v) {
		end := skip(v, i)
		s, ok := String(v[i:end])
		if !ok {
			return nil, false
		}
		out = append(out, s)
		i = space(v, end)
		if i >= len(v) {
			return nil, false
		}
		if v[i] == ']' {
			return out, space(v, i+1) == len(v)
		}
		if v[i] != ',' {
			return nil, false
		}
		i = space(v, i+1)
	}
	return nil, false
}
