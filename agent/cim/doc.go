// Package cim parses the two textual formats that WMI hands the agent: CIM
// datetimes (ParseDatetime) and WMI object paths (ParseObjectPath), the
// references that association classes such as Win32_LoggedOnUser carry.
//
// Both parsers are strict about structure and report errors that name the
// input; they never panic, whatever the input (they are fuzzed).
package cim
