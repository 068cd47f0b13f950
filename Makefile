# Convenience wrapper around CMake. The two commands a new user needs:
#   make demo   installs missing Debian packages, builds asr and runs the demo
#   make test   installs missing Debian packages, builds and runs every test, plain and under
#               AddressSanitizer + UndefinedBehaviorSanitizer
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build build-asan demo test test-plain test-asan bench fuzz clean format lint

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j $(JOBS)

build-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DASR_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)

demo: build
	@scripts/demo.sh
	@build/asr demo --report build/demo-report.json

test: test-plain test-asan

test-plain: build
	@cd build && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

fuzz:
	@scripts/install-deps.sh --fuzz
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DASR_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS)

bench: build
	@bench/run-all.sh

FORMATTED = $$(git ls-files 'src/*.[ch]' 'include/*.h' 'demo/*.[ch]' 'tests/*.c')

format:
	@clang-format -i $(FORMATTED)

# Fails when a C file is not formatted as .clang-format says.
lint:
	@clang-format --dry-run --Werror $(FORMATTED)

clean:
	rm -rf build build-asan build-fuzz
