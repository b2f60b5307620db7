package main

// version is this build's version: the Makefile and
// deploy/collector/build-image set it with -ldflags "-X main.version=...";
// "dev" in an unstamped build. "sessionaudit-collector version" prints it
// and "serve" logs it at start.
var version = "dev"
