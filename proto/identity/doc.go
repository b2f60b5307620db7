// Package identity is the part of the sessionaudit protocol that agent and
// collector share outside the protobuf messages: how a certificate names an
// agent and the machine it runs on, the one canonical form of a machine
// GUID, how an agent asks for a certificate and proves that it held the
// previous one, and the TLS parameters of the gRPC connection.
//
// Identity lives only in URI subject alternative names that the collector's
// CA writes:
//
//	sessionaudit://agent/<agent id>      agent certificates
//	sessionaudit://host/<machine GUID>   agent certificates
//
// The collector's CA (server/pki) issues and verifies certificates with
// these names; the agent (agent/uplink) reads them back from the
// certificate it was given. Both import this package and nothing of each
// other. docs/design/ holds the protocol record that describes it.
package identity
