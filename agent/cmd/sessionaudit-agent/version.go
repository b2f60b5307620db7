package main

// version is this build's version: the Makefile, deploy/windows/build-msi and
// deploy/collector/build-image set it with -ldflags "-X main.version=...";
// "dev" in an unstamped build. It goes into every report's host
// (agent_version) and the "version" command's output.
var version = "dev"
