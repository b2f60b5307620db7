// Package pki issues and checks the certificates that identify sessionaudit
// agents, analysts and the collector.
//
// Two certificate authorities with separate keys are in play: the agent CA,
// which signs agents' client certificates (and usually the collector's server
// certificate), and the analyst CA, which signs analysts' client
// certificates. Either can be the built-in CA made by NewCA or an enterprise
// intermediate loaded by LoadCA.
//
// Identity lives only in URI subject alternative names that the CA writes;
// nothing the requester puts in a certificate signing request reaches the
// certificate but its public key:
//
//	sessionaudit://agent/<agent id>              agent certificates
//	sessionaudit://host/<machine GUID>           agent certificates
//	sessionaudit://analyst/<name>?role=<role>    analyst certificates
//
// A collector trusts the name only after checking which CA issued the
// certificate (Trust.VerifyAgent, Trust.VerifyAnalyst): an agent certificate
// carrying an analyst name is refused because the analyst CA did not sign it.
// docs/design/0003-security.md holds the threat model behind these rules.
package pki
