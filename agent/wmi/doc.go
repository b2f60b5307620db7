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
//   - Every query has a deadline (Options.QueryTimeout). The library has no
//     timeout, so a query that passes its deadline keeps running on the
//     worker: the class is reported as TIMEOUT, the classes after it in the
//     same snapshot are reported as TIMEOUT without being queried, and no
//     query is started until the late one returns (never two queries at
//     once). When it returns, the connection is closed and a new one is made
//     for the next query; so it is after a query that panicked (reported as
//     QUERY_FAILED), or when connecting failed.
//   - A class whose query fails is reported as QUERY_FAILED and does not
//     stop the others; a class turned off by configuration is reported as
//     DISABLED.
//   - Datetimes are read as strings and parsed by package cim (through
//     source.BuildSnapshot): the library aborts a whole query on a datetime
//     it cannot parse. Missing properties are left empty and NULL numbers
//     nil (Client options AllowMissingFields, NonePtrZero and PtrNil).
//
// Only the connection to WMI and the registry read are Windows code
// (wmi_windows.go); the worker, the deadline handling and the snapshot pass
// are plain Go, tested on every OS with a fake connection. On other systems
// New returns ErrNotWindows. Under Wine the session classes return no rows
// and even the host classes come back empty: use the simulated or fixture
// source there.
package wmi
