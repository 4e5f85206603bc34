# xrun's build. libcontainer needs cgo (its nsenter constructor); the binary
# is linked statically so that it can also serve as the container's native
# PID 1 inside any image (see pkg/sandbox/reaper.go).
export CGO_ENABLED := 1
GO      ?= go
PREFIX  ?= /usr/local
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# runc_nocriu and urfave_cli_no_docs leave out checkpointing and the manual
# generator: 0.7 MB less for libcontainer to copy into a memfd on every run,
# and fewer package initialisers at each start (see bench/RESULTS.md).
TAGS    := netgo,osusergo,runc_nocriu,urfave_cli_no_docs
LDFLAGS := -s -w -X main.version=$(VERSION) -extldflags=-static

.PHONY: all build install man test integration check validate lint fuzz bench clean

all: build

BIN_OUT ?= bin/xrun
build:
	$(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN_OUT) ./cmd/xrun

install: build man
	install -D -m 0755 bin/xrun $(DESTDIR)$(PREFIX)/bin/xrun
	install -D -m 0644 bin/xrun.1 $(DESTDIR)$(PREFIX)/share/man/man1/xrun.1

# The manual page, generated from the command and flag definitions.
man:
	@mkdir -p bin
	$(GO) run -tags netgo,osusergo ./cmd/xrun man > bin/xrun.1

# Unit tests (in-process registry, synthetic layers, malicious-tar corpus).
test:
	$(GO) test -race -count=1 ./...

# Short fuzzing of the layer unpacker; crashers land in testdata/fuzz.
fuzz:
	$(GO) test -run '^$$' -fuzz=FuzzUnpack -fuzztime=20s ./pkg/rootfs/

# End-to-end tests of bin/xrun as an unprivileged user against a real
# registry on 127.0.0.1 (needs hack/setup.sh once, as root).
integration: build
	XRUN_BIN=$(CURDIR)/bin/xrun XRUN_TEST_MUST_WORK=$${XRUN_TEST_MUST_WORK-1} \
		$(GO) test -tags integration -count=1 -timeout 30m -v ./integration/

validate:
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags '$(TAGS)' ./...
	$(GO) vet -tags integration ./integration/
	$(GO) mod tidy -diff

lint: validate

# What CI runs (README: "make check").
check: validate test fuzz integration

# Benchmarks (bench/README.md): as root, after hack/setup.sh; prints the
# table of ratios and writes bench/RESULTS.md. Not part of check.
bench: build
	bench/run.sh

clean:
	rm -rf bin
