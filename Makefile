# retailflow — every entry point a person or CI needs.
#   make demo   install and start Kafka + ClickHouse, run the pipeline end to end on generated traffic
#   make test   the whole suite (starts its own Kafka and ClickHouse)
SHELL := /bin/bash
GO ?= go
BIN := bin/retailflow
export GOFLAGS ?= -mod=mod

.PHONY: build up down status test test-unit test-helm demo fmt vet clean

build:
	$(GO) build -o $(BIN) ./cmd/retailflow

up:
	infra/local.sh up

down:
	infra/local.sh down

status:
	infra/local.sh status

fmt:
	gofmt -l -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

# Unit and in-process tests (kfake, srfake): no services needed.
test-unit:
	$(GO) test -count=1 -short ./...

# Helm chart: lint, render, golden files, offline kubeconform, config check, guard rails.
# (installs helm and kubeconform with `go install` into ~/.cache/retailflow/bin the first time)
test-helm:
	helm/test.sh

# The whole suite: starts Kafka and ClickHouse (idempotent) and runs every test against them.
test: build up test-helm
	RETAILFLOW_E2E=1 $(GO) test -count=1 -timeout 20m ./...

demo: build up
	infra/demo.sh

clean:
	rm -rf bin .run
