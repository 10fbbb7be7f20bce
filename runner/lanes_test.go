package runner

import "testing"

func TestLanesSplit(t *testing.T) {
	for _, tc := range []struct{ c, lanes int }{{1, 1}, {10, 1}, {15, 1}, {16, 2}, {17, 2}, {50, 2}} {
		ls := lanes(tc.c)
		sum := 0
		for _, l := range ls {
			if l.size < 1 {
				t.Fatalf("c=%d: a lane of %d", tc.c, l.size)
			}
			sum += l.size
		}
		if len(ls) != tc.lanes || sum != tc.c || !ls[0].first {
			t.Fatalf("c=%d: %d lanes holding %d, want %d lanes holding %d", tc.c, len(ls), sum, tc.lanes, tc.c)
		}
	}
}
