package server

import (
	"context"
	"log/slog"
	"strings"

	"github.com/sessionaudit/sessionaudit/store"
)

// ingestFindings raises what the store found in a batch it committed
// (docs/design/0003-security.md, the section of 2026-12-04):
//
//   - anomalies: reports that would have changed immutable history (a boot
//     moved back, sessions of a boot the host had left), applied without
//     that change: a WARN line each and sessionaudit_ingest_anomalies_total;
//   - a change of the host's name: a WARN line; when another host holds the
//     new host name, an ALERT (ERROR) and
//     sessionaudit_rename_name_clashes_total, as for an enrollment (C12),
//     since queries by that name now answer both hosts (marked ambiguous).
func (s *Server) ingestFindings(ctx context.Context, log *slog.Logger, a agentCaller, res store.IngestResult) {
	for _, n := range res.Anomalies {
		s.metrics.anomalies.WithLabelValues(n.Field).Inc()
		log.Warn("report would have changed immutable history: applied without that change",
			"sequence", n.Sequence, "field", n.Field, "change", n.Change)
	}
	r := res.Renamed
	if r == nil {
		return
	}
	log.Warn("host reported a new name", "from_hostname", r.From.Hostname, "from_domain", r.From.Domain,
		"hostname", r.To.Hostname, "domain", r.To.Domain)
	others, err := s.store.HostsNamed(ctx, r.To.Hostname, a.MachineGUID)
	if err != nil {
		log.Warn("could not check for hosts of the new name", "hostname", r.To.Hostname, "err", err)
		return
	}
	if len(others) == 0 {
		return
	}
	guids := make([]string, len(others))
	for i, o := range others {
		guids[i] = o.MachineGUID + " (" + o.Hostname + "." + o.Domain + ")"
	}
	s.metrics.renameClashes.Inc()
	log.Error("ALERT host renamed itself to a host name another host has (a fake host posing as a real one, or a re-imaged machine?); "+
		"queries by this name answer both, marked ambiguous",
		"from_hostname", r.From.Hostname, "from_domain", r.From.Domain, "hostname", r.To.Hostname, "domain", r.To.Domain,
		"other_machine_guids", strings.Join(guids, ","))
}
