package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/trellisflow/trellis/dag"

	"github.com/trellisflow/trellis/internal/jsonobj"
)

// encodeData is json.Marshal(sp), written by hand: the payload is already
// JSON (json.Marshal would copy and re-validate it), and on a 100,000-node
// enqueue the reflection cost more than the rest of the encoding.
func encodeData(sp *dag.Spec) []byte {
	out := make([]byte, 0, len(sp.Payload)+64+40*len(sp.Parents))
	out = append(out, `{"e":`...)
	if len(sp.Payload) == 0 {
		out = append(out, "null"...)
	} else {
		out = append(out, sp.Payload...)
	}
	if len(sp.Parents) > 0 {
		out = append(out, `,"p":[`...)
		for i, p := range sp.Parents {
			if i > 0 {
				out = append(out, ',')
			}
			out = appendJSONString(out, p)
		}
		out = append(out, ']')
	}
	if b := sp.Backoff; b != (dag.Backoff{}) {
		out = append(out, `,"bo":{`...)
		n := len(out)
		comma := func() {
			if len(out) > n {
				out = append(out, ',')
			}
		}
		if b.Kind != "" {
			out = appendJSONString(append(out, `"k":`...), string(b.Kind))
		}
		if b.Base != 0 {
			comma()
			out = strconv.AppendInt(append(out, `"b":`...), int64(b.Base), 10)
		}
		if b.Max != 0 {
			comma()
			out = strconv.AppendInt(append(out, `"m":`...), int64(b.Max), 10)
		}
		if b.Jitter {
			comma()
			out = append(out, `"j":true`...)
		}
		if b.Name != "" {
			comma()
			out = appendJSONString(append(out, `"n":`...), b.Name)
		}
		out = append(out, '}')
	}
	if sp.Timeout != 0 {
		out = strconv.AppendInt(append(out, `,"to":`...), int64(sp.Timeout), 10)
	}
	if sp.When != "" {
		out = appendJSONString(append(out, `,"w":`...), sp.When)
	}
	if sp.Trace != "" {
		out = appendJSONString(append(out, `,"tr":`...), sp.Trace)
	}
	if sp.Label != "" { // last: identityHash leaves it out by its length
		out = appendJSONString(append(out, `,"lb":`...), sp.Label)
	}
	return append(out, '}')
}

// decodeData is json.Unmarshal(b, sp) for a data blob, without the
// reflection, for the blobs encodeData writes; anything else (and every
// error) goes through encoding/json. Payload aliases b.
func decodeData(b []byte, sp *dag.Spec) error {
	var d dag.Spec
	if jsonobj.Decode(b, func(key string, v []byte) (ok bool) {
		switch key {
		case "e":
			d.Payload, ok = v, true
		case "p":
			d.Parents, ok = jsonobj.Strings(v)
		case "bo":
			ok = decodeBackoff(v, &d.Backoff)
		case "to":
			ok = jsonDuration(v, &d.Timeout)
		case "w":
			d.When, ok = jsonobj.String(v)
		case "tr":
			d.Trace, ok = jsonobj.String(v)
		case "lb":
			d.Label, ok = jsonobj.String(v)
		}
		return ok
	}) {
		sp.Payload, sp.Parents, sp.Backoff, sp.Timeout, sp.When, sp.Trace, sp.Label = d.Payload, d.Parents, d.Backoff, d.Timeout, d.When, d.Trace, d.Label
		return nil
	}
	return json.Unmarshal(b, sp)
}

func decodeBackoff(v []byte, b *dag.Backoff) bool {
	return jsonobj.Members(v, func(key string, v []byte) (ok bool) {
		switch key {
		case "k":
			var k string
			k, ok = jsonobj.String(v)
			b.Kind = dag.BackoffKind(k)
		case "b":
			ok = jsonDuration(v, &b.Base)
		case "m":
			ok = jsonDuration(v, &b.Max)
		case "j":
			b.Jitter, ok = string(v) == "true", string(v) == "true" || string(v) == "false"
		case "n":
			b.Name, ok = jsonobj.String(v)
		}
		return ok
	})
}

