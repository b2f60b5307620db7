package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sessionaudit/sessionaudit/server/rows"
)

// defaultLimit is how many rows a listing fetches unless --limit says
// otherwise.
const defaultLimit = 1000

// output holds the output flags.
type output struct {
	json, csv, local, failEmpty bool
	limit                       int
}

// outputFlags declares the output flags of a listing command.
func (c *cli) outputFlags(cmd *command) {
	cmd.section("Output")
	cmd.Bool(&c.out.json, "json", "", false, "write one JSON document, shaped as the HTTP API's response")
	cmd.Bool(&c.out.csv, "csv", "", false, "write CSV with a header line (cells that a spreadsheet could take for a formula start with ')")
	cmd.Bool(&c.out.local, "local", "", false, "show times in the table in the local time zone instead of UTC")
	cmd.Int(&c.out.limit, "limit", "", defaultLimit, "fetch at most this many rows (0: all); stderr says when more matched")
	cmd.Bool(&c.out.failEmpty, "fail-empty", "", false, "exit with status 3 when nothing matched")
}

// checkOutput refuses contradictory output flags.
func (c *cli) checkOutput() error {
	if c.out.json && c.out.csv {
		return usagef("--json and --csv: choose one")
	}
	if c.out.limit < 0 {
		return usagef("--limit %d: want 0 (all) or more", c.out.limit)
	}
	return nil
}

// sanitize makes a value safe to print on a terminal: control characters
// (C0, DEL, C1 such as CSI), format characters (bidirectional overrides,
// zero-width characters) and invalid UTF-8 are written as Go escapes
// (\x1b, \u202e), so that a hostile host or account name can neither move
// the cursor, recolour or retitle the terminal, nor reorder what is shown.
func sanitize(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsPrint(r):
			b.WriteRune(r)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			q := strconv.QuoteRuneToASCII(r) // '\u202e'
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// cell is a table cell: sanitized, "-" when empty.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return sanitize(s)
}

// zone is where table times are shown.
func (c *cli) zone() *time.Location {
	if c.out.local {
		return c.loc
	}
	return time.UTC
}

// tableTime shows a row's time in the table: RFC 3339 to the second.
func (c *cli) tableTime(s string) string {
	if s == "" {
		return "-"
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return cell(s)
	}
	return t.In(c.zone()).Format(time.RFC3339)
}

// endCell shows how a session ended: "open", or "≤ T" — the session ended
// after LAST SEEN and at the latest at T (the first report without it); T is
// only a time of day when it is on LAST SEEN's date.
func (c *cli) endCell(open bool, lastSeen, endBefore string) string {
	if open {
		return "open"
	}
	eb, err := time.Parse(time.RFC3339Nano, endBefore)
	if err != nil {
		return cell(endBefore)
	}
	eb = eb.In(c.zone())
	if ls, err := time.Parse(time.RFC3339Nano, lastSeen); err == nil {
		ls = ls.In(c.zone())
		if ls.Year() == eb.Year() && ls.YearDay() == eb.YearDay() {
			return "≤ " + eb.Format(time.TimeOnly)
		}
	}
	return "≤ " + eb.Format(time.RFC3339)
}

// age shows how long ago t was, to the minute: 3d4h, 2h5m, 12m, <1m.
func age(t, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "-"
	case d < time.Minute:
		return "<1m"
	}
	days, rest := d/(24*time.Hour), d%(24*time.Hour)
	h, m := rest/time.Hour, (rest%time.Hour)/time.Minute
	switch {
	case days > 0:
		return fmt.Sprintf("%dd%dh", days, h)
	case h > 0:
		return fmt.Sprintf("%dh%dm", h, m)
	}
	return fmt.Sprintf("%dm", m)
}

func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

// logonTable writes logon sessions as a table.
func (c *cli) logonTable(w io.Writer, list []rows.Logon) error {
	tw := newTable(w, "HOST", "ACCOUNT", "TYPE", "PACKAGE", "LOGON ID", "START", "LAST SEEN", "END")
	for _, r := range list {
		fmt.Fprintln(tw, strings.Join([]string{cell(r.Host), cell(r.Account), cell(r.LogonType), cell(r.AuthenticationPackage),
			cell(r.LogonID), c.tableTime(r.Start), c.tableTime(r.LastSeen), c.logonEndCell(r)}, "\t"))
	}
	return tw.Flush()
}

