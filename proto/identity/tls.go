package identity

import (
	"crypto/tls"
	"crypto/x509"
)

// NextProto is the ALPN protocol of every sessionaudit connection: gRPC over
// HTTP/2.
const NextProto = "h2"

// ClientTLSConfig returns the TLS configuration of an agent or analyst tool:
// TLS 1.3 only, the collector verified against serverCAs (never the system
// roots implicitly, never skipped) under serverName, and clientCert
// presented when not nil (nil for Enroll). A nil serverCAs trusts nothing.
func ClientTLSConfig(serverCAs *x509.CertPool, serverName string, clientCert *tls.Certificate) *tls.Config {
	if serverCAs == nil {
		serverCAs = x509.NewCertPool() // a nil RootCAs would mean the system roots
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    serverCAs,
		ServerName: serverName,
		NextProtos: []string{NextProto},
	}
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{*clientCert}
	}
	return cfg
}
