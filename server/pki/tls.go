package pki

import (
	"crypto/tls"
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
