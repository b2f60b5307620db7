package wmi

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sessionaudit/sessionaudit/agent/source"
)

// smbConn is a fakeConn that also answers queries in another namespace:
// MSFT_SmbSession in source.NamespaceSMB gives rows, or err.
type smbConn struct {
	*fakeConn
	rows       []source.SmbSessionRow
	err        error
	namespaces []string
}

func (c *smbConn) QueryNamespace(namespace, wql string, dst any) error {
	c.namespaces = append(c.namespaces, namespace)
	if namespace != source.NamespaceSMB || classOf(wql) != source.ClassSmbSession {
		return errors.New("invalid namespace")
	}
	if c.err != nil {
		return c.err
	}
	*dst.(*[]source.SmbSessionRow) = append(*dst.(*[]source.SmbSessionRow), c.rows...)
	return nil
}

func newSMBSource(t *testing.T, f *fakeWMI, c *smbConn) *Source {
	t.Helper()
	c.fakeConn = &fakeConn{f: f}
	p := f.platform()
	p.dial = func() (conn, error) { return c, nil }
	s, err := newSource(Options{Logger: testLogger(t), Exit: noExit(t)}, c, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestServerSessionsFromSMB(t *testing.T) {
	f := newFakeWMI(t)
	u := func(v uint32) *uint32 { return &v }
	c := &smbConn{rows: []source.SmbSessionRow{
		{SessionId: 7, ClientComputerName: "[fe80::1]", ClientUserName: `CONTOSO\alice`, SecondsExists: u(30), Dialect: "3.1.1"},
		{SessionId: 8, ClientComputerName: "[fe80::1]", ClientUserName: `CONTOSO\alice`, SecondsExists: u(60), Dialect: "3.1.1"},
		{SessionId: 9, ClientComputerName: "10.0.0.5", ClientUserName: `CONTOSO\bob`, SecondsExists: u(5)},
	}}
	s := newSMBSource(t, f, c)
	snap, err := s.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(f.queried(), source.ClassServerSession) {
		t.Errorf("Win32_ServerSession queried although MSFT_SmbSession answered: %v", f.queried())
	}
	b := snap.GetServerSessionBuild()
	if b.GetSource() != source.ClassSmbSession || b.GetFallbackReason() != "" || b.GetRows() != 3 || b.GetDroppedDuplicateKey() != 1 {
		t.Errorf("build = %v", b)
	}
	got := snap.GetServerSessions()
	if len(got) != 2 || got[1].GetComputerName() != "fe80::1" || got[1].GetSmb().GetSessionId() != 8 || got[1].GetUserName() != `CONTOSO\alice` {
		t.Errorf("server sessions = %v", got)
	}
}

func TestServerSessionsFallBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error // of the MSFT_SmbSession query; nil: a conn without namespaces
		want string
	}{
		{"no SMB namespace", errors.New("Exception occurred. (Invalid namespace )"), "Invalid namespace"},
		{"query failed", errors.New("Access denied"), "Access denied"},
		{"connection without namespaces", nil, errNoNamespace.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeWMI(t)
			var s *Source
			if tc.err != nil {
				s = newSMBSource(t, f, &smbConn{err: tc.err})
			} else {
				s, _ = newTestSource(t, f, Options{})
			}
			c, err := s.Collect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Failures) != 0 || c.ServerSessionSource != source.ClassServerSession || len(c.ServerSessions) != 1 {
				t.Fatalf("collection = %+v", c)
			}
			if !strings.Contains(c.SmbFallbackReason, tc.want) || !strings.Contains(c.SmbFallbackReason, source.NamespaceSMB) {
				t.Errorf("fallback reason = %q, want it to name %q", c.SmbFallbackReason, tc.want)
			}
			snap, _ := source.BuildSnapshot(c)
			if b := snap.GetServerSessionBuild(); b.GetSource() != source.ClassServerSession || b.GetFallbackReason() != c.SmbFallbackReason {
				t.Errorf("build = %v", b)
			}
		})
	}
}
