package httpapi

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sessionaudit/sessionaudit/proto/limits"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/rows"
)

// parse reads and checks the query string against the route's table: every
// parameter known, single unless repeatable, of bounded length, valid
// UTF-8 without control characters, required ones present, enumerations
// and integers in range; then the format, page size and page token.
func (c *call) parse() *apiError {
	raw := c.r.URL.RawQuery
	if len(raw) > maxQuery {
		return invalidArgument("query string: %d bytes, more than %d", len(raw), maxQuery)
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return invalidArgument("query string: %v", err)
	}
	c.q = q
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p, ok := c.route.param(name)
		if !ok {
			return invalidArgument("unknown parameter %q: %s takes %s", name, c.route.Path, c.route.paramNames())
		}
		vals := q[name]
		switch {
		case len(vals) > 1 && !p.Repeated:
			return invalidArgument("%s: given %d times; it takes one value", name, len(vals))
		case len(vals) > maxTypes:
			return invalidArgument("%s: given %d times, more than %d", name, len(vals), maxTypes)
		}
		for _, v := range vals {
			if err := checkValue(p, v); err != "" {
				return invalidArgument("%s: %s", name, err)
			}
		}
	}
	for _, p := range c.route.Params {
		if p.Required && strings.TrimSpace(q.Get(p.Name)) == "" {
			return invalidArgument("%s: is required", p.Name)
		}
	}
	c.format = c.route.Formats[0]

	if f := q.Get("format"); f != "" {
		c.format = f
	}
	if v := q.Get("page_size"); v != "" {
		n, _ := strconv.Atoi(v) // checkValue checked it
		c.pageSize = int32(n)
	}
	c.digest = questionDigest(c.route.Path, q)
	if t := q.Get("page_token"); t != "" {
		st, err := decodePageToken(t)
		switch {
		case err != nil:
			return invalidArgument("page_token: not a page token of this API")
		case st.Digest != c.digest:
			return invalidArgument("page_token: from another query or other parameters; pass it back with the other parameters unchanged")
		}
		c.token, c.fixed = st.Token, st.Times
	}
	return nil
}

// checkValue checks one value of p, returning what is wrong or "".
func checkValue(p Param, v string) string {
	switch {
	case len(v) > p.MaxLength:
		return fmt.Sprintf("%d bytes, more than %d", len(v), p.MaxLength)
	case !utf8.ValidString(v):
		return "not valid UTF-8"
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return "contains a control character"
	}
	if p.Type == "integer" {
		n, err := strconv.Atoi(v)
		if err != nil || n < p.Minimum || n > p.Maximum {
			return fmt.Sprintf("%q: want an integer %d..%d", v, p.Minimum, p.Maximum)
		}
	}
	if len(p.Enum) > 0 && !slices.Contains(p.Enum, v) {
		return fmt.Sprintf("%q: want one of %s", v, strings.Join(p.Enum, ", "))
	}
	return ""
}

// get returns the value of a single-valued parameter, "" when absent.
func (c *call) get(name string) string { return c.q.Get(name) }

// str returns a name-like parameter, trimmed.
func (c *call) str(name string) string { return strings.TrimSpace(c.q.Get(name)) }

// time returns the moment a time parameter stands for; def when absent
// (for until: now). A moment fixed by the page token wins, so that the
// pages of one question share their "now".
func (c *call) time(name string, defNow bool) time.Time {
	v := c.get(name)
	var t time.Time
	if v != "" {
		var err error
		if t, err = rows.ParseTime(v, c.now); err != nil {
			c.fail(name, "%v", err)
			return time.Time{}
		}
	} else if defNow {
		t = c.now
	} else {
		return time.Time{}
	}
	if ns, ok := c.fixed[name]; ok {
		t = time.Unix(0, ns).UTC()
	}
	if t.Year() < 1 || t.Year() > 9999 {
		c.fail(name, "%s is outside the years 1..9999", t.Format(time.RFC3339))
		return time.Time{}
	}
	c.times[name] = t.UnixNano()
	return t
}

// timeRange returns since and until, checked: since before until, at most
// limits.MaxQuerySpan apart.
func (c *call) timeRange() (since, until time.Time) {
	since = c.time("since", false)
	until = c.time("until", true)
	if c.err != nil {
		return
	}
	switch {
	case !until.After(since):
		c.fail("until", "%s is not after since %s", until.Format(time.RFC3339), since.Format(time.RFC3339))
	case until.Sub(since) > limits.MaxQuerySpan:
		c.fail("until", "the range %s..%s is longer than %d days", since.Format(time.RFC3339), until.Format(time.RFC3339),
			limits.MaxQuerySpanDays)
	}
	return
}

// account returns the account parameter, checked to be DOMAIN\name.
func (c *call) account() string {
	v := c.str("account")
	if v == "" {
		return ""
	}
	domain, name, ok := strings.Cut(v, `\`)
	if !ok || strings.TrimSpace(domain) == "" || strings.TrimSpace(name) == "" {
		c.fail("account", `%q: want DOMAIN\name, e.g. CORP\alice`, v)
	}
	return v
}

// types returns the logon types of the repeated type parameter.
func (c *call) types() []pb.LogonType {
	var out []pb.LogonType
	for _, v := range c.q["type"] {
		t, err := pb.ParseLogonType(v)
		if err != nil {
			c.fail("type", "%v", err)
			return nil
		}
		out = append(out, t)
	}
	return out
}

// duration returns a duration parameter; 0 when absent.
func (c *call) duration(name string) time.Duration {
	v := c.get(name)
	if v == "" {
		return 0
	}
	d, err := rows.ParseDuration(v)
	if err != nil {
		c.fail(name, "%v", err)
	}
	return d
}

// absent fails for each named parameter that was given: filters of the
// other kind of an export.
func (c *call) absent(why string, names ...string) {
	for _, n := range names {
		if _, ok := c.q[n]; ok {
			c.fail(n, "%s", why)
		}
	}
}

// pageState is what this API's page token carries.
type pageState struct {
	// Digest identifies the question (route and parameters).
	Digest string `json:"d"`
	// Times are the moments the time parameters resolved to on the first
	// page, in Unix nanoseconds.
	Times map[string]int64 `json:"t,omitempty"`
	// Token is the QueryService's page token.
	Token string `json:"g"`
}

const pageTokenPrefix = "p1."

// questionDigest identifies a question: the route and its parameters but
// the page's own (page_token, page_size, format).
func questionDigest(path string, q url.Values) string {
	rest := url.Values{}
	for k, v := range q {
		if k != "page_token" && k != "page_size" && k != "format" {
			rest[k] = v
		}
	}
	sum := sha256.Sum256([]byte(path + "?" + rest.Encode()))
	return hex.EncodeToString(sum[:12])
}

func decodePageToken(s string) (pageState, error) {
	var st pageState
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, pageTokenPrefix))
	if err != nil || !strings.HasPrefix(s, pageTokenPrefix) {
		return st, fmt.Errorf("not a page token")
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.Token == "" {
		return st, fmt.Errorf("not a page token")
	}
	return st, nil
}

// nextToken wraps the QueryService's next page token; "" on the last page.
func (c *call) nextToken(grpcToken string) string {
	if grpcToken == "" {
		return ""
	}
	b, _ := json.Marshal(pageState{Digest: c.digest, Times: c.times, Token: grpcToken})
	return pageTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}
