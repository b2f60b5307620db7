package service

import (
	"context"
	"os"
	"os/signal"
)

// signalContext is cancelled by Ctrl+C (or Ctrl+Break, or the console
// closing, which Go delivers as os.Interrupt).
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt)
}
