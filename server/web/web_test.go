package web_test

import (
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/sessionaudit/sessionaudit/server/web"
)

// TestHandler: the three files with their types and the security headers;
// 404 for anything else; only GET and HEAD.
func TestHandler(t *testing.T) {
	h := web.Handler()
	for _, tc := range []struct {
		method, path string
		status       int
		ctype, body  string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<script src="app.js" defer></script>`},
		{"GET", "/app.js", 200, "text/javascript; charset=utf-8", "'use strict'"},
		{"GET", "/app.css", 200, "text/css; charset=utf-8", "svg.timeline"},
		{"HEAD", "/app.js", 200, "text/javascript; charset=utf-8", ""},
		{"GET", "/nope.js", 404, "", ""},
		{"GET", "/../web.go", 404, "", ""},
		{"POST", "/", 405, "", ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		res := rec.Result()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, res.StatusCode, tc.status)
			continue
		}
		if tc.ctype != "" && res.Header.Get("Content-Type") != tc.ctype {
			t.Errorf("%s %s: Content-Type %q, want %q", tc.method, tc.path, res.Header.Get("Content-Type"), tc.ctype)
		}
		if !strings.Contains(string(body), tc.body) {
			t.Errorf("%s %s: body lacks %q", tc.method, tc.path, tc.body)
		}
		for k, want := range map[string]string{
			"Content-Security-Policy": web.ContentSecurityPolicy, "X-Content-Type-Options": "nosniff",
			"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
		} {
			if got := res.Header.Get(k); got != want {
				t.Errorf("%s %s: %s %q, want %q", tc.method, tc.path, k, got, want)
			}
		}
	}
}

// TestStaticFilesKeepTheRules: no inline script or style (the CSP forbids
// them), nothing loaded from elsewhere, and no way in the script to insert
// markup, evaluate text or keep the token anywhere but sessionStorage.
func TestStaticFilesKeepTheRules(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("static/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	html, js, css := read("index.html"), read("app.js"), read("app.css")
	for _, bad := range []struct {
		where, text string
		re          *regexp.Regexp
	}{
		{"index.html", html, regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)}, // a script with a body
		{"index.html", html, regexp.MustCompile(`(?i)\sstyle\s*=|<style`)},
		{"index.html", html, regexp.MustCompile(`(?i)\son[a-z]+\s*=`)},
		{"index.html", html, regexp.MustCompile(`(?i)(?:src|href)\s*=\s*"(?:https?:)?//`)},
		{"app.css", css, regexp.MustCompile(`(?i)url\(\s*["']?(?:https?:)?//|@import`)},
		{"app.js", js, regexp.MustCompile(`\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*'style'|\.cookie`)},
		{"app.js", js, regexp.MustCompile(`localStorage\.setItem\(TOKEN_KEY`)},
	} {
		if m := bad.re.FindString(bad.text); m != "" {
			t.Errorf("%s: %q breaks the rules (%s)", bad.where, m, bad.re)
		}
	}
	for _, tag := range regexp.MustCompile(`(?i)<script[^>]*>`).FindAllString(html, -1) {
		if !strings.Contains(tag, ` src="`) {
			t.Errorf("index.html: %s is an inline script", tag)
		}
	}
	for _, u := range regexp.MustCompile(`https?://[^\s'"]*`).FindAllString(js, -1) {
		if u != "http://www.w3.org/2000/svg" { // a namespace name, never fetched
			t.Errorf("app.js names %s: the UI makes no request outside the collector", u)
		}
	}
}
