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
	enrollments    *prometheus.CounterVec   // result
	nameClashes    prometheus.Counter       // enrollments taking another host's name
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
)

func newMetrics(reg *prometheus.Registry, agentsConnected func() float64) *metrics {
	m := &metrics{
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionaudit_batches_total",
			Help: "Ingest calls by result: ok, resync, invalid, unauthenticated, denied, too_many_in_flight, unavailable, store_rejected (acknowledged, but the store refused some reports).",
		}, []string{"result"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionaudit_reports_total",
			Help: "Reports received in accepted batches, by kind (full, delta, heartbeat) and outcome (applied, duplicate, rejected).",
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
	reg.MustRegister(m.batches, m.reports, m.sessions, m.ingest, m.storeErrors, m.enrollments, m.nameClashes, m.heartbeatGroup,
		m.renewals, m.queries, m.queryTime, m.connections, m.refusedConn, m.plaintext,
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
