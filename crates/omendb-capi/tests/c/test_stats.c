/* omen_store_stats, omen_compact and the size of a store on disk. */
#include "harness.h"

#include <stdlib.h>
#include <sys/resource.h>

#define DIM 16
#define ID_LEN 8 /* "v%07u" */

static void check_disk_bytes(const char *p, const omen_store *s, const char *when) {
    omen_stats st;
    long long files;
    CHECK_OK(h_stats(s, &st));
    files = h_dir_bytes(p);
    CHECK_MSG(files >= 0, "cannot walk %s", p);
    CHECK_MSG((long long)st.disk_bytes == files, "%s: stats.disk_bytes %llu, files in the directory sum to %lld bytes",
              when, (unsigned long long)st.disk_bytes, files);
}

void test_stats_fields(void) {
    char p[4096];
    omen_store *s = NULL;
    omen_stats st;
    h_ids ids;
    uint64_t d;
    const uint64_t per = DIM * 4 + ID_LEN;

    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_COSINE, 0, &s));
    memset(&st, 0xCD, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(omen_store_stats(s, &st));
    EXPECT_MSG(st.struct_size == sizeof st, "stats.struct_size changed to %u", st.struct_size);
    EXPECT_MSG(st.dim == DIM, "dim %u", st.dim);
    EXPECT_MSG(st.metric == OMEN_METRIC_COSINE, "metric %u", st.metric);
    EXPECT_MSG(st.pq_m == 0, "pq_m %u", st.pq_m);
    EXPECT_MSG(st.pq_trained == 0, "pq_trained %u, want 0", st.pq_trained);
    EXPECT_MSG(st.raw_kept == 1, "raw_kept %u, want 1", st.raw_kept);
    EXPECT_MSG(st.live_vectors == 0 && st.dead_slots == 0, "fresh: live %llu dead %llu",
               (unsigned long long)st.live_vectors, (unsigned long long)st.dead_slots);
    EXPECT_MSG(st.checkpoint_seq == 1, "fresh: checkpoint_seq %llu, want 1", (unsigned long long)st.checkpoint_seq);
    EXPECT_MSG(st.payload_bytes == 0, "fresh: payload_bytes %llu, want 0", (unsigned long long)st.payload_bytes);
    check_disk_bytes(p, s, "fresh store");

    CHECK_OK(h_put_range(s, 0, 1000, 1, DIM));
    CHECK_OK(h_put_range(s, 0, 100, 2, DIM)); /* 100 replaced */
    h_ids_init(&ids);
    h_ids_add_index(&ids, 500);
    h_ids_add_index(&ids, 501);
    h_ids_add(&ids, "longer-id-of-20bytes", 20);
    CHECK_OK(omen_delete_batch(s, ids.n, ids.bytes, ids.offsets, &d));
    CHECK(d == 2);
    /* one ID of another length */
    {
        float v[DIM];
        const uint64_t off[2] = {0, 20};
        h_vec(77, 1, DIM, v);
        CHECK_OK(omen_put_batch(s, 1, (const uint8_t *)"longer-id-of-20bytes", off, v));
    }
    CHECK_OK(h_stats(s, &st));
    EXPECT_MSG(st.live_vectors == 999, "live_vectors %llu, want 999", (unsigned long long)st.live_vectors);
    EXPECT_MSG(st.dead_slots == 102, "dead_slots %llu, want 102 (100 replaced + 2 deleted)",
               (unsigned long long)st.dead_slots);
    EXPECT_MSG(st.payload_bytes == 998 * per + DIM * 4 + 20,
               "payload_bytes %llu, want %llu (live vectors * %u bytes + their ID bytes)",
               (unsigned long long)st.payload_bytes, (unsigned long long)(998 * per + DIM * 4 + 20), DIM * 4);
    EXPECT_MSG(st.pq_trained == 0 && st.raw_kept == 1, "pq_trained %u raw_kept %u", st.pq_trained, st.raw_kept);
    h_note("heap_bytes %llu, disk_bytes %llu for 999 vectors", (unsigned long long)st.heap_bytes,
           (unsigned long long)st.disk_bytes);
    CHECK_OK(omen_checkpoint(s, NULL));
    check_disk_bytes(p, s, "after checkpoint");
    h_ids_free(&ids);
    CHECK_OK(omen_close(s));

    /* same numbers after reopening */
    CHECK_OK(h_open(p, OMEN_OPEN_READ_ONLY, &s));
    CHECK_OK(h_stats(s, &st));
    EXPECT_MSG(st.live_vectors == 999, "after reopen live_vectors %llu", (unsigned long long)st.live_vectors);
    EXPECT_MSG(st.payload_bytes == 998 * per + DIM * 4 + 20, "after reopen payload_bytes %llu",
               (unsigned long long)st.payload_bytes);
    EXPECT_MSG(st.metric == OMEN_METRIC_COSINE && st.dim == DIM, "after reopen metric %u dim %u", st.metric, st.dim);
    check_disk_bytes(p, s, "after reopen");
    CHECK_OK(omen_close(s));
}

