package httpapi

import (
	"net/http"
	"strings"
)

// ContentSecurityPolicy is the Content-Security-Policy of every answer of
// the collector's HTTP listener: the web UI loads only its own scripts,
// styles and data, and cannot be framed.
const ContentSecurityPolicy = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// Site returns the collector's HTTP listener's handler: api under /api/
// and ui (the web UI, nil for none) at /, every answer with the security
// headers (Content-Security-Policy, X-Content-Type-Options: nosniff,
// Referrer-Policy: no-referrer, X-Frame-Options: DENY; over TLS,
// Strict-Transport-Security) and the API's with Cache-Control: no-store.
func Site(api, ui http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/", api)
	if ui != nil {
		mux.Handle("/", ui)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		SetSecurityHeaders(h)
		if r.TLS != nil {
			// Browsers that once reached the collector over HTTPS never
			// try it in clear again (not sent without TLS: dev mode).
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/") {
			h.Set("Cache-Control", "no-store")
			if r.URL.Path == "/api" {
				api.ServeHTTP(w, r)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// SetSecurityHeaders sets the headers every answer of the HTTP listener
// carries, the API's and the web UI's alike: the Content-Security-Policy,
// no MIME sniffing, no referrer, no framing.
func SetSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}
