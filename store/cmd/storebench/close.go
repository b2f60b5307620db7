package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/sessionaudit/sessionaudit/store"
)

// closeSameStart measures the calls that open, close, reopen and close
// again n logon and n server (SMB) sessions of one host that all started
// in the same second: the shape of a file server's burst of SMB sessions,
// or of a batch job's logons. Each step is one Ingest call with one full
// snapshot, timed alone; the collector gives a call 15 s
// (server.DefaultIngestTimeout) and a report carries at most 20,000
// sessions (server.DefaultMaxSessionsPerSnapshot). A last call carries the
// four snapshots at once, as an agent's backlog would.
//
// "reappear" is WMI's flicker at scale: sessions taken as ended are seen
// again, so the store reads their closed intervals (loadClosed) and reopens
// them (the update of rows in the monthly partitions).
func closeSameStart(ctx context.Context, s *store.Store, n int) {
	run := time.Now().UnixMicro()
	base := now.Add(-time.Hour)
	boot := base.Add(-48 * time.Hour)
	start := base.Add(-10 * time.Minute).Truncate(time.Second)
	sessions := func(obs time.Time) ([]store.LogonSession, []store.ServerSession) {
		ls := make([]store.LogonSession, n)
		ss := make([]store.ServerSession, n)
		active := uint32(obs.Sub(start) / time.Second)
		for i := range n {
			lt := uint32(3)
			ls[i] = store.LogonSession{LogonID: fmt.Sprintf("0x%x", 0x10000+i), LogonType: &lt, AuthenticationPackage: "Kerberos",
				StartTime: start, Account: &store.Account{Domain: "CONTOSO", Name: fmt.Sprintf("user%d", 1+i%*accounts)}}
			ss[i] = store.ServerSession{ComputerName: fmt.Sprintf("PC%05d", i), UserName: fmt.Sprintf("user%d", 1+i%*accounts),
				ActiveTime: &active, ClientType: "Windows 10"}
		}
		return ls, ss
	}
	snap := func(seq int, open bool) store.Report {
		obs := base.Add(time.Duration(seq) * time.Minute)
		r := store.Report{Sequence: uint64(seq), Kind: store.KindSnapshot, TakenAt: obs,
			Host: &store.Host{Hostname: "fs01", Domain: "contoso.local", LastBootTime: boot}}
		if open {
			r.LogonSessions, r.ServerSessions = sessions(obs)
		}
		return r
	}
	fmt.Printf("### Close of %d logon + %d server sessions sharing one start time (one host, one full snapshot per call)\n\n", n, n)
	fmt.Printf("| call | reports | sessions written | time |\n|---|---:|---:|---:|\n")
	call := func(name, guid string, written int, reports ...store.Report) {
		t := time.Now()
		res, err := s.Ingest(ctx, "close-"+guid, guid, reports)
		d := time.Since(t)
		if err != nil {
			log.Fatalf("storebench: %s: %v", name, err)
		}
		if len(res.Applied) != len(reports) {
			log.Fatalf("storebench: %s: applied %v of %d reports", name, res.Applied, len(reports))
		}
		fmt.Printf("| %s | %d | %d | **%s** |\n", name, len(reports), written, d.Round(time.Millisecond))
	}
	guid := func(h int) string { return fmt.Sprintf("c1053000-%04x-4000-8000-%012x", h, uint64(run)&0xffffffffffff) }
	call("open", guid(1), 2*n, snap(1, true))
	call("close", guid(1), 2*n, snap(2, false))
	call("reappear (read closed, reopen)", guid(1), 2*n, snap(3, true))
	call("close again", guid(1), 2*n, snap(4, false))
	call("all four in one call (another host)", guid(2), 2*n, snap(1, true), snap(2, false), snap(3, true), snap(4, false))
	fmt.Println()
}
