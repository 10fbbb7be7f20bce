package monitor

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"io/fs"
	"net/http"
	"strings"

	"github.com/trellisflow/trellis/dag"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

type pages struct {
	t      *template.Template
	assets http.Handler
}

func loadPages() (*pages, error) {
	t, err := template.New("").Funcs(template.FuncMap{
		"pretty": prettyJSON,
		"lower":  strings.ToLower,
		"join":   joinStates,
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(assetFS, "assets")
	if err != nil {
		return nil, err
	}
	return &pages{t: t, assets: http.StripPrefix("/assets/", http.FileServerFS(sub))}, nil
}

// joinStates spells states as the page's data-states attribute: space-separated.
func joinStates(sts []dag.State) string {
	parts := make([]string, len(sts))
	for i, s := range sts {
		parts[i] = string(s)
	}
	return strings.Join(parts, " ")
}

func prettyJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return unescapeHTML(buf.String())
}

// unescapeHTML turns encoding/json's \u003c, \u003e and \u0026 back into
// the characters, so people read the payload as sent; html/template escapes
// them for the page.
func unescapeHTML(s string) string {
	if !strings.Contains(s, `\u00`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+5 < len(s) && s[i+1] == 'u' {
			switch s[i+2 : i+6] {
			case "003c":
				b.WriteByte('<')
				i += 5
				continue
			case "003e":
				b.WriteByte('>')
				i += 5
				continue
			case "0026":
				b.WriteByte('&')
				i += 5
				continue
			}
		}
		if s[i] == '\\' && i+1 < len(s) {
			b.WriteString(s[i : i+2]) // keep any other escape, including \\, whole
			i++
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// pageData is what every page template receives.
type pageData struct {
	Page, Title, Base, CSRF, Namespace, ID string
	DefaultQueue                           string // the client's, which the queue test selects first
	ReadOnly, Development                  bool
	Job                                    *JobView
	States                                 []dag.State
}

var titles = map[string]string{
	"overview": "Overview", "failed": "Failed jobs", "jobs": "Jobs", "job": "Job",
	"flow": "Flow", "runners": "Runners", "cleanup": "Cleanup", "queue-test": "Queue test",
	"charts": "Charts",
}

func (h *Handler) data(r *http.Request, page string) pageData {
	return pageData{
		Page: page, Title: titles[page], Base: h.cfg.BasePath + "/", CSRF: h.csrf,
		Namespace: h.insp.Namespace(), ID: r.PathValue("id"), DefaultQueue: h.client.Config().DefaultQueue,
		ReadOnly: h.cfg.ReadOnly, Development: h.cfg.Development, States: dag.States,
	}
}

func (h *Handler) render(w http.ResponseWriter, status int, d pageData) {
	var buf bytes.Buffer
	if err := h.pages.t.ExecuteTemplate(&buf, "layout.html", d); err != nil {
		h.log.Error("trellis monitor: template", "page", d.Page, "err", err)
		writeError(w, http.StatusInternalServerError, "template: %s", err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (h *Handler) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { h.render(w, http.StatusOK, h.data(r, name)) }
}

// jobPage renders the job's data on the server too (escaped by
// html/template), so the page shows it even before the script runs.
func (h *Handler) jobPage(w http.ResponseWriter, r *http.Request) {
	d := h.data(r, "job")
	n, err := h.client.Job(r.Context(), d.ID)
	if err != nil {
		d.Title = "Job not found"
		h.render(w, http.StatusNotFound, d)
		return
	}
	v, err := h.detail(r.Context(), n)
	if err != nil { // the page without its relations and reasons; the script asks again
		h.log.Warn("trellis monitor: reading a job's parents, children and reasons failed", "job", n.ID, "err", err)
		v = toView(n, true)
	}
	d.Job = &v
	h.render(w, http.StatusOK, d)
}

func (h *Handler) asset(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	h.pages.assets.ServeHTTP(w, r)
}
