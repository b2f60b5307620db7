// Package wmi is the agent's Windows source: it reads Win32_OperatingSystem,
// Win32_ComputerSystem, Win32_LogonSession, Win32_LoggedOnUser and
// Win32_ServerSession through WMI, and the machine GUID from the registry
// (HKLM\SOFTWARE\Microsoft\Cryptography, value MachineGuid), into the row
// types of package source, and builds snapshots with source.BuildSnapshot.
// Source implements source.Source.
//
// How it queries:
//   - One long-lived WMI connection (a github.com/yusufpapurcu/wmi
//     SWbemServices, which makes its COM calls on its own locked OS thread),
//     owned by one worker goroutine. The library's package-level Query, which
//     initialises COM and connects on every call and has leaked memory when
//     used that way, is never used.
//   - The classes are queried in QueryOrder: the host's classes, then
//     Win32_ServerSession, then the logon classes (the slow ones), so that
//     a late logon query does not cost the SMB sessions of a snapshot.
//     In the place of Win32_ServerSession it first queries MSFT_SmbSession
//     in root\Microsoft\Windows\SMB on the same connection (a conn that
//     is a namespaceConn); when that fails it falls back to
//     Win32_ServerSession and says why (Collection.SmbFallbackReason).
//   - Every query has a deadline (Settings.QueryTimeout, taken with the
//     disabled classes from Options.Settings at every snapshot, so that a
//     change needs no restart). The library has no timeout, so a query
//     that passes its deadline keeps running on the worker: the class is
//     reported as TIMEOUT, the classes after it in the same snapshot are
//     reported as TIMEOUT without being queried, and no query is started
//     until the late one returns (never two queries at once); the messages
//     count the overruns and the deadlines the late query has been
//     running. When it returns, the connection is closed and a new one is
//     made for the next query; so it is after a query that panicked
//     (recovered, logged with its stack, reported as QUERY_FAILED), or when
//     connecting failed. A panic on the library's own goroutine cannot be
//     recovered here: it ends the process, and the agent's command has
//     the runtime write its trace to the log file (debug.SetCrashOutput).
//   - A watchdog follows a query past its deadline: when it has been
//     running for Options.WatchdogDeadlines deadlines (3), it logs an error
//     and calls Options.Exit, which ends the process with an error so that
//     the service control manager restarts the agent: a query that never
//     returns would otherwise keep every class TIMEOUT forever.
//   - A class whose query fails is reported as QUERY_FAILED and does not
//     stop the others; a class turned off by configuration is reported as
//     DISABLED.
//   - The accounts of logon sessions get their SIDs through
//     LookupAccountName, cached per DOMAIN\name and looked up one at a
//     time beside collection; a snapshot waits for new lookups at most
//     Options.SIDBudget (see sid.go).
//   - Datetimes are read as strings and parsed by package cim (through
//     source.BuildSnapshot): the library aborts a whole query on a datetime
//     it cannot parse. Missing properties are left empty and NULL numbers
//     nil (Client options AllowMissingFields, NonePtrZero and PtrNil).
//
// Only the connection to WMI, the registry read and the SID lookup are
// Windows code (wmi_windows.go); the worker, the deadline handling, the
// watchdog, the SID cache and the snapshot pass are plain Go, tested on
// every OS with fakes. On other systems New returns ErrNotWindows. Under
// Wine the session classes return no rows and even the host classes come
// back empty: use the simulated or fixture source there.
package wmi
