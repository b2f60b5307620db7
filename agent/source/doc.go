// Package source defines what a source of snapshots is (Source) and turns the
// rows that WMI gives into the protocol's messages.
//
// A Windows source queries Win32_OperatingSystem, Win32_ComputerSystem,
// Win32_LogonSession, Win32_LoggedOnUser and Win32_ServerSession into the
// row types of this package (whose field names are the WMI property names,
// as github.com/yusufpapurcu/wmi requires), gathers them in a Collection and
// calls BuildSnapshot. Everything after the query (CIM datetime parsing,
// enum mapping, joining accounts to logon sessions, recording per-value and
// per-class problems) is here, in plain Go, and tested on every OS.
//
// Rules BuildSnapshot follows:
//   - A value that cannot be parsed (a CIM datetime with wildcards, say)
//     leaves its property absent and adds a CollectionError of kind
//     INVALID_VALUE naming the class, property, instance key and raw value;
//     the instance is still reported.
//   - A class that failed (Collection.Failures) adds a CollectionError of the
//     failure's kind; its rows, if any, are not reported.
//   - LogonId is kept verbatim; it is never parsed as a number.
//   - Accounts are joined to logon sessions through the parsed object paths
//     of Win32_LoggedOnUser (see JoinAccounts for the rules).
//   - Server sessions come from MSFT_SmbSession (ClassSmbSession) when the
//     Collection says so, else from Win32_ServerSession; client computer
//     names are normalised (NormalizeComputerName); rows left out (no
//     computer, a duplicate key or SessionId) are counted in
//     Snapshot.server_session_build, never dropped silently.
package source
