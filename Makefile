# The two commands a new user runs: `make demo` and `make test`. Each installs what is missing
# (tools/install-deps.sh), configures and builds, then runs the demo or the whole test suite.
# `make test-sanitize` (CI runs it after `make test`) builds the C code twice more, under
# AddressSanitizer + UndefinedBehaviorSanitizer and under ThreadSanitizer, and runs the CPU suite
# under the first and the threaded tests (loader, prep, collectives, tokenizer, trainer) under the
# second. `make format` / `make format-check` apply or check .clang-format.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
# In CI (CI=true, as .ci/run sets it) compiler warnings are errors.
ifneq ($(CI),)
CMAKE_FLAGS += -DLLAVA_WERROR=ON
endif
SAN_FLAGS = -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLLAVA_CUDA=OFF -DLLAVA_FUZZ=OFF -DLLAVA_WERROR=ON
TSAN_TESTS = test_loader test_prep test_prep_cli test_dist test_tokenizer test_train test_serve_http

.PHONY: all deps configure build test test-cpu test-gpu test-sanitize demo format format-check clean

all: build

deps:
	@./tools/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-gpu: build
	@cd $(BUILD) && ctest --output-on-failure -L gpu

test-sanitize: deps
	@cmake -S . -B $(BUILD)-asan $(SAN_FLAGS) "-DLLAVA_SANITIZE=address,undefined" >/dev/null
	@cmake --build $(BUILD)-asan -j $(JOBS)
	@cd $(BUILD)-asan && ctest --output-on-failure -j $(JOBS) -L cpu -LE "fuzz|rooms|long"
	@cmake -S . -B $(BUILD)-tsan $(SAN_FLAGS) -DLLAVA_MPI=OFF -DLLAVA_SANITIZE=thread >/dev/null
	@cmake --build $(BUILD)-tsan -j $(JOBS) --target llava $(TSAN_TESTS)
	@cd $(BUILD)-tsan && ctest --output-on-failure -j $(JOBS) -R "^($(subst $() ,|,$(TSAN_TESTS)))$$"

demo: build
	@./$(BUILD)/llava demo

format:
	@./tools/format.sh

format-check:
	@./tools/format.sh --check

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan
