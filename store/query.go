package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/limits"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Page is one page of a query's results, in the query's order. NextCursor,
// when not empty, fetches the next page.
type Page[T any] struct {
	Items      []T
	NextCursor string
	// AmbiguousHosts lists the hosts the query's host selector named when it
	// named more than one (a name several hosts hold): Items mixes their
	// sessions, each naming its host. Nil when the selector named one host
	// or none, or the query has none.
	AmbiguousHosts []HostRef
}

// Presence is a page of WhoWasOn: the logon and server sessions of a host at
// one moment. Together they are ordered by start, logon before server.
type Presence struct {
	Logon      []LogonInterval
	Server     []ServerInterval
	NextCursor string
	// AmbiguousHosts is Page.AmbiguousHosts for the query's host.
	AmbiguousHosts []HostRef
}

// WhoWasOnQuery asks who was on a host at a moment.
type WhoWasOnQuery struct {
	// Host is the machine GUID, or the host name (case-insensitive, with or
	// without its domain). A name held by several hosts matches them all,
	// and the answer lists them (Presence.AmbiguousHosts).
	Host string
	// At is the moment. Sessions whose end is uncertain around At (At after
	// LastSeen but before EndBefore) are included: their End says so.
	At time.Time
	// PageSize is at most MaxPageSize; 0 means DefaultPageSize.
	PageSize int
	// Cursor is a previous page's NextCursor.
	Cursor string
}

// TimelineQuery asks for every logon session of an account over a range.
type TimelineQuery struct {
	// Account is "DOMAIN\name", case-insensitive.
	Account string
	// StartTime and EndTime bound the range [StartTime, EndTime): a session
	// is returned when its interval (up to EndBefore) overlaps it.
	StartTime, EndTime time.Time
	PageSize           int
	Cursor             string
}

// ServerSessionQuery asks for server sessions across the fleet, by source
// and/or destination. Empty filters match everything (an export).
type ServerSessionQuery struct {
	// FromComputer is the remote computer (case-insensitive).
	FromComputer string
	// UserName is the remote user (case-insensitive).
	UserName string
	// ToHost is the host the sessions were held to (name or machine GUID).
	ToHost             string
	StartTime, EndTime time.Time
	PageSize           int
	Cursor             string
}

// OpenSessionsQuery asks for the logon sessions open now, fleet-wide. Empty
// filters match everything.
type OpenSessionsQuery struct {
	// LogonTypes keeps only these raw WMI logon types.
	LogonTypes []uint32
	// AuthenticationPackage keeps only this package (case-insensitive).
	AuthenticationPackage string
	// Host keeps only this host (name or machine GUID).
	Host string
	// Account keeps only "DOMAIN\name" (case-insensitive).
	Account  string
	PageSize int
	Cursor   string
}

// LogonSessionsQuery asks for the logon sessions that overlap a range,
// across the fleet or on one host. Empty filters match everything.
type LogonSessionsQuery struct {
	// Host keeps only this host (name or machine GUID).
	Host string
	// Account keeps only "DOMAIN\name" (case-insensitive).
	Account string
	// LogonTypes keeps only these raw WMI logon types.
	LogonTypes []uint32
	// AuthenticationPackage keeps only this package (case-insensitive).
	AuthenticationPackage string
	// StartTime and EndTime bound the range [StartTime, EndTime): a session
	// is returned when its interval (up to EndBefore) overlaps it. Both are required.
	StartTime, EndTime time.Time
	PageSize           int
	Cursor             string
}

// HostsQuery lists hosts, ordered by machine GUID.
type HostsQuery struct {
	// StaleAfter, when positive, keeps only hosts whose stored history
	// (HostStatus.StoredUpTo) ends longer ago than this, by the store's
	// clock.
	StaleAfter time.Duration
	PageSize   int
	Cursor     string
}

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

func pageSize(n int) (int, error) {
	switch {
	case n == 0:
		return limits.DefaultPageSize, nil
	case n < 0 || n > limits.MaxPageSize:
		return 0, invalid("PageSize", "%d is outside 0..%d", n, limits.MaxPageSize)
	}
	return n, nil
}

// checkRange checks a query's range. The zero time is a time like any
// other here (0001-01-01T00:00:00Z, the first moment a protobuf Timestamp
// or an RFC 3339 time can name), not "absent": a range that forgets a
// bound fails the order or span checks, naming the bound.
func checkRange(start, end time.Time) error {
	switch {
	case !end.After(start):
		return invalid("EndTime", "%s is not after StartTime %s", end.UTC().Format(time.RFC3339), start.UTC().Format(time.RFC3339))
	case end.Sub(start) > limits.MaxQuerySpan:
		return invalid("EndTime", "the range %s..%s is longer than %s", start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), limits.MaxQuerySpan)
	}
	return nil
}

