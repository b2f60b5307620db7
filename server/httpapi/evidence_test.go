package httpapi_test

import (
	"net/http"
	"net/url"
	"testing"
)

// TestTimesAtTheEdges: 0001-01-01T00:00:00Z is a time like any other (not
// "since: required"), and a question about the future (a range starting,
// or a moment, after the collector's clock) is refused naming the
// parameter, instead of answered with the sessions open now.
func TestTimesAtTheEdges(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	for _, path := range []string{"/api/v1/logon-sessions", "/api/v1/server-sessions"} {
		resp, body := f.get(t, path, url.Values{"since": {"0001-01-01T00:00:00Z"}, "until": {"0001-01-02T00:00:00Z"}})
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s over the first day of year 1: %s %s; want 200", path, resp.Status, body)
		}
		resp, body = f.get(t, path, url.Values{"since": {"9999-01-01T00:00:00Z"}, "until": {"9999-01-02T00:00:00Z"}})
		wantError(t, resp, body, http.StatusBadRequest, "since: 9999-01-01T00:00:00Z is in the future")
	}
	resp, body := f.get(t, "/api/v1/export", url.Values{"kind": {"logon"}, "since": {"9999-01-01T00:00:00Z"}, "until": {"9999-01-02T00:00:00Z"}})
	wantError(t, resp, body, http.StatusBadRequest, "since: 9999-01-01T00:00:00Z is in the future")
	resp, body = f.get(t, "/api/v1/who", url.Values{"host": {fileServer}, "at": {"9999-01-01T00:00:00Z"}})
	wantError(t, resp, body, http.StatusBadRequest, "at: 9999-01-01T00:00:00Z is in the future")
	resp, body = f.get(t, "/api/v1/who", url.Values{"host": {fileServer}, "at": {"0001-01-01T00:00:00Z"}})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("who at year 1: %s %s; want 200", resp.Status, body)
	}
}
