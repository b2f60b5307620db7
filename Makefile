# sessionaudit build entry points. `make help` lists the targets.

SHELL := /bin/bash
GO ?= go

# Pinned code generators and linters, installed once into a cache outside the
# repo (buf compiles for minutes; keep it cached).
BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
TOOLBIN ?= $(HOME)/.cache/sessionaudit/bin
export PATH := $(TOOLBIN):$(PATH)

# Every main package of the module.
MAINS := $(shell $(GO) list -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' ./... 2>/dev/null)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: help build build-linux build-windows test lint fmt-check vet proto proto-check tools demo image image-test msi wine-e2e clean

help: ## List the targets.
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: build-linux build-windows ## Build every binary for Linux and Windows into bin/.

build-linux: ## Build every binary for linux/amd64 into bin/linux-amd64/.
	@mkdir -p bin/linux-amd64
	$(if $(MAINS),CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/linux-amd64/ $(MAINS),@echo "no main packages yet")

build-windows: ## Build every binary for windows/amd64 into bin/windows-amd64/.
	@mkdir -p bin/windows-amd64
	$(if $(MAINS),CGO_ENABLED=0 GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/windows-amd64/ $(MAINS),@echo "no main packages yet")

test: ## Run the whole test suite (starts the PostgreSQL it needs; see docs/testing.md).
	@.ci/test

lint: fmt-check vet tools ## gofmt, go vet (linux and windows), buf lint, import rules.
	buf lint
	@.ci/layers

fmt-check: ## Fail when gofmt would change a file.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet: ## go vet for linux and for windows.
	$(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...

proto: tools ## Regenerate the Go code from proto/ with the pinned generators.
	buf lint
	buf generate

proto-check: proto ## Fail when the committed generated code differs from a fresh generation.
	@git diff --exit-code -- proto || { echo "generated code in proto/ is stale: run 'make proto' and commit"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- proto); if [ -n "$$untracked" ]; then echo "generated files not committed: $$untracked"; exit 1; fi

.PHONY: schema schema-check

schema: ## Write migrations/schema.sql: the schema all migrations give, dumped from PostgreSQL 15 (.ci/schema).
	@.ci/schema

schema-check: ## Fail when migrations/schema.sql is not what the migrations give (run make schema).
	@.ci/schema --check

.PHONY: layers
layers: ## Check the import rules: proto, agent, store and server import only what docs/design/0005-architecture.md allows.
	@.ci/layers

tools: ## Install the pinned buf and protoc plugins into $(TOOLBIN).
	@mkdir -p $(TOOLBIN)
	@[ "$$($(TOOLBIN)/buf --version 2>/dev/null)" = "$(BUF_VERSION:v%=%)" ] || { echo "installing buf $(BUF_VERSION) (compiles for a few minutes)"; GOBIN=$(TOOLBIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION); }
	@[ "$$($(TOOLBIN)/protoc-gen-go --version 2>/dev/null)" = "protoc-gen-go $(PROTOC_GEN_GO_VERSION)" ] || GOBIN=$(TOOLBIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@[ "$$($(TOOLBIN)/protoc-gen-go-grpc --version 2>/dev/null)" = "protoc-gen-go-grpc $(PROTOC_GEN_GO_GRPC_VERSION:v%=%)" ] || GOBIN=$(TOOLBIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

demo: ## Run the system end to end on this machine and print one answered query.
	@deploy/demo/run

image: ## Build the collector's container image (FROM scratch, no registry; see docs/deploy-server.md).
	@VERSION=$(VERSION) deploy/collector/build-image

image-test: ## Build the collector's image and test it against PostgreSQL with simulated agents.
	@deploy/collector/test-image

msi: ## Build the agent's MSI with wixl into bin/windows-amd64/ (signed when SIGN_* is set; deploy/windows/build-msi).
	@VERSION='$(VERSION)' deploy/windows/build-msi

wine-e2e: ## Install the MSI under Wine, enroll with a loopback collector, check PostgreSQL, upgrade, remove (deploy/windows/wine/e2e).
	@deploy/windows/wine/e2e

clean: ## Remove build output.
	rm -rf bin

.PHONY: chaos fuzz
CHAOS_POLLS ?= 40
CHAOS_REPORT ?= out/chaos.md
CHAOS_LOGS ?= out/chaos-logs

chaos: ## The chaos suite: simulated agents with ground truth, collector processes and PostgreSQL killed and damaged; prints the table (docs/testing.md).
	@mkdir -p $(dir $(CHAOS_REPORT)); rm -rf $(CHAOS_REPORT) $(CHAOS_LOGS); status=0; \
	$(GO) test ./server/e2e -run '^TestChaos$$' -count=1 -timeout 20m -v -chaos -chaos.polls $(CHAOS_POLLS) \
		-chaos.report $(abspath $(CHAOS_REPORT)) -chaos.logs $(abspath $(CHAOS_LOGS)) $(CHAOS_FLAGS) || status=$$?; \
	echo; cat $(CHAOS_REPORT) 2>/dev/null || echo "chaos: no table written ($(CHAOS_REPORT))"; exit $$status

fuzz: ## Run every fuzz target of the module for FUZZTIME (default 60s) each, one at a time (.ci/fuzz).
	@.ci/fuzz
