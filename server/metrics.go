package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the collector's Prometheus series; docs/design/0004-collector.md
// lists them.
type metrics struct {
	batches        *prometheus.CounterVec   // result
	reports        *prometheus.CounterVec   // kind
	sessions       *prometheus.CounterVec   // kind
	ingest         prometheus.Histogram     // seconds in the store
	heartbeatGroup prometheus.Histogram     // heartbeats offered to one grouped store statement
	storeErrors    prometheus.Counter       // store failures not caused by input
	quarantined    prometheus.Counter       // batches quarantined after repeated store failures (quarantine.go)
	coverageGaps   *prometheus.CounterVec   // reason
	lostReports    *prometheus.CounterVec   // reason
	enrollments    *prometheus.CounterVec   // result
	nameClashes    prometheus.Counter       // enrollments taking another host's name
	renameClashes  prometheus.Counter       // hosts renaming themselves to another host's name
	keyReuse       *prometheus.CounterVec   // method: calls refused with a superseded certificate
	anomalies      *prometheus.CounterVec   // field: ingest anomalies (immutable history kept)
	renewals       *prometheus.CounterVec   // result
	queries        *prometheus.CounterVec   // method, code
	queryTime      *prometheus.HistogramVec // method
	connections    prometheus.Gauge
	refusedConn    prometheus.Counter
	plaintext      prometheus.Gauge
}

// Batch results, the values of sessionaudit_batches_total{result}.
const (
	resultOK            = "ok"
	resultResync        = "resync"
	resultInvalid       = "invalid"
	resultUnauth        = "unauthenticated"
	resultDenied        = "denied"
	resultTooMany       = "too_many_in_flight"
	resultUnavailable   = "unavailable"
	resultStoreRejected = "store_rejected"
	resultQuarantined   = "quarantined"
	// outcomeQuarantined is sessionaudit_reports_total{outcome} of a
	// quarantined report.
	outcomeQuarantined = "quarantined"
)

func newMetrics(reg *prometheus.Registry, agentsConnected func() float64) *metrics {
	m := &metrics{
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionaudit_batches_total",
			Help: "Ingest calls by result: ok, resync, invalid, unauthenticated, denied, too_many_in_flight, unavailable, store_rejected (acknowledged, but the store refused some reports), quarantined (acknowledged without being stored after repeated store failures).",
		}, []string{"result"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionaudit_reports_total",
			Help: "Reports received in accepted batches, by kind (full, delta, heartbeat) and outcome (applied, duplicate, rejected, quarantined).",
		}, []string{"kind", "outcome"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionaudit_sessions_total",
			Help: "Sessions carried by applied reports, by kind (logon, server).",
		}, []string{"kind"}),
		ingest: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sessionaudit_ingest_seconds",
			Help:    "Time the store took to commit one batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		coverageGaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionaudit_coverage_gaps_total",
			Help: "Coverage gaps recorded for hosts, by reason (spool_damage: an agent's spool lost reports to damage on disk).",
		}, []string{"reason"}),
		lostReports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionaudit_lost_reports_total",
			Help: "Reports agents lost before delivering them, as named by the coverage gaps recorded, by reason.",
		}, []string{"reason"}),
		quarantined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionaudit_batches_quarantined_total",
			Help: "Batches set aside after repeated store failures: acknowledged without being stored, kept in quarantined_batch, a coverage gap recorded for the host. Alert on any increase.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionaudit_store_errors_total",
			Help: "Store calls that failed for a reason other than the input (database down, timeout).",
		}),
		heartbeatGroup: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sessionaudit_heartbeat_group_size",
			Help:    "Heartbeats offered to one grouped store statement (those it does not apply take the ordinary path).",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}),
		nameClashes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionaudit_enrollment_name_clashes_total",
			Help: "Enrollments whose host name and domain were those of another host with an enabled agent (possible fake host).",
		}),
		renameClashes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionaudit_rename_name_clashes_total",
			Help: "Hosts that reported a new host name another host holds (possible fake host; queries by that name are ambiguous).",
		}),
		keyReuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionaudit_agent_key_reuse_total",
			Help: "Calls refused because they presented a superseded agent certificate after its successor was used (agent key in use twice), by method.",
		}, []string{"method"}),
		anomalies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionaudit_ingest_anomalies_total",
			Help: "Reports that would have changed immutable history (a boot moved back, sessions of a boot the host had left), by field; applied without that change.",
		}, []string{"field"}),
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionaudit_enrollments_total",
			Help: "Enroll calls by result.",
		}, []string{"result"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionaudit_renewals_total",
			Help: "Renew calls by result.",
		}, []string{"result"}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionaudit_queries_total",
			Help: "Query calls by method and gRPC code.",
		}, []string{"method", "code"}),
		queryTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sessionaudit_query_seconds",
			Help:    "Time to answer one query.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"method"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sessionaudit_connections_open",
			Help: "Open client connections (agents and analysts).",
		}),
		refusedConn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionaudit_connections_refused_total",
			Help: "Connections closed at once because MaxConnections were open.",
		}),
		plaintext: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sessionaudit_insecure_plaintext",
			Help: "1 when the collector serves without TLS (development only).",
		}),
	}
	reg.MustRegister(m.batches, m.reports, m.sessions, m.ingest, m.storeErrors, m.quarantined, m.coverageGaps, m.lostReports, m.enrollments, m.nameClashes, m.heartbeatGroup,
		m.renewals, m.queries, m.queryTime, m.connections, m.refusedConn, m.plaintext, m.renameClashes, m.keyReuse, m.anomalies,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sessionaudit_agents_connected",
			Help: "Agents that made an authenticated call within the active-agent window (default 5 minutes).",
		}, agentsConnected))
	return m
}

// newRegistry returns a registry with the Go runtime and process metrics.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