void test_compact(void) {
    char p[4096];
    omen_store *s = NULL;
    omen_stats st;
    h_ids ids;
    uint64_t d, seq_before;
    size_t i, n = 2000;
    long long files;

    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_put_range(s, 0, n, 1, DIM));
    CHECK_OK(h_put_range(s, 0, n / 4, 2, DIM)); /* replace a quarter */
    h_ids_init(&ids);
    for (i = n / 2; i < n; i++) h_ids_add_index(&ids, i); /* delete half */
    CHECK_OK(omen_delete_batch(s, ids.n, ids.bytes, ids.offsets, &d));
    CHECK(d == n / 2);
    CHECK_OK(omen_checkpoint(s, &seq_before));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.dead_slots == n / 4 + n / 2, "before compact: dead %llu", (unsigned long long)st.dead_slots);

    CHECK_OK(omen_compact(s));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.dead_slots == 0, "after compact: dead_slots %llu, want 0", (unsigned long long)st.dead_slots);
    CHECK_MSG(st.live_vectors == n / 2, "after compact: live %llu", (unsigned long long)st.live_vectors);
    for (i = 0; i < n; i++) {
        omen_status r = h_get_index(s, i, i < n / 4 ? 2 : 1, DIM);
        CHECK_MSG(r == (i < n / 2 ? OMEN_OK : OMEN_ERR_NOT_FOUND), "after compact v%07zu: %s", i, omen_status_name(r));
    }
    {
        /* new keys work */
        float q[DIM];
        omen_hit hit;
        size_t count;
        const uint8_t *id;
        size_t len;
        h_vec(10, 2, DIM, q);
        CHECK_OK(omen_search(s, q, 1, NULL, &hit, &count));
        CHECK(count == 1 && hit.distance == 0.0f);
        CHECK_OK(omen_key_id(s, hit.key, &id, &len));
        CHECK_MSG(len == 8 && memcmp(id, "v0000010", 8) == 0, "after compact the nearest hit is not v0000010");
    }
    /* still writable after compaction */
    CHECK_OK(h_put_range(s, n, 1, 1, DIM));
    CHECK_OK(h_stats(s, &st));
    h_ids_free(&ids);
    CHECK_OK(omen_close(s));

    CHECK_OK(h_open(p, 0, &s));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.dead_slots == 0 && st.live_vectors == n / 2 + 1, "after compact+reopen: live %llu dead %llu",
              (unsigned long long)st.live_vectors, (unsigned long long)st.dead_slots);
    CHECK_MSG(st.checkpoint_seq > seq_before, "checkpoint_seq %llu after compact+close, was %llu",
              (unsigned long long)st.checkpoint_seq, (unsigned long long)seq_before);
    for (i = 0; i <= n; i++) {
        omen_status r = h_get_index(s, i, i < n / 4 ? 2 : 1, DIM);
        CHECK_MSG(r == (i < n / 2 || i == n ? OMEN_OK : OMEN_ERR_NOT_FOUND), "after compact+reopen v%07zu: %s", i,
                  omen_status_name(r));
    }
    CHECK_OK(h_stats(s, &st));
    CHECK_OK(omen_close(s));
    /* the dead slots' space is gone from disk */
    files = h_dir_bytes(p);
    CHECK_MSG((double)files <= (double)st.payload_bytes * 1.01 + 65536.0,
              "after compact+close the store takes %lld bytes for %llu payload bytes", files,
              (unsigned long long)st.payload_bytes);
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