// jsonDuration reads a JSON integer as encoding/json reads it into a
// time.Duration.
func jsonDuration(v []byte, d *time.Duration) bool {
	n, err := strconv.ParseInt(string(v), 10, 64)
	*d = time.Duration(n)
	return err == nil
}

// appendJSONString appends s as a JSON string. s is valid UTF-8 (IDs and
// conditions are checked); quotes, backslashes and control characters are
// escaped, everything else is copied.
func appendJSONString(out []byte, s string) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c < 0x20:
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}

func decodeNode(id string, h map[string]string) (*dag.Node, error) {
	n := &dag.Node{State: dag.State(h["st"])}
	if err := decodeData([]byte(h["d"]), &n.Spec); err != nil {
		return nil, fmt.Errorf("dag: node %q: corrupt data: %w", id, err)
	}
	n.ID = id
	n.FlowID = decodeMeta(&n.Spec, h["m"])
	n.Attempt, _ = strconv.Atoi(h["at"])
	n.Stalls, _ = strconv.Atoi(h["sl"])
	if n.State == dag.Blocked {
		n.Pending, _ = strconv.Atoi(h["pe"])
	}
	if c := h["c"]; c != "" {
		n.Children = strings.Split(c, sep)
		for i, id := range n.Children {
			n.Children[i] = strings.TrimPrefix(id, fanIn)
		}
	}
	if r := h["r"]; r != "" {
		n.Result = json.RawMessage(r)
	}
	if eh := h["eh"]; eh != "" {
		for _, e := range strings.Split(eh, sep) {
			var ei dag.ErrorInfo
			if json.Unmarshal([]byte(e), &ei) == nil {
				n.Errors = append(n.Errors, ei)
			}
		}
	}
	if e := h["er"]; e != "" {
		var ei dag.ErrorInfo
		if json.Unmarshal([]byte(e), &ei) == nil {
			n.Error = &ei
		}
	}
	n.Reason, n.Cause, n.Expanded, n.Logs, n.Batch = h["why"], h["cz"], h["ex"] == "1", h["lg"], h["bt"]
	if tk := h["tk"]; tk != "" {
		if i := strings.LastIndex(tk, ":"); i > 0 {
			if j := strings.LastIndex(tk[:i], ":"); j > 0 {
				n.Worker = tk[:j]
			}
		}
	}
	n.Timeline = parseTimeline(h["tl"])
	return n, nil
}

// decodeMeta fills the fields packed in a node's meta (see meta) and
// returns its flow ID.
func decodeMeta(sp *dag.Spec, packed string) string {
	m := strings.Split(packed, sep)
	if len(m) < 7 {
		return ""
	}
	sp.Queue, sp.Type, sp.Policy = m[1], m[2], dag.Policy(m[3])
	sp.Priority, _ = strconv.Atoi(m[4])
	d, _ := strconv.ParseInt(m[5], 10, 64)
	sp.Delay = time.Duration(d) * time.Millisecond
	sp.MaxAttempts, _ = strconv.Atoi(m[6])
	if m[0] == "-" {
		return sp.ID
	}
	return m[0]
}

func parseTimeline(tl string) []dag.Transition {
	var out []dag.Transition
	for _, e := range strings.Split(tl, "|") {
		if e == "" {
			continue
		}
		f := strings.SplitN(e, ",", 5)
		if len(f) < 3 {
			continue
		}
		t := dag.Transition{To: dag.State(f[0]), At: fromMS(f[1])}
		t.Attempt, _ = strconv.Atoi(f[2])
		if len(f) >= 4 {
			t.Worker = f[3]
		}
		if len(f) == 5 {
			t.Batch = f[4]
		}
		out = append(out, t)
	}
	return out
}
