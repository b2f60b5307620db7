package store

import "time"

// applyLate applies a report not newer than the host's newest observation
// (docs/design/0002-storage.md, "Late reports"). It only adds what does not
// conflict with newer knowledge: a session that was never stored becomes a
// closed interval ending before the host's next complete observation, and a
// closed interval's end bounds are tightened. Open intervals, the host's
// facts, boot and last-seen times are left alone.
func (h *hostIntervals) applyLate(r *Report) {
	nextLogon, nextServer := h.nextComplete(r.TakenAt)
	if boot := h.lateBoot(r); !boot.IsZero() {
		h.lateLogons(r, boot, nextLogon)
	}
	h.lateServers(r, nextServer)
}

// lateBoot is the boot the logon sessions of late report r belong to: the
// report's own when it names another one, the current one otherwise, and
// zero (an earlier boot that cannot be named) when r was observed before the
// current boot without naming its own.
func (h *hostIntervals) lateBoot(r *Report) time.Time {
	boot := h.currentBoot()
	switch {
	case r.Host != nil && !r.Host.LastBootTime.IsZero():
		if absDur(r.Host.LastBootTime.Sub(boot)) > BootJitter {
			boot = r.Host.LastBootTime
		}
	case r.TakenAt.Before(boot):
		boot = time.Time{}
	}
	return boot
}

// nextComplete is the next knowledge the host's state holds after obs, per
// class: its newest complete observation, or the current boot if that is
// after obs and earlier. A session a late report shows and the state lacks
// ended before it.
func (h *hostIntervals) nextComplete(obs time.Time) (logon, server time.Time) {
	logon, server = h.logonSeenAt, h.serverSeenAt
	if h.boot.After(obs) {
		if h.boot.Before(logon) {
			logon = h.boot
		}
		if h.boot.Before(server) {
			server = h.boot
		}
	}
	return logon, server
}

// insideEnd says whether t lies strictly within the uncertain end
// (lastSeen, endBefore) of a closed interval, where a late observation
// tightens it.
func insideEnd(lastSeen, endBefore, t time.Time) bool {
	return lastSeen.Before(t) && t.Before(endBefore)
}

// lateLogons applies the logon sessions of late report r in boot: an unknown
// session becomes a closed interval ending before next; a closed one it
// shows or names as ended gets a tighter last_seen or end_before.
func (h *hostIntervals) lateLogons(r *Report, boot, next time.Time) {
	obs := r.TakenAt
	for i := range r.LogonSessions {
		ls := &r.LogonSessions[i]
		k := lk(boot, ls.LogonID)
		if _, ok := h.logonOpen[k]; ok {
			continue // a newer observation saw it
		}
		if row, ok := h.logonClosed[k]; ok {
			if insideEnd(row.lastSeen, row.endBefore, obs) {
				row.lastSeen, row.dirty = obs, true
			}
			continue
		}
		if !next.After(obs) {
			continue // nothing newer to bound its end
		}
		row := h.newLogonRow(boot, ls, obs)
		row.lastSeen, row.endBefore = closeBounds(row.sess.StartTime, obs, next)
		h.logonClosed[k] = row
		h.logonRows = append(h.logonRows, row)
	}
	for _, id := range r.EndedLogonIDs {
		if row, ok := h.logonClosed[lk(boot, id)]; ok && insideEnd(row.lastSeen, row.endBefore, obs) {
			row.endBefore, row.dirty = obs, true
		}
	}
}

// lateServers is lateLogons for server sessions. A session without
// ActiveTime cannot be placed in time and is skipped.
func (h *hostIntervals) lateServers(r *Report, next time.Time) {
	obs := r.TakenAt
	for i := range r.ServerSessions {
		ss := &r.ServerSessions[i]
		p := h.peer(ss.ComputerName, ss.UserName)
		start, known := serverStart(ss, obs)
		if !known {
			continue
		}
		if matchOpen(h.serverOpen[p], start, true, nil) != nil {
			continue
		}
		if row := matchOpen(h.serverClosed[p], start, true, nil); row != nil {
			if insideEnd(row.lastSeen, row.endBefore, obs) {
				row.lastSeen, row.dirty = obs, true
			}
			continue
		}
		if !next.After(obs) {
			continue
		}
		row := h.newServerRow(p, start, ss)
		row.lastSeen, row.endBefore = closeBounds(start, obs, next)
		h.serverClosed[p] = append(h.serverClosed[p], row)
		h.serverRows = append(h.serverRows, row)
	}
	for _, k := range r.EndedServerSessions {
		for _, row := range h.serverClosed[h.peer(k.ComputerName, k.UserName)] {
			if insideEnd(row.lastSeen, row.endBefore, obs) && !row.start.After(obs) {
				row.endBefore, row.dirty = obs, true
			}
		}
	}
}