/* Best of 5: put one vector, then time omen_checkpoint (CPU and wall). */
static omen_status small_checkpoint_cost(omen_store *s, uint32_t dim, double *cpu, double *wall) {
    int i;
    *cpu = *wall = 1e9;
    for (i = 0; i < 5; i++) {
        double c0, w0;
        omen_status st = h_put_range(s, 900000 + (uint64_t)i, 1, 1, dim);
        if (st) return st;
        c0 = cpu_seconds();
        w0 = h_now();
        st = omen_checkpoint(s, NULL);
        if (st) return st;
        if (cpu_seconds() - c0 < *cpu) *cpu = cpu_seconds() - c0;
        if (h_now() - w0 < *wall) *wall = h_now() - w0;
    }
    return OMEN_OK;
}

static void size_check(size_t n) {
    char p[4096];
    omen_store *s = NULL;
    omen_stats st;
    const uint32_t dim = 768;
    size_t chunk = 5000, i;
    long long files;
    double limit;

    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, dim, OMEN_METRIC_L2, 0, &s));
    for (i = 0; i < n; i += chunk) CHECK_OK(h_put_range(s, i, n - i < chunk ? n - i : chunk, 1, dim));
    CHECK_OK(omen_checkpoint(s, NULL));
    if (n >= 100000) {
        /* "Cost grows with what changed since the last checkpoint, not with
         * the size of the store": one changed vector in a 300 MB store costs
         * about what it costs in a tiny one. */
        char small_path[4096];
        omen_store *small = NULL;
        double big_cpu, big_wall, small_cpu, small_wall;
        CHECK_OK(small_checkpoint_cost(s, dim, &big_cpu, &big_wall));
        h_sub(small_path, sizeof small_path, "small");
        CHECK_OK(h_create(small_path, dim, OMEN_METRIC_L2, 0, &small));
        CHECK_OK(h_put_range(small, 0, 100, 1, dim));
        CHECK_OK(omen_checkpoint(small, NULL));
        CHECK_OK(small_checkpoint_cost(small, dim, &small_cpu, &small_wall));
        CHECK_OK(omen_close(small));
        h_note("checkpoint after one put: %zu vectors %.2f ms CPU %.2f ms wall; 100 vectors %.2f ms CPU %.2f ms wall", n,
               big_cpu * 1e3, big_wall * 1e3, small_cpu * 1e3, small_wall * 1e3);
        CHECK_MSG(big_cpu <= 10 * small_cpu + 0.05,
                  "a one-vector checkpoint costs %.1f ms CPU in a %zu-vector store, %.1f ms in a 100-vector one", big_cpu * 1e3,
                  n, small_cpu * 1e3);
        /* the 5 extra vectors stay: adjust the expectations below */
        n += 5;
    }
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.live_vectors == n, "live %llu, want %zu", (unsigned long long)st.live_vectors, n);
    CHECK_MSG(st.payload_bytes == (uint64_t)n * (dim * 4 + ID_LEN), "payload_bytes %llu, want %llu",
              (unsigned long long)st.payload_bytes, (unsigned long long)n * (dim * 4 + ID_LEN));
    CHECK_OK(omen_close(s));
    files = h_dir_bytes(p);
    limit = (double)st.payload_bytes * 1.01 + 65536.0;
    h_note("%zu x %u: payload %llu bytes, directory %lld bytes (limit %.0f)", n, dim,
           (unsigned long long)st.payload_bytes, files, limit);
    CHECK_MSG((double)files <= limit, "directory holds %lld bytes after close, more than payload*1.01+64KiB = %.0f",
              files, limit);
    /* and it still opens with all data */
    CHECK_OK(h_open(p, OMEN_OPEN_READ_ONLY, &s));
    CHECK_OK(h_get_index(s, 0, 1, dim));
    CHECK_OK(h_get_index(s, n >= 100000 ? 99999 : n - 1, 1, dim));
    CHECK_OK(omen_close(s));
}

void test_size_100_vectors(void) {
    size_check(100);
}

void test_size_100k_vectors(void) {
    size_check(100000);
}