// cursor is the position after the last row of a page: (start, kind, id).
type cursor struct {
	start int64 // UnixMicro
	kind  int
	id    int64
}

const cursorPrefix = "c1:"

func (c cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString(
		[]byte(fmt.Sprintf("%s%d:%d:%d", cursorPrefix, c.start, c.kind, c.id)))
}

// decodeCursor returns the position of s; the zero cursor (before
// everything) for "".
func decodeCursor(s string) (cursor, error) {
	c := cursor{start: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro(), kind: -1, id: -1}
	if s == "" {
		return c, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || !strings.HasPrefix(string(b), cursorPrefix) {
		return c, invalid("Cursor", "not a cursor of this store")
	}
	parts := strings.Split(strings.TrimPrefix(string(b), cursorPrefix), ":")
	if len(parts) != 3 {
		return c, invalid("Cursor", "not a cursor of this store")
	}
	var e1, e2, e3 error
	c.start, e1 = strconv.ParseInt(parts[0], 10, 64)
	c.kind, e2 = strconv.Atoi(parts[1])
	c.id, e3 = strconv.ParseInt(parts[2], 10, 64)
	if e1 != nil || e2 != nil || e3 != nil {
		return c, invalid("Cursor", "not a cursor of this store")
	}
	return c, nil
}

func (c cursor) time() time.Time { return time.UnixMicro(c.start).UTC() }

// after returns the arguments of a "(start_time, id) > (...)" predicate for
// rows of kind: rows of a kind after the cursor's come from the cursor's
// start on, rows of a kind before it only after that start.
func (c cursor) after(kind int) (time.Time, int64) {
	switch {
	case c.kind == -1:
		return c.time(), c.id
	case kind > c.kind:
		return c.time(), -1
	case kind < c.kind:
		return c.time(), 1<<63 - 1
	}
	return c.time(), c.id
}

// splitAccount parses "DOMAIN\name".
func splitAccount(field, s string) (string, string, error) {
	i := strings.IndexByte(s, '\\')
	if i < 0 || i == len(s)-1 {
		return "", "", invalid(field, "%q is not DOMAIN\\name", s)
	}
	return s[:i], s[i+1:], nil
}

func (s *Store) accountID(ctx context.Context, field, acct string) (int32, bool, error) {
	domain, name, err := splitAccount(field, acct)
	if err != nil {
		return 0, false, err
	}
	var id int32
	err = s.pool.QueryRow(ctx, `SELECT account_id FROM account WHERE lower(domain) = lower($1) AND lower(name) = lower($2)`,
		domain, name).Scan(&id)
	if err == pgx.ErrNoRows {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("store: find account %q: %w", acct, err)
	}
	return id, true, nil
}

func (s *Store) labelsLike(ctx context.Context, v string) ([]int32, error) {
	rows, err := s.pool.Query(ctx, `SELECT label_id FROM label WHERE lower(value) = lower($1) ORDER BY label_id`, v)
	if err != nil {
		return nil, fmt.Errorf("store: find %q: %w", v, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("store: find %q: %w", v, err)
	}
	return ids, nil
}

// logonSelect wraps an inner query over logon_session aliased s (which
// must return s.* ordered and limited) with the joins that name things.
const logonSelect = `SELECT s.id, h.machine_guid, h.hostname, h.domain, s.boot_time, s.start_time,
	s.last_seen, s.end_before, h.logon_seen_at, s.logon_id, s.logon_type, coalesce(l.value, ''),
	a.domain, a.name, a.sid, coalesce(s.caption, ''), coalesce(s.description, ''), coalesce(s.name, ''),
	coalesce(s.status, ''), s.install_date, s.lingering_since
	FROM (%s) s JOIN host h ON h.host_id = s.host_id
	LEFT JOIN label l ON l.label_id = s.auth_package_id
	LEFT JOIN account a ON a.account_id = s.account_id
	ORDER BY s.start_time, s.id`

const serverSelect = `SELECT s.id, h.machine_guid, h.hostname, h.domain, s.start_time,
	s.last_seen, s.end_before, h.server_seen_at, c.value, u.value, coalesce(ct.value, ''), coalesce(t.value, ''),
	s.session_type, coalesce(s.caption, ''), coalesce(s.description, ''), coalesce(s.name, ''),
	coalesce(s.status, ''), s.install_date
	FROM (%s) s JOIN host h ON h.host_id = s.host_id
	JOIN label c ON c.label_id = s.computer_label
	JOIN label u ON u.label_id = s.user_label
	LEFT JOIN label ct ON ct.label_id = s.client_type_label
	LEFT JOIN label t ON t.label_id = s.transport_label
	ORDER BY s.start_time, s.id`

func end(lastSeen, endBefore, hostSeen pgtype.Timestamptz) End {
	if endBefore.InfinityModifier == pgtype.Infinity {
		return End{Open: true, LastSeen: nullTime(hostSeen)}
	}
	return End{LastSeen: nullTime(lastSeen), EndBefore: nullTime(endBefore)}
}

func optUint32(v *int64) *uint32 {
	if v == nil || *v < 0 || *v > 1<<32-1 {
		return nil
	}
	u := uint32(*v)
	return &u
}

func (s *Store) queryLogon(ctx context.Context, inner string, args ...any) ([]LogonInterval, error) {
	rows, err := s.pool.Query(ctx, fmt.Sprintf(logonSelect, inner), args...)
	if err != nil {
		return nil, fmt.Errorf("store: query logon sessions: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (LogonInterval, error) {
		var li LogonInterval
		var lastSeen, endBefore, hostSeen, install, lingering pgtype.Timestamptz
		var logonType *int64
		var domain, name, sid *string
		err := row.Scan(&li.ID, &li.Host.MachineGUID, &li.Host.Hostname, &li.Host.Domain, &li.BootTime,
			&li.Session.StartTime, &lastSeen, &endBefore, &hostSeen, &li.Session.LogonID, &logonType,
			&li.Session.AuthenticationPackage, &domain, &name, &sid, &li.Session.Caption,
			&li.Session.Description, &li.Session.Name, &li.Session.Status, &install, &lingering)
		if err != nil {
			return li, fmt.Errorf("store: read logon session: %w", err)
		}
		li.BootTime, li.Session.StartTime = li.BootTime.UTC(), li.Session.StartTime.UTC()
		li.Session.InstallDate = nullTime(install)
		li.Session.LingeringSince = nullTime(lingering)
		li.Session.LogonType = optUint32(logonType)
		if name != nil {
			li.Session.Account = &Account{Domain: *domain, Name: *name}
			if sid != nil {
				li.Session.Account.SID = *sid
			}
		}
		li.End = end(lastSeen, endBefore, hostSeen)
		return li, nil
	})
}

func (s *Store) queryServer(ctx context.Context, inner string, args ...any) ([]ServerInterval, error) {
	rows, err := s.pool.Query(ctx, fmt.Sprintf(serverSelect, inner), args...)
	if err != nil {
		return nil, fmt.Errorf("store: query server sessions: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (ServerInterval, error) {
		var si ServerInterval
		var lastSeen, endBefore, hostSeen, install pgtype.Timestamptz
		var sessionType *int64
		err := row.Scan(&si.ID, &si.Host.MachineGUID, &si.Host.Hostname, &si.Host.Domain, &si.StartTime,
			&lastSeen, &endBefore, &hostSeen, &si.Session.ComputerName, &si.Session.UserName,
			&si.Session.ClientType, &si.Session.TransportName, &sessionType, &si.Session.Caption,
			&si.Session.Description, &si.Session.Name, &si.Session.Status, &install)
		if err != nil {
			return si, fmt.Errorf("store: read server session: %w", err)
		}
		si.StartTime = si.StartTime.UTC()
		si.Session.InstallDate = nullTime(install)
		si.Session.SessionType = optUint32(sessionType)
		si.End = end(lastSeen, endBefore, hostSeen)
		return si, nil
	})
}

// WhoWasOn returns the logon and server sessions of a host at a moment,
// ordered by start (logon sessions first on a tie), then id.
func (s *Store) WhoWasOn(ctx context.Context, q WhoWasOnQuery) (Presence, error) {
	var p Presence
	n, err := pageSize(q.PageSize)
	if err != nil {
		return p, err
	}
	if q.Host == "" {
		return p, invalid("Host", "required")
	}
	c, err := decodeCursor(q.Cursor)
	if err != nil {
		return p, err
	}
	match, err := s.hostIDs(ctx, q.Host)
	if err != nil || len(match.ids) == 0 {
		return p, err
	}
	hosts := match.ids
	p.AmbiguousHosts = match.ambiguous
	lt, lid := c.after(0)
	logon, err := s.queryLogon(ctx, `SELECT * FROM logon_session s
		WHERE s.host_id = ANY($1) AND s.start_time <= $2 AND s.end_before > $2 AND (s.start_time, s.id) > ($3, $4)
		ORDER BY s.start_time, s.id LIMIT $5`, hosts, q.At, lt, lid, n+1)
	if err != nil {
		return p, err
	}
	st, sid := c.after(1)
	server, err := s.queryServer(ctx, `SELECT * FROM server_session s
		WHERE s.host_id = ANY($1) AND s.start_time <= $2 AND s.end_before > $2 AND (s.start_time, s.id) > ($3, $4)
		ORDER BY s.start_time, s.id LIMIT $5`, hosts, q.At, st, sid, n+1)
	if err != nil {
		return p, err
	}
	// Merge by (start, kind, id) and cut at n.
	var last cursor
	i, j := 0, 0
	for len(p.Logon)+len(p.Server) < n && (i < len(logon) || j < len(server)) {
		if j >= len(server) || (i < len(logon) && !logon[i].Session.StartTime.After(server[j].StartTime)) {
			p.Logon = append(p.Logon, logon[i])
			last = cursor{logon[i].Session.StartTime.UnixMicro(), 0, logon[i].ID}
			i++
		} else {
			p.Server = append(p.Server, server[j])
			last = cursor{server[j].StartTime.UnixMicro(), 1, server[j].ID}
			j++
		}
	}
	if i < len(logon) || j < len(server) {
		p.NextCursor = last.encode()
	}
	return p, nil
}

func logonPage(items []LogonInterval, n int) Page[LogonInterval] {
	if len(items) <= n {
		return Page[LogonInterval]{Items: items}
	}
	items = items[:n]
	l := items[n-1]
	return Page[LogonInterval]{Items: items, NextCursor: cursor{l.Session.StartTime.UnixMicro(), 0, l.ID}.encode()}
}

// AccountTimeline returns every logon session of an account, across the
// fleet, whose interval overlaps [StartTime, EndTime), ordered by start then id.
func (s *Store) AccountTimeline(ctx context.Context, q TimelineQuery) (Page[LogonInterval], error) {
	if q.Account == "" {
		return Page[LogonInterval]{}, invalid("Account", "required")
	}
	return s.LogonSessions(ctx, LogonSessionsQuery{Account: q.Account, StartTime: q.StartTime, EndTime: q.EndTime, PageSize: q.PageSize, Cursor: q.Cursor})
}

// LogonSessions returns the logon sessions, across the fleet or on one
// host, whose interval overlaps [StartTime, EndTime), filtered, ordered by start then
// id. It answers a host's timeline, an account's timeline and an export.
func (s *Store) LogonSessions(ctx context.Context, q LogonSessionsQuery) (Page[LogonInterval], error) {
	var none Page[LogonInterval]
	n, err := pageSize(q.PageSize)
	if err != nil {
		return none, err
	}
	if err := checkRange(q.StartTime, q.EndTime); err != nil {
		return none, err
	}
	c, err := decodeCursor(q.Cursor)
	if err != nil {
		return none, err
	}
	ct, cid := c.after(0)
	where := []string{"s.start_time < $2", "s.end_before > $1", "(s.start_time, s.id) > ($3, $4)"}
	args := []any{q.StartTime, q.EndTime, ct, cid}
	return s.listLogon(ctx, where, args, logonFilter{LogonTypes: q.LogonTypes, AuthenticationPackage: q.AuthenticationPackage,
		Host: q.Host, Account: q.Account}, n)
}

// logonFilter is the filters LogonSessions and OpenSessions share; empty
// ones match everything.
type logonFilter struct {
	LogonTypes            []uint32
	AuthenticationPackage string
	Host                  string
	Account               string
}

// listLogon returns the first n logon sessions, ordered by start then id,
// that meet the conditions where (whose parameters are args) and the
// filters f.
func (s *Store) listLogon(ctx context.Context, where []string, args []any, f logonFilter, n int) (Page[LogonInterval], error) {
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	ambiguous, ok, err := s.logonFilters(ctx, f, add)
	if err != nil || !ok {
		return Page[LogonInterval]{AmbiguousHosts: ambiguous}, err
	}
	args = append(args, n+1)
	items, err := s.queryLogon(ctx, fmt.Sprintf(`SELECT * FROM logon_session s WHERE %s
		ORDER BY s.start_time, s.id LIMIT $%d`, strings.Join(where, " AND "), len(args)), args...)
	if err != nil {
		return Page[LogonInterval]{}, err
	}
	p := logonPage(items, n)
	p.AmbiguousHosts = ambiguous
	return p, nil
}

// logonFilters adds f's conditions through add. It returns false when a
// filter names nothing the store knows, so that nothing can match, and the
// hosts f.Host named when it named several.
func (s *Store) logonFilters(ctx context.Context, f logonFilter, add func(cond string, v any)) (ambiguous []HostRef, ok bool, err error) {
	if len(f.LogonTypes) > 0 {
		types := make([]int64, len(f.LogonTypes))
		for i, t := range f.LogonTypes {
			types[i] = int64(t)
		}
		slices.Sort(types)
		add("s.logon_type = ANY($%d)", types)
	}
	if f.AuthenticationPackage != "" {
		ids, err := s.labelsLike(ctx, f.AuthenticationPackage)
		if err != nil || len(ids) == 0 {
			return nil, false, err
		}
		add("s.auth_package_id = ANY($%d)", ids)
	}
	if f.Host != "" {
		m, err := s.hostIDs(ctx, f.Host)
		if err != nil || len(m.ids) == 0 {
			return nil, false, err
		}
		ambiguous = m.ambiguous
		add("s.host_id = ANY($%d)", m.ids)
	}
	if f.Account != "" {
		id, found, err := s.accountID(ctx, "Account", f.Account)
		if err != nil || !found {
			return ambiguous, false, err
		}
		add("s.account_id = $%d", id)
	}
	return ambiguous, true, nil
}

// ServerSessions returns the server sessions, across the fleet, opened from
// a computer and/or by a user and/or to a host, whose interval overlaps
// [StartTime, EndTime), ordered by start then id.
func (s *Store) ServerSessions(ctx context.Context, q ServerSessionQuery) (Page[ServerInterval], error) {
	var none Page[ServerInterval]
	n, err := pageSize(q.PageSize)
	if err != nil {
		return none, err
	}
	if err := checkRange(q.StartTime, q.EndTime); err != nil {
		return none, err
	}
	c, err := decodeCursor(q.Cursor)
	if err != nil {
		return none, err
	}
	where := []string{"s.start_time < $2", "s.end_before > $1", "(s.start_time, s.id) > ($3, $4)"}
	ct, cid := c.after(1)
	args := []any{q.StartTime, q.EndTime, ct, cid}
	add := func(cond string, ids []int32) {
		args = append(args, ids)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.FromComputer != "" {
		ids, err := s.labelsLike(ctx, q.FromComputer)
		if err != nil || len(ids) == 0 {
			return none, err
		}
		add("s.computer_label = ANY($%d)", ids)
	}
	if q.UserName != "" {
		ids, err := s.labelsLike(ctx, q.UserName)
		if err != nil || len(ids) == 0 {
			return none, err
		}
		add("s.user_label = ANY($%d)", ids)
	}
	var ambiguous []HostRef
	if q.ToHost != "" {
		m, err := s.hostIDs(ctx, q.ToHost)
		if err != nil || len(m.ids) == 0 {
			return none, err
		}
		ambiguous = m.ambiguous
		add("s.host_id = ANY($%d)", m.ids)
	}
	args = append(args, n+1)
	items, err := s.queryServer(ctx, fmt.Sprintf(`SELECT * FROM server_session s WHERE %s
		ORDER BY s.start_time, s.id LIMIT $%d`, strings.Join(where, " AND "), len(args)), args...)
	if err != nil {
		return none, err
	}
	if len(items) <= n {
		return Page[ServerInterval]{Items: items, AmbiguousHosts: ambiguous}, nil
	}
	items = items[:n]
	l := items[n-1]
	return Page[ServerInterval]{Items: items, NextCursor: cursor{l.StartTime.UnixMicro(), 1, l.ID}.encode(), AmbiguousHosts: ambiguous}, nil
}

// OpenSessions returns the logon sessions open now, fleet-wide, filtered,
// ordered by start then id.
func (s *Store) OpenSessions(ctx context.Context, q OpenSessionsQuery) (Page[LogonInterval], error) {
	var none Page[LogonInterval]
	n, err := pageSize(q.PageSize)
	if err != nil {
		return none, err
	}
	c, err := decodeCursor(q.Cursor)
	if err != nil {
		return none, err
	}
	ct, cid := c.after(0)
	where := []string{"s.end_before = 'infinity'", "(s.start_time, s.id) > ($1, $2)"}
	args := []any{ct, cid}
	return s.listLogon(ctx, where, args, logonFilter{LogonTypes: q.LogonTypes, AuthenticationPackage: q.AuthenticationPackage,
		Host: q.Host, Account: q.Account}, n)
}

const hostCursorPrefix = "h1:"

// storedUpTo is the SQL of HostStatus.StoredUpTo for the host row h.
const storedUpTo = `CASE WHEN h.last_seen IS NULL THEN h.first_received ELSE least(h.last_seen, h.last_received) END`

// Hosts returns hosts with their last report and open session counts,
// ordered by machine GUID; with StaleAfter, only the stale ones.
func (s *Store) Hosts(ctx context.Context, q HostsQuery) (Page[HostStatus], error) {
	var none Page[HostStatus]
	n, err := pageSize(q.PageSize)
	if err != nil {
		return none, err
	}
	if q.StaleAfter < 0 {
		return none, invalid("StaleAfter", "%s is negative", q.StaleAfter)
	}
	after := ""
	if q.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || !strings.HasPrefix(string(b), hostCursorPrefix) {
			return none, invalid("Cursor", "not a host cursor of this store")
		}
		after = strings.TrimPrefix(string(b), hostCursorPrefix)
	}
	staleBefore := pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	if q.StaleAfter > 0 {
		staleBefore = pgtype.Timestamptz{Time: s.now().Add(-q.StaleAfter), Valid: true}
	}
	// Freshness is how far the stored history reaches (storedUpTo), not
	// the last receipt: a host whose reports are all taken for duplicates
	// is received but not stored.
	rows, err := s.pool.Query(ctx, `SELECT h.machine_guid, h.hostname, h.domain, h.os_caption, h.os_version, h.os_build,
			h.boot_time, h.agent_version, h.first_received, h.last_seen, h.last_received, `+storedUpTo+`, coalesce(h.agent_id, ''),
			(SELECT count(*) FROM logon_session s WHERE s.end_before = 'infinity' AND s.host_id = h.host_id),
			(SELECT count(*) FROM server_session s WHERE s.end_before = 'infinity' AND s.host_id = h.host_id),
			(SELECT count(*) FROM coverage_gap g WHERE g.host_id = h.host_id),
			(SELECT min(a.key_reuse_at) FROM agent a WHERE a.host_id = h.host_id AND a.disabled_at IS NULL),
			h.clock_skew_ms, h.clock_skew_at
		FROM host h WHERE h.machine_guid > $1 AND `+storedUpTo+` < $2
		ORDER BY h.machine_guid LIMIT $3`, after, staleBefore, n+1)
	if err != nil {
		return none, fmt.Errorf("store: list hosts: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (HostStatus, error) {
		var h HostStatus
		var lastSeen, keyReuse, skewAt pgtype.Timestamptz
		var skewMS *int64
		err := row.Scan(&h.Host.MachineGUID, &h.Host.Hostname, &h.Host.Domain, &h.Host.OSCaption, &h.Host.OSVersion,
			&h.Host.OSBuild, &h.Host.LastBootTime, &h.Host.AgentVersion, &h.FirstReceived, &lastSeen,
			&h.LastReceived, &h.StoredUpTo, &h.AgentID, &h.OpenLogonSessions, &h.OpenServerSessions, &h.CoverageGaps, &keyReuse,
			&skewMS, &skewAt)
		h.AgentKeyReuseAt = nullTime(keyReuse)
		if skewMS != nil {
			h.ClockSkew, h.ClockSkewAt = time.Duration(*skewMS)*time.Millisecond, nullTime(skewAt)
		}
		h.Host.LastBootTime = h.Host.LastBootTime.UTC()
		if h.Host.LastBootTime.Equal(unknownBoot) {
			h.Host.LastBootTime = time.Time{}
		}
		h.FirstReceived, h.LastReceived, h.LastSeen = h.FirstReceived.UTC(), h.LastReceived.UTC(), nullTime(lastSeen)
		h.StoredUpTo = h.StoredUpTo.UTC()
		return h, err
	})
	if err != nil {
		return none, fmt.Errorf("store: list hosts: %w", err)
	}
	if len(items) <= n {
		return Page[HostStatus]{Items: items}, nil
	}
	items = items[:n]
	return Page[HostStatus]{Items: items, NextCursor: base64.RawURLEncoding.EncodeToString(
		[]byte(hostCursorPrefix + items[n-1].Host.MachineGUID))}, nil
}
