package store

import "time"

// closedQuery names the closed intervals the reports of a call may meet
// again (docs/design/0002-storage.md, "Ingest" step 4), for loadClosed to
// read: a session seen after it was taken as ended (WMI's stale or
// flickering rows), or sessions a late report mentions.
type closedQuery struct {
	// logonIDs are the LogonIds to look up; no closed interval of them that
	// matters started before logonFrom.
	logonIDs  []string
	logonFrom time.Time
	// computers are the label ids of the SMB computers to look up; no closed
	// interval of them that matters started before serverFrom.
	computers  []int32
	serverFrom time.Time
}

// empty says whether there is nothing to read.
func (q *closedQuery) empty() bool { return len(q.logonIDs) == 0 && len(q.computers) == 0 }

// lowerTo moves *t back to v when v is set and earlier (or *t unset).
func lowerTo(t *time.Time, v time.Time) {
	if !v.IsZero() && (t.IsZero() || v.Before(*t)) {
		*t = v
	}
}

// closedQuery returns the closed intervals the reports numbered above hwm
// may meet. Live sessions that are open, or that started after the last
// complete observation of their class, cannot have been stored as ended and
// are left out; once a report changes the boot, the open ones are read too
// (the boot change ends them, and a boot the host returns to may have
// intervals of the same keys, which are immutable and must be found).
func (h *hostIntervals) closedQuery(reports []Report, hwm uint64) closedQuery {
	var q closedQuery
	newest := h.lastSeen
	bootFrom := h.currentBoot()
	boot, bootChanged := h.currentBoot(), false
	openIDs := make(map[string]bool, len(h.logonOpen))
	for k := range h.logonOpen {
		openIDs[k.id] = true
	}
	for i := range reports {
		r := &reports[i]
		if r.Sequence <= hwm {
			continue
		}
		late := isLate(newest, r.TakenAt)
		if !late {
			newest = r.TakenAt
			if r.Host != nil && !r.Host.LastBootTime.IsZero() {
				if !boot.Equal(unknownBoot) && absDur(r.Host.LastBootTime.Sub(boot)) > BootJitter {
					bootChanged = true
				}
				boot = r.Host.LastBootTime
			}
		}
		q.addLogons(h, r, late, bootChanged, openIDs)
		if r.Host != nil && !r.Host.LastBootTime.IsZero() {
			lowerTo(&bootFrom, r.Host.LastBootTime)
		}
		q.addServers(h, r, late, bootChanged)
	}
	if !q.empty() {
		// A stored start is the session's StartTime, or the observation that
		// first saw it when StartTime was absent or clamped: never before its
		// boot (give or take a day for StartTimes stamped during boot).
		lowerTo(&q.logonFrom, bootFrom.Add(-24*time.Hour))
	}
	return q
}

// addLogons adds the logon sessions of r that may have a closed interval;
// readOpen: also those open now (r or a report before it changed the boot).
func (q *closedQuery) addLogons(h *hostIntervals, r *Report, late, readOpen bool, openIDs map[string]bool) {
	for _, ls := range r.LogonSessions {
		if !late && ((openIDs[ls.LogonID] && !readOpen) || ls.StartTime.After(h.logonSeenAt)) {
			continue
		}
		q.logonIDs = append(q.logonIDs, ls.LogonID)
		lowerTo(&q.logonFrom, ls.StartTime)
	}
	if late && len(r.EndedLogonIDs) > 0 {
		q.logonIDs = append(q.logonIDs, r.EndedLogonIDs...)
		lowerTo(&q.logonFrom, Earliest)
	}
}

// addServers adds the server sessions of r that may have a closed interval;
// readOpen: also those matching an open one (as addLogons).
func (q *closedQuery) addServers(h *hostIntervals, r *Report, late, readOpen bool) {
	if late {
		for _, k := range r.EndedServerSessions {
			q.computers = append(q.computers, h.ids.label(k.ComputerName))
			lowerTo(&q.serverFrom, Earliest)
		}
	}
	for i := range r.ServerSessions {
		ss := &r.ServerSessions[i]
		p := h.peer(ss.ComputerName, ss.UserName)
		start, known := serverStart(ss, r.TakenAt)
		if !late && ((!readOpen && matchOpen(h.serverOpen[p], start, known, nil) != nil) ||
			(known && start.After(h.serverSeenAt.Add(ServerStartJitter)))) {
			continue
		}
		q.computers = append(q.computers, p.computer)
		if known {
			lowerTo(&q.serverFrom, start.Add(-ServerStartJitter))
		} else {
			lowerTo(&q.serverFrom, Earliest)
		}
	}
}
