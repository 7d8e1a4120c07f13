# The two commands of the README:
#   make demo   builds the library (release) and runs the C demo through the C ABI
#   make test   runs every test: Rust (unit, integration, header freshness,
#               crash), the Python/Go/Mojo host tests, the C contract tests,
#               and the C tests under valgrind
CARGO ?= cargo

.PHONY: demo test lib header bench recall clean fuzz

lib:
	$(CARGO) build --release

demo: lib
	$(MAKE) -s -C examples/c OMEN_LIB_DIR=$(CURDIR)/target/release -B demo
	./examples/c/demo

test:
	$(CARGO) build
	$(CARGO) build --release
	$(CARGO) test
	OMENDB_LIB_DIR=$(CURDIR)/target/release bash scripts/hosts/all.sh
	OMEN_SKIP_CARGO=1 OMEN_VALGRIND_LIB_DIR=$(CURDIR)/target/release sh tests/c/run.sh --valgrind

header:
	OMENDB_BLESS=1 $(CARGO) test --test header

# Coverage-guided fuzzing (cargo-fuzz); FUZZ_SECONDS per target, e.g.
#   make fuzz FUZZ_SECONDS=14400
FUZZ_SECONDS ?= 60
fuzz:
	bash scripts/fuzz.sh all $(FUZZ_SECONDS)

# The benchmark suite (release): the OmenDB grid, the memory benchmark and the
# comparison with numpy / faiss / usearch -> docs/benchmarks.md + .png (~30 min).
bench:
	bash bench/run.sh

# The PQ recall table of docs/pq.md (needs ../shared/data or OMENDB_TEST_DATA).
recall:
	$(CARGO) run --release --example pq_recall

clean:
	$(CARGO) clean
	$(MAKE) -s -C tests/c clean
	$(MAKE) -s -C examples/c clean
