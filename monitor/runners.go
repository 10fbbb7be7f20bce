package monitor

import (
	"cmp"
	"net/http"
	"slices"
	"time"

	"github.com/trellisflow/trellis/dag"
)

// RunnersView is the body of /api/runners: the live runners, those whose
// last heartbeat is within the health's RunnerTimeout.
type RunnersView struct {
	CheckedAt      time.Time       `json:"checkedAt"`
	TimeoutSeconds float64         `json:"timeoutSeconds"`
	Runners        []dag.Heartbeat `json:"runners"` // by host, then ID
}

func (h *Handler) runners(w http.ResponseWriter, r *http.Request) {
	now, err := h.client.Now(r.Context()) // Redis's clock: the one heartbeats are stamped with
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	timeout := h.cfg.Thresholds.RunnerTimeout
	rs, err := h.insp.Runners(r.Context(), now.Add(-timeout))
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	host := func(hb dag.Heartbeat) string {
		if hb.Info == nil {
			return ""
		}
		return hb.Info.Host
	}
	slices.SortFunc(rs, func(a, b dag.Heartbeat) int {
		return cmp.Or(cmp.Compare(host(a), host(b)), cmp.Compare(a.ID, b.ID))
	})
	for i := range rs {
		rs[i].LastSeen = rs[i].LastSeen.UTC()
	}
	writeJSON(w, http.StatusOK, RunnersView{CheckedAt: now.UTC(), TimeoutSeconds: timeout.Seconds(), Runners: rs})
}
