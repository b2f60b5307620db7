package main

// version is this build's version: the Makefile and
// deploy/collector/build-image set it with -ldflags "-X main.version=...";
// "dev" in an unstamped build. "sessionaudit version" prints it, and the
// CLI sends it in its gRPC user agent.
var version = "dev"
