package store

import "time"

// CheckStorable returns the error for which Ingest would refuse r for the
// host machineGUID at now (listing it in IngestResult.Rejected), or nil when
// Ingest would take it: the same validation and sanitizing, without a
// database and without the agent's state (a Delta's base is checked by
// Ingest against what it stored).
//
// The collector validates a batch so that the store refuses nothing of it;
// its fuzz test (server/ingest_fuzz_test.go, FuzzValidateBatch) holds it to
// that with this function.
func CheckStorable(r Report, machineGUID string, now time.Time) error {
	guid, err := validMachineGUID("machineGUID", machineGUID)
	if err != nil {
		return err
	}
	_, _, err = cleanReport(r, guid, now)
	return err
}
