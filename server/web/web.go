// Package web is the analysts' web UI: static files (HTML, one stylesheet,
// one script; no framework, no build step, no request to anywhere but the
// collector) embedded in the collector and served at "/" of its HTTP
// listener, beside the HTTP API at /api/ that the script calls.
//
// The UI signs in with an API token, which it keeps in the tab's
// sessionStorage and sends as "Authorization: Bearer" on each API call;
// never in a URL or a cookie, so that a shared link carries the question and
// not the credentials. Every view is a hash route (#/timeline?account=...)
// that can be shared, and offers the API's CSV of its rows.
//
// The script inserts data only as text (textContent, SVG elements made with
// createElementNS), never as markup, and the pages need no inline script or
// style, so they run under the strict Content-Security-Policy that Handler
// sets.
package web

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/sessionaudit/sessionaudit/server/httpapi"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is the policy Handler sets on every response
// (httpapi's, for the whole HTTP listener): only the collector's own
// scripts, styles and API, no framing, no inline code.
const ContentSecurityPolicy = httpapi.ContentSecurityPolicy

// Handler serves the UI's files: index.html at "/", app.js and app.css
// beside it, 404 for anything else. Each response carries the security
// headers of the HTTP API contract (Content-Security-Policy, nosniff, no
// referrer, no framing); only GET and HEAD are allowed.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic("web: embedded static directory missing: " + err.Error())
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		httpapi.SetSecurityHeaders(h)
		// The files change only with the collector's binary; revalidate so
		// that an upgrade is seen at once.
		h.Set("Cache-Control", "no-cache")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method "+r.Method+" not allowed: the web UI serves GET and HEAD", http.StatusMethodNotAllowed)
			return
		}
		files.ServeHTTP(w, r)
	})
}
