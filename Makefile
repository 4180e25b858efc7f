# grapevine — see README.md. `make run` and `make test` do all set-up.
GO       ?= go
BIN      := bin/grapevine
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# Packages under testdata/ are skipped by ./... and must be named.
PKGS     := ./... ./testdata/corpus ./testdata/testenv ./testdata/farm
DATA     ?= ./data

.PHONY: all build run test vet fuzz fuzz-short soak bench microbench deps clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/grapevine

deps:
	./.ci/install-deps

# The daemon on an embedded default: log + Pebble under $(DATA), loopback
# ports 11371 (HKP) and 11370 (recon). An existing sksconf is kept.
run: build
	mkdir -p $(DATA)
	test -f $(DATA)/sksconf || printf '%s\n' \
	  '# sksconf written by make run: loopback only' \
	  'hkp_address: 127.0.0.1' 'hkp_port: 11371' \
	  'recon_address: 127.0.0.1' 'recon_port: 11370' > $(DATA)/sksconf
	test -f $(DATA)/membership || : > $(DATA)/membership
	$(BIN) serve --basedir $(DATA)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet $(PKGS)

test: deps vet
	$(GO) test -race -timeout 30m $(PKGS)
	# Allocation tests of recycled buffers, which skip under -race (the
	# race detector makes sync.Pool drop a share of them on purpose).
	$(GO) test -count 1 -run 'CopiesNothing' ./eventlog
	$(MAKE) --no-print-directory fuzz-short

# The long variants of the reliability tests (docs/reliability.md): the
# 10-minute load soak against a 100k-key store (TestSoak; the generated
# corpus is kept in $$TMPDIR for the next run), 100 SIGKILLs per crash test,
# 1,000 slow connections, 10,000 random-byte requests.
soak: deps
	GRAPEVINE_SOAK=1 $(GO) test -timeout 120m -v -run 'Soak|SIGKILL|Hostile|Slowloris|FullDisk' ./cmd/grapevine ./hkp

# Every fuzz target of every package, one after the other, FUZZTIME each;
# a crasher (written under the package's testdata/fuzz) fails the run.
# Each new interesting input is minimised for at most FUZZMINTIME: Go's
# default (60s) on the multi-kilobyte key seeds leaves both workers
# minimising for a minute at a time, reported as 0 execs/s.
FUZZMINTIME ?= 5s
# Targets are found with grep, not `go test -list`, which would build a
# test binary for every package.
define fuzz-loop
	@set -e; for pkg in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$pkg/*_test.go); do \
	    echo "== $$pkg $$f ($(1))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(1) -fuzzminimizetime $(FUZZMINTIME) $$pkg; \
	  done; \
	done
endef

# Long fuzzing runs (issue 8); `make test` runs each target briefly.
FUZZTIME ?= 60s
fuzz:
	$(call fuzz-loop,$(FUZZTIME))

# Each target briefly, as part of `make test` (80–160 s for the 22 targets there were
# when measured, on the loaded 2-core machine, most of it building). A count, not a duration:
# go1.26 fails a -fuzztime duration run that ends while a worker is busy
# with "context deadline exceeded" (golang/go#75804, fixed in go1.27).
FUZZSHORT ?= 500x
fuzz-short:
	$(call fuzz-loop,$(FUZZSHORT))

# Side by side with a real SKS 1.1.6 on the same corpus: prints one table
# of medians with grapevine/SKS ratios and rewrites docs/benchmarks.md.
BENCH_KEYS ?= 100000
BENCH_RUNS ?= 1
bench: build deps
	$(GO) run ./cmd/grapevine-bench -keys $(BENCH_KEYS) -runs $(BENCH_RUNS) -grapevine $(BIN) -write docs/benchmarks.md

# Package micro-benchmarks (testing.B).
microbench:
	$(GO) test -run '^$$' -bench . -benchmem ./eventlog ./projections/... ./recon/...

clean:
	rm -rf bin
