package render

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/trellisflow/trellis/dag"
)

func TestScratchBig(t *testing.T) {
	f := bigFlow(50, 40, 50)
	join := node("join", "J", dag.Blocked, 0, 1)
	for _, n := range f.Nodes {
		join.Parents = append(join.Parents, n.ID)
	}
	f.Nodes = append(f.Nodes, join)
	t0 := time.Now()
	err := DOT(io.Discard, f, nil)
	fmt.Println(len(f.Nodes), err, time.Since(t0))
	t0 = time.Now()
	err = Mermaid(io.Discard, f, &Options{MaxSiblings: -1})
	fmt.Println(len(f.Nodes), err, time.Since(t0))
}
