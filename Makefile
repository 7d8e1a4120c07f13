# The two commands of the README:
#   make demo   builds the library (release) and runs the C demo through the C ABI
#   make test   runs every test: Rust (unit, integration, header freshness,
#               crash), the command-line tool's tests, the Python/Go/Mojo host
#               tests (Go with -race), the installed-library test, the C
#               contract tests, and the C tests under valgrind and built with
#               AddressSanitizer + UBSan
#
# Installing like a C library (docs/hosts.md):
#   make install [PREFIX=/usr/local] [LIBDIR=$(PREFIX)/lib] [DESTDIR=/staging]
# lays out lib/libomendb.so.X.Y.Z with its libomendb.so.X (the soname) and
# libomendb.so links, lib/libomendb.a, include/omendb.h,
# lib/pkgconfig/omendb.pc and bin/omendb (the command-line tool).
# `make install-lib` does the same without the tool; `make uninstall` removes it.
# cargo-c does the library part too: cargo cinstall --release -p omendb-capi
CARGO ?= cargo

PREFIX ?= /usr/local
EXEC_PREFIX ?= $(PREFIX)
LIBDIR ?= $(EXEC_PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(EXEC_PREFIX)/bin
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR ?=
INSTALL ?= install
# install-lib strips debug info from the installed libomendb.a: the release
# profile builds OmenDB without it, but the archive also holds the prebuilt
# Rust standard library objects, which carry theirs (9 of its 25 MB).
STRIP ?= strip

CAPI := crates/omendb-capi
# The version, from the [workspace.package] section of Cargo.toml.
VERSION := $(shell sed -n '/^\[workspace.package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR := $(word 1,$(subst ., ,$(VERSION)))
# What the static library needs from the system (rustc --print native-static-libs, minus -lc).
STATIC_DEPS := -lgcc_s -lutil -lrt -lpthread -lm -ldl

.PHONY: demo test lib cli header bench recall ann clean fuzz install install-lib install-cli uninstall

# --workspace on every build: features of shared dependencies are unified
# over the selected packages, so building the library alone and building it
# beside the tool would otherwise compile it twice, in turn.
lib:
	$(CARGO) build --release --workspace --lib

cli:
	$(CARGO) build --release --workspace

demo: lib
	$(MAKE) -s -C examples/c OMEN_LIB_DIR=$(CURDIR)/target/release -B demo
	./examples/c/demo

test:
	$(CARGO) build --workspace
	$(CARGO) build --release --workspace
	$(CARGO) test --workspace
	# The engine's tests again on its AVX2 and portable kernels (docs/api.md, CPU paths).
	OMENDB_SIMD=avx2 $(CARGO) test --release -p omendb
	OMENDB_SIMD=portable $(CARGO) test --release -p omendb
	OMENDB_LIB_DIR=$(CURDIR)/target/release bash scripts/hosts/all.sh
	bash $(CAPI)/tests/install/run.sh
	OMEN_SKIP_CARGO=1 OMEN_VALGRIND_LIB_DIR=$(CURDIR)/target/release OMEN_SANITIZE_LIB_DIR=$(CURDIR)/target/release \
	  sh $(CAPI)/tests/c/run.sh --valgrind --sanitize

install: install-lib install-cli

# BUILT_LIB_DIR: where install-lib takes libomendb.so/.a from; another
# directory than the default installs a library built elsewhere, unbuilt
# (the host scripts pass their OMENDB_LIB_DIR).
BUILT_LIB_DIR ?= target/release
install-lib: $(if $(filter target/release,$(BUILT_LIB_DIR)),lib)
	$(INSTALL) -d "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(INCLUDEDIR)" "$(DESTDIR)$(PKGCONFIGDIR)"
	$(INSTALL) -m 755 $(BUILT_LIB_DIR)/libomendb.so "$(DESTDIR)$(LIBDIR)/libomendb.so.$(VERSION)"
	ln -sf libomendb.so.$(VERSION) "$(DESTDIR)$(LIBDIR)/libomendb.so.$(MAJOR)"
	ln -sf libomendb.so.$(MAJOR) "$(DESTDIR)$(LIBDIR)/libomendb.so"
	$(INSTALL) -m 644 $(BUILT_LIB_DIR)/libomendb.a "$(DESTDIR)$(LIBDIR)/libomendb.a"
	$(STRIP) --strip-debug "$(DESTDIR)$(LIBDIR)/libomendb.a"
	$(INSTALL) -m 644 include/omendb.h "$(DESTDIR)$(INCLUDEDIR)/omendb.h"
	printf '%s\n' \
	  'prefix=$(PREFIX)' \
	  'libdir=$(LIBDIR)' \
	  'includedir=$(INCLUDEDIR)' \
	  '' \
	  'Name: omendb' \
	  'Description: OmenDB: an embedded, durable, memory-mapped vector store with Product Quantization (C ABI)' \
	  'Version: $(VERSION)' \
	  'Cflags: -I$${includedir}' \
	  'Libs: -L$${libdir} -lomendb' \
	  'Libs.private: $(STATIC_DEPS)' \
	  > "$(DESTDIR)$(PKGCONFIGDIR)/omendb.pc"
	chmod 644 "$(DESTDIR)$(PKGCONFIGDIR)/omendb.pc"

install-cli: cli
	$(INSTALL) -d "$(DESTDIR)$(BINDIR)"
	$(INSTALL) -m 755 target/release/omendb "$(DESTDIR)$(BINDIR)/omendb"

uninstall:
	rm -f "$(DESTDIR)$(LIBDIR)/libomendb.so.$(VERSION)" "$(DESTDIR)$(LIBDIR)/libomendb.so.$(MAJOR)" \
	  "$(DESTDIR)$(LIBDIR)/libomendb.so" "$(DESTDIR)$(LIBDIR)/libomendb.a" \
	  "$(DESTDIR)$(INCLUDEDIR)/omendb.h" "$(DESTDIR)$(PKGCONFIGDIR)/omendb.pc" "$(DESTDIR)$(BINDIR)/omendb"

header:
	OMENDB_BLESS=1 $(CARGO) test -p omendb-capi --test header

# Coverage-guided fuzzing (cargo-fuzz); FUZZ_SECONDS per target, e.g.
#   make fuzz FUZZ_SECONDS=14400
FUZZ_SECONDS ?= 60
fuzz:
	bash scripts/fuzz.sh all $(FUZZ_SECONDS)

# The benchmark suite (release): the OmenDB grid, the memory benchmark and the
# comparison with numpy / faiss / usearch -> docs/benchmarks.md + .png (~30 min).
bench:
	bash crates/omendb-bench/scripts/run.sh

# Recall/QPS curves of OmenDB's search beside faiss, usearch and hnswlib
# (docs/benchmarks.md, "ANN curves"): 100,000 x 128 clustered synthetic, one
# thread one query per call and batches at all cores -> target/bench/ann-synthetic/
# {ann.json,ann.png,ann.md} (~20 min here, most of it the six HNSW builds). Other sizes and sets:
#   make ann ANN_ARGS="--data siftsmall --batch"
ANN_ARGS ?= --data synthetic --n 100000 --dim 128 --clusters 256 --batch
ann:
	bash crates/omendb-bench/scripts/ann.sh $(ANN_ARGS)

# The PQ recall table of docs/pq.md (needs ../shared/data or OMENDB_TEST_DATA).
recall:
	$(CARGO) run --release -p omendb-bench --bin pq_recall

clean:
	$(CARGO) clean
	$(MAKE) -s -C $(CAPI)/tests/c clean
	$(MAKE) -s -C examples/c clean
