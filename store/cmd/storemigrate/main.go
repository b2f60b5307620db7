// Command storemigrate applies the schema migrations to a database and
// prepares the monthly partitions; it is the explicit migrate step of a
// deployment (the collector also migrates at start).
//
// Usage:
//
//	DATABASE_URL=postgres://user:pass@host/db go run ./store/cmd/storemigrate
package main

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/sessionaudit/sessionaudit/store"
)

func main() {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		log.Fatal("storemigrate: set DATABASE_URL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := store.Migrate(ctx, url); err != nil {
		log.Fatal(err)
	}
	s, err := store.Open(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.EnsurePartitions(ctx, time.Now()); err != nil {
		log.Fatal(err)
	}
	v, err := s.SchemaVersion(ctx)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("storemigrate: schema at version %d, partitions ready", v)
}
