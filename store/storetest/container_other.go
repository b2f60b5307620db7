//go:build !unix

package storetest

import "context"

// startContainer is not supported here: testcontainers-go's dependencies do
// not all build for this platform with this module's versions.
func startContainer(context.Context) (*server, error) {
	return nil, &unavailableError{"containers are only supported on Unix-like systems by storetest"}
}