// logonEndCell is endCell for a logon session, with "(lingering since T)"
// after the end of a session the agent saw lingering: no process left, kept
// by LSA because a token to it is open (docs/analyst-guide.md).
func (c *cli) logonEndCell(r rows.Logon) string {
	end := c.endCell(r.Open, r.LastSeen, r.EndBefore)
	if r.LingeringSince == "" {
		return end
	}
	return end + " (lingering since " + c.tableTime(r.LingeringSince) + ")"
}

// serverTable writes server (SMB) sessions as a table.
func (c *cli) serverTable(w io.Writer, list []rows.Server) error {
	tw := newTable(w, "HOST", "FROM", "USER", "CLIENT", "START", "LAST SEEN", "END")
	for _, r := range list {
		fmt.Fprintln(tw, strings.Join([]string{cell(r.Host), cell(r.FromComputer), cell(r.UserName), cell(r.ClientType),
			c.tableTime(r.Start), c.tableTime(r.LastSeen), c.endCell(r.Open, r.LastSeen, r.EndBefore)}, "\t"))
	}
	return tw.Flush()
}

// hostTable writes hosts as a table; SILENT is how long since the host's
// newest stored report (its LAST SEEN, HostStatus.last_seen).
func (c *cli) hostTable(w io.Writer, list []rows.Host) error {
	tw := newTable(w, "HOST", "DOMAIN", "OS", "AGENT", "LAST SEEN", "SILENT", "OPEN LOGON", "OPEN SMB")
	now := c.now()
	for _, r := range list {
		silent := "-"
		if t, err := time.Parse(time.RFC3339Nano, r.LastSeen); err == nil {
			silent = age(t, now)
		}
		fmt.Fprintln(tw, strings.Join([]string{cell(r.Host), cell(r.HostDomain), cell(r.OS), cell(r.AgentVersion),
			c.tableTime(r.LastSeen), silent, strconv.FormatInt(r.OpenLogonSessions, 10), strconv.FormatInt(r.OpenServerSessions, 10)}, "\t"))
	}
	return tw.Flush()
}

// The --json documents: the HTTP API's response shapes. Lists are never
// null; next_page_token is the token of the first page not fetched when
// --limit stopped the listing, "" otherwise.
type (
	logonDoc struct {
		LogonSessions []rows.Logon `json:"logon_sessions"`
		NextPageToken string       `json:"next_page_token"`
	}
	serverDoc struct {
		ServerSessions []rows.Server `json:"server_sessions"`
		NextPageToken  string        `json:"next_page_token"`
	}
	whoDoc struct {
		LogonSessions  []rows.Logon  `json:"logon_sessions"`
		ServerSessions []rows.Server `json:"server_sessions"`
		NextPageToken  string        `json:"next_page_token"`
	}
	hostDoc struct {
		Hosts         []rows.Host `json:"hosts"`
		NextPageToken string      `json:"next_page_token"`
	}
)

func writeJSON(w io.Writer, doc any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(doc)
}

func writeCSV[T any](w io.Writer, list []T) error {
	cw := rows.NewCSVWriter[T](w)
	if err := cw.Write(list...); err != nil {
		return err
	}
	return cw.Flush()
}

// nonNil returns an empty slice for nil, so that JSON shows [].
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// listing writes one list in the format the flags ask for, says on stderr
// when --limit cut it short, and returns errEmpty for an empty list under
// --fail-empty.
func listing[T any](c *cli, list []T, next string, doc func([]T, string) any, table func(io.Writer, []T) error, none string) error {
	var err error
	switch {
	case c.out.json:
		err = writeJSON(c.stdout, doc(nonNil(list), next))
	case c.out.csv:
		err = writeCSV(c.stdout, list)
	case len(list) == 0:
		_, err = fmt.Fprintln(c.stdout, none)
	default:
		err = table(c.stdout, list)
	}
	if err != nil {
		return fmt.Errorf("write the output: %w", err)
	}
	return c.finish(len(list), next)
}

// finish says on stderr that --limit cut the listing short, and returns
// errEmpty when n is 0 under --fail-empty.
func (c *cli) finish(n int, next string) error {
	if next != "" {
		fmt.Fprintf(c.stderr, "sessionaudit: stopped at --limit %d rows; more match: narrow the query or raise --limit (0: all)\n", c.out.limit)
	}
	if n == 0 && c.out.failEmpty {
		return errEmpty
	}
	return nil
}
