/* get from C: omen_get of random present ids, one call each, through the
 * shared library, beside a memcpy gather of the same rows from the caller's
 * own array (the same data, in memory) measured in the same run.
 * Built and run by crates/omendb-bench/scripts/compare.py:
 *   cc -O2 -Iinclude crates/omendb-bench/scripts/c_get.c -Ltarget/release -lomendb -Wl,-rpath,$PWD/target/release
 *   ./c_get STORE_DIR N DIM GETS [compact] [huge]   (prints one JSON line)
 * With `compact`, the gets read a store omen_compact has just rewritten; with
 * `huge`, the store is opened with OMEN_OPEN_HUGE_PAGES. */
#include "omendb.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        omen_status st_ = (x);                                                                     \
        if (st_ != OMEN_OK) {                                                                      \
            fprintf(stderr, "%s: %s: %s\n", #x, omen_status_name(st_), omen_last_error());         \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(int argc, char **argv) {
    int compact = 0, huge = 0, bad = argc < 5;
    for (int a = 5; a < argc; a++) {
        if (strcmp(argv[a], "compact") == 0) compact = 1;
        else if (strcmp(argv[a], "huge") == 0) huge = 1;
        else bad = 1;
    }
    if (bad) {
        fprintf(stderr, "usage: c_get STORE_DIR N DIM GETS [compact] [huge]\n");
        return 2;
    }
    const char *dir = argv[1];
    size_t n = strtoull(argv[2], 0, 10), dim = strtoull(argv[3], 0, 10), gets = strtoull(argv[4], 0, 10);
    float *vectors = malloc(n * dim * sizeof(float));
    char *ids = malloc(n * 12 + 1);
    uint64_t *offsets = malloc((n + 1) * sizeof(uint64_t));
    size_t *probes = malloc(gets * sizeof(size_t));
    float *out = malloc(dim * sizeof(float));
    for (size_t i = 0; i < n * dim; i++) vectors[i] = (float)(next() >> 40) / 16777216.0f;
    for (size_t i = 0; i < n; i++) {
        snprintf(ids + 12 * i, 13, "doc-%08u", (unsigned)(i % 100000000u));
        offsets[i] = 12 * i;
    }
    offsets[n] = 12 * n;
    for (size_t i = 0; i < gets; i++) probes[i] = next() % n;

    omen_options opts;
    omen_options_default(&opts);
    opts.flags = OMEN_OPEN_CREATE | (huge ? OMEN_OPEN_HUGE_PAGES : 0);
    opts.dim = (uint32_t)dim;
    omen_store *s = NULL;
    CHECK(omen_open(dir, &opts, &s));
    double t = now();
    for (size_t b = 0; b < n; b += 1000) {
        size_t m = n - b < 1000 ? n - b : 1000;
        CHECK(omen_put_batch(s, m, (const uint8_t *)ids, offsets + b, vectors + b * dim));
    }
    CHECK(omen_checkpoint(s, NULL));
    double put_s = now() - t;
    if (compact) CHECK(omen_compact(s));

    double sink = 0;
    t = now();
    for (size_t i = 0; i < gets; i++) {
        memcpy(out, vectors + probes[i] * dim, dim * sizeof(float));
        sink += out[i % dim];
    }
    double gather_s = now() - t;
    t = now();
    for (size_t i = 0; i < gets; i++) {
        size_t p = probes[i];
        CHECK(omen_get(s, (const uint8_t *)ids + 12 * p, 12, out, dim));
        sink += out[i % dim];
    }
    double get_s = now() - t;
    CHECK(omen_close(s));
    printf("{\"c_put_vps\":%.1f,\"c_get_per_s\":%.1f,\"c_gather_per_s\":%.1f,\"sink\":%.3f}\n", n / put_s, gets / get_s,
           gets / gather_s, sink);
    free(vectors), free(ids), free(offsets), free(probes), free(out);
    return 0;
}
