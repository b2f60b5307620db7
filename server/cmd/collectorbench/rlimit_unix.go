//go:build unix

package main

import "syscall"

// raiseFileLimit raises RLIMIT_NOFILE to want (the hard limit too, which
// needs root or CAP_SYS_RESOURCE) and returns the soft limit in effect.
func raiseFileLimit(want uint64) (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur >= want {
		return rl.Cur, nil
	}
	next := syscall.Rlimit{Cur: want, Max: max(want, rl.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		// Without privilege: as far as the hard limit allows.
		next = syscall.Rlimit{Cur: rl.Max, Max: rl.Max}
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err2 != nil {
			return rl.Cur, err
		}
		return rl.Max, nil
	}
	return want, nil
}
