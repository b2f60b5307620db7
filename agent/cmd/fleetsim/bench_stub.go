package main

import (
	"context"
	"errors"
	"io"
)

const benchIngestDoc = ""
const benchConnectionsDoc = ""

func benchIngest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
func benchConnections(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
