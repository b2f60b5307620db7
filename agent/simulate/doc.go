// Package simulate is a simulated Windows host: a source.Source whose logon
// and server sessions change the way a real host's do, deterministic from a
// seed and driven by an injected clock (it never sleeps).
//
// The simulation produces WMI rows (source.Collection), with CIM datetimes
// at the host's UTC offset and Win32_LoggedOnUser object paths, and turns
// them into snapshots with source.BuildSnapshot, so that it exercises the
// same code as the Windows source. It models, per Profile:
//   - a host identity (machine GUID, name, domain, OS facts) and a boot time;
//     occasional reboots give a new boot time and new LogonIds (decimal
//     LUIDs; 999, 997 and 996 for SYSTEM, LOCAL SERVICE, NETWORK SERVICE);
//   - the SYSTEM logon (type 0), service logons (5), and the font driver
//     (UMFD-n) and window manager (DWM-n) logons, which Windows makes
//     interactive (2), for the whole boot and for each new terminal
//     session;
//   - interactive (2) and cached (11) logons, unlocks (7) and runas /netonly
//     (9) of a domain user on a workstation, in working hours of the host's
//     time zone; RDP (10) logons of administrators on servers;
//   - batch (4) logons of scheduled tasks; network (3) logons, with SMB
//     server sessions (ActiveTime growing, IdleTime, ResourcesOpened) from
//     workstations ("WS0123" or "10.0.12.34"), in bursts on file servers and
//     domain controllers; IIS basic-auth network-cleartext (8) logons;
//   - Kerberos, NTLM and Negotiate packages; stale Win32_LoggedOnUser links
//     of logons that just ended, as WMI gives them.
//
// Config.FaultRate makes class queries fail (QUERY_FAILED, TIMEOUT) at random
// to exercise the consumers of snapshots.
package simulate
