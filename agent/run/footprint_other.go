//go:build !linux

package run

import (
	"errors"
	"time"
)

var errLinuxOnly = errors.New("footprint is measured on Linux only (/proc/self/status, getrusage)")

func processCPU() (time.Duration, error)         { return 0, errLinuxOnly }
func processMemory() (rss, hwm int64, err error) { return 0, 0, errLinuxOnly }
func dirBytes(string) int64                      { return 0 }
