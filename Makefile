# Thin front for people; the build is meson (see meson.build).
BUILD ?= build
MESON_OPTS ?=

.PHONY: all build deps test unit e2e fuzz demo demo-stop bench deb clean

all: build

deps:
	@bash scripts/deps.sh test

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

# Unit and end-to-end tests; the last line says "N passed, N failed".
test: deps build
	@bash scripts/test.sh $(BUILD)

unit: build
	$(BUILD)/gh-unit

e2e: build
	/usr/bin/python3 -m pytest -q tests/e2e

# libFuzzer targets (clang, ASan + UBSan) in build-fuzz, FUZZ_SECONDS each.
FUZZ_SECONDS ?= 60
fuzz:
	@bash scripts/deps.sh fuzz
	@bash scripts/fuzz.sh $(FUZZ_SECONDS)

# The demo needs only what runs it (not the test tools: valgrind, clang,
# promtool, the packaging tools).
demo:
	@bash scripts/deps.sh demo
	@$(MAKE) --no-print-directory build
	@bash scripts/demo.sh

demo-stop:
	@bash scripts/demo.sh stop

# gatehouse against nginx on this machine (bench/bench.py, README "Benchmarks").
# Quick: make bench BENCH_SECS=3 BENCH_ROUNDS=1
BENCH_ROUNDS ?= 3
BENCH_SECS ?= 10
bench: build
	@bash scripts/deps.sh bench
	BENCH_ROUNDS=$(BENCH_ROUNDS) BENCH_SECS=$(BENCH_SECS) /usr/bin/python3 bench/bench.py \
		--build $(BUILD) --json $(BUILD)/bench-results.json

# The Debian package gatehouse_<version>_<arch>.deb, here (scripts/deb.sh,
# debian/); then: apt install ./gatehouse_*.deb
deb:
	@bash scripts/deps.sh deb
	@bash scripts/deb.sh

clean:
	rm -rf $(BUILD)
