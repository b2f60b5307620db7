//go:build !windows

package wmi

// New returns ErrNotWindows: WMI exists only on Windows.
func New(opts Options) (*Source, error) {
	return nil, ErrNotWindows
}
