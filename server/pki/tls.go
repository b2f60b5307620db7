package pki

import (
	"crypto/tls"
	"crypto/x509"
)

// ServerTLSConfig returns the collector's TLS configuration: TLS 1.3 only,
// serverCert as its certificate, and client certificates verified against
// trust.ClientCAs() when given (tls.VerifyClientCertIfGiven), because Enroll
// is called without one. The handshake thus refuses a certificate from any
// other CA, and admits a peer without one: every RPC but Enroll must call
// Trust.VerifyAgent or Trust.VerifyAnalyst and refuse the call on error.
// To rotate the server certificate without a restart, set GetCertificate on
// the result.
func ServerTLSConfig(serverCert tls.Certificate, trust *Trust) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    trust.ClientCAs(),
		NextProtos:   []string{"h2"},
	}
}

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
		NextProtos: []string{"h2"},
	}
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{*clientCert}
	}
	return cfg
}
