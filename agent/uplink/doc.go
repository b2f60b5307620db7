// Package uplink is the agent's side of the CollectorService: it enrolls
// the agent, keeps its certificate renewed, and delivers the spool's
// reports to the collector, backing off when the collector is down or
// pushes back.
//
// # Identity
//
// The agent's identity lives in a state directory (Options.StateDir, under
// ProgramData on Windows):
//
//	agent.key   the private key, PKCS#8 PEM, mode 0600
//	agent.crt   the client certificate and its CA chain, PEM, leaf first
//	agent.json  agent id, machine GUID, serial, not_after, renew_after
//
// The directory is restricted whenever the identity is loaded or stored:
// on Unix it must be owned by the agent's user and gets mode 0700; on
// Windows it is given to BUILTIN\Administrators with a protected DACL
// ("O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)") granting full control to
// SYSTEM and Administrators only, inherited by the files, and cutting off
// the read access ProgramData gives Users (docs/design/0003-security.md, A1). Taking
// ownership matters: ProgramData lets any user create a directory, and an
// owner can always rewrite the DACL. Temporary files are created anew
// (O_EXCL after removing a leftover), never written through a planted file
// or link. Each file is replaced crash-safely (temporary file,
// flush, rename, directory flush); a new key is written as agent.key.next
// and renamed last, so that after a crash at any point one of the two
// names holds the key of agent.crt, and loading finishes the rename.
//
// The certificate is the truth; agent.json only adds the collector's
// renew_after. A missing or damaged agent.json is rebuilt from the
// certificate (renewing at two thirds of its lifetime) with a warning. A
// missing, damaged or mismatched key or certificate cannot be repaired:
// the files are moved aside (".unusable-<unix time>") for an administrator
// and the agent enrolls again with its secret — which the collector refuses
// for a machine GUID already enrolled until an administrator allows it,
// the intended outcome for an agent that lost its key. An identity for
// another machine GUID (a cloned disk) is handled the same way.
//
// Client.EnsureIdentity loads or enrolls; an expired certificate (less
// than 30 days) is replaced by Enroll with a renewal proof (the expired
// certificate and a signature by its key), keeping the agent id. A refused
// proof is not followed by the secret, which would bring back an agent an
// administrator disabled. Client.MaybeRenew calls Renew once renew_after
// has passed, with its own backoff; the new certificate is stored before
// it is used, and put in use on a new connection while calls in flight
// finish on the old one. The TLS configuration reads the current
// certificate at every handshake.
//
// # Trust in the collector
//
// The collector is verified with identity.ClientTLSConfig (TLS 1.3, the
// certificate's name checked). Options.CAPool is the CA file of the Group
// Policy (config.Settings.CACertificate); Options.CAPins are SHA-256s of
// SubjectPublicKeyInfo (config.Settings.CAPins). With both, the chain must
// verify against the pool and hold a pinned key. With pins only, the
// collector's chain must contain a certificate with a pinned key, and the
// leaf must verify to it as the only root (time, name, serverAuth): the pin
// is an administrator-set trust anchor, never a first-use decision. With
// neither, New refuses: the system roots are never trusted (any public CA
// could then impersonate the collector, and the agent would hand it its
// reports). Pins verify keys, not certificates, so that re-issuing the
// collector's certificate or the CA's with the same key needs no policy
// change; several pins allow a key rollover.
//
// # Connection
//
// One long-lived gRPC connection carries Renew and Ingest (Enroll uses a
// short connection without a client certificate). Keepalive: a ping after
// 5 minutes without activity, even without calls in flight
// (PermitWithoutStream), 20 s to answer; the collector's enforcement
// policy allows pings every 30 s with or without calls. Without idle pings
// the agent, whose unary calls last milliseconds, would never notice a
// silently dead path (a NAT or firewall that forgot the flow) until a call
// timed out. gRPC's own reconnection uses the same growth and cap as
// Backoff with ±50% jitter; the collector's maximum connection age
// rebalances connections after a collector restart.
//
// # Delivery
//
// Pump peeks a batch from the spool (Queue, which *spool.Spool
// implements), sends it with Client.Send, and acknowledges what the
// collector acknowledged; see Pump for what each failure does. Backoff is exponential with full jitter (ceiling 1 s,
// doubling, capped at 5 minutes), so that a fleet that lost a restarting
// collector comes back spread over the window; a RetryInfo delay from the
// collector is a floor under the jitter. A batch the collector refuses as
// invalid stays in the spool and is retried every few minutes with an
// error log naming the report and field. Options were: skip it after N
// tries (loses history silently, and the next Delta's base would be
// missing, forcing a resync anyway), retry at the normal pace (a refused
// batch from 100,000 agents becomes a storm of refusals), or keep it and
// retry rarely (chosen): the protocol keeps refused reports for an
// operator to see, a refusal usually means an old collector facing a newer
// agent, and upgrading the collector then delivers everything. The cost:
// delivery from that agent stops behind the batch until then, or until the
// spool overflows (its oldest reports, the refused ones first, are dropped,
// counted and followed by a Snapshot).
package uplink
