/* omen_put_batch, omen_get, omen_get_batch, omen_delete_batch. */
#include "harness.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#define DIM 16

static omen_status new_store(omen_store **s) {
    char p[4096];
    h_sub(p, sizeof p, "store");
    return h_create(p, DIM, OMEN_METRIC_L2, 0, s);
}

static uint64_t live(const omen_store *s) {
    omen_stats st;
    if (h_stats(s, &st) != OMEN_OK) return UINT64_MAX;
    return st.live_vectors;
}

static uint64_t dead(const omen_store *s) {
    omen_stats st;
    if (h_stats(s, &st) != OMEN_OK) return UINT64_MAX;
    return st.dead_slots;
}

/* A batch of n vectors where vector `bad` gets value `x` at component 7 and
 * the first entry replaces existing ID v0000000. Must fail as a whole. */
static void batch_with_bad_value(omen_store *s, size_t n, size_t bad, float x, const char *what) {
    h_ids ids;
    float *v = malloc(n * DIM * sizeof(float));
    size_t i;
    uint64_t live_before = live(s), dead_before = dead(s);
    omen_status st;
    h_ids_init(&ids);
    for (i = 0; i < n; i++) {
        h_ids_add_index(&ids, i); /* 0 exists (version 1), the rest are new */
        h_vec(i, 2, DIM, v + i * DIM);
    }
    v[bad * DIM + 7] = x;
    st = omen_put_batch(s, n, ids.bytes, ids.offsets, v);
    EXPECT_MSG(st == OMEN_ERR_INVALID_ARGUMENT, "put_batch with %s at vector %zu: got %s, want OMEN_ERR_INVALID_ARGUMENT",
               what, bad, omen_status_name(st));
    EXPECT_MSG(omen_last_error()[0] != '\0', "put_batch with %s: empty last error", what);
    EXPECT_MSG(live(s) == live_before, "put_batch with %s: live_vectors changed from %llu to %llu", what,
               (unsigned long long)live_before, (unsigned long long)live(s));
    EXPECT_MSG(dead(s) == dead_before, "put_batch with %s: dead_slots changed from %llu to %llu", what,
               (unsigned long long)dead_before, (unsigned long long)dead(s));
    EXPECT_MSG(h_get_index(s, 0, 1, DIM) == OMEN_OK, "put_batch with %s: existing v0000000 no longer version 1", what);
    EXPECT_MSG(h_get_index(s, 1, 2, DIM) == OMEN_ERR_NOT_FOUND, "put_batch with %s: first new vector was applied", what);
    EXPECT_MSG(h_get_index(s, n - 1, 2, DIM) == OMEN_ERR_NOT_FOUND, "put_batch with %s: last vector was applied", what);
    free(v);
    h_ids_free(&ids);
}

void test_put_rejects_non_finite_atomically(void) {
    omen_store *s = NULL;
    size_t n = g_valgrind ? 2000 : 10000;
    CHECK_OK(new_store(&s));
    CHECK_OK(h_put_range(s, 0, 1, 1, DIM));
    batch_with_bad_value(s, n, n / 2, NAN, "NaN");
    batch_with_bad_value(s, n, n / 2 + 1, INFINITY, "+inf");
    batch_with_bad_value(s, n, n / 2 + 2, -INFINITY, "-inf");
    batch_with_bad_value(s, n, n - 1, -NAN, "-NaN in the last vector");
    CHECK(live(s) == 1);
    /* and the store still works afterwards */
    CHECK_OK(h_put_range(s, 0, n, 3, DIM));
    CHECK(live(s) == n);
    CHECK_OK(h_get_index(s, n / 2, 3, DIM));
    CHECK_OK(omen_close(s));
}

/* Puts a batch built by the caller, expecting INVALID_ARGUMENT and nothing applied. */
static void expect_bad_batch(omen_store *s, size_t n, const uint8_t *ids, const uint64_t *off, const char *what) {
    float *v = calloc(n * DIM, sizeof(float));
    uint64_t l = live(s), d = dead(s);
    omen_status st = omen_put_batch(s, n, ids, off, v);
    EXPECT_MSG(st == OMEN_ERR_INVALID_ARGUMENT, "put_batch with %s: got %s, want OMEN_ERR_INVALID_ARGUMENT", what,
               omen_status_name(st));
    EXPECT_MSG(omen_last_error()[0] != '\0', "put_batch with %s: empty last error", what);
    EXPECT_MSG(live(s) == l && dead(s) == d, "put_batch with %s: stats changed (live %llu->%llu, dead %llu->%llu)",
               what, (unsigned long long)l, (unsigned long long)live(s), (unsigned long long)d,
               (unsigned long long)dead(s));
    {
        /* delete_batch and get_batch validate the same way */
        uint64_t deleted = 12345;
        float *out = malloc(n * DIM * sizeof(float));
        st = omen_delete_batch(s, n, ids, off, &deleted);
        EXPECT_MSG(st == OMEN_ERR_INVALID_ARGUMENT, "delete_batch with %s: got %s, want OMEN_ERR_INVALID_ARGUMENT", what,
                   omen_status_name(st));
        EXPECT_MSG(live(s) == l, "delete_batch with %s: live_vectors changed", what);
        st = omen_get_batch(s, n, ids, off, out, NULL);
        EXPECT_MSG(st == OMEN_ERR_INVALID_ARGUMENT, "get_batch with %s: got %s, want OMEN_ERR_INVALID_ARGUMENT", what,
                   omen_status_name(st));
        free(out);
    }
    free(v);
}

void test_put_rejects_bad_ids_atomically(void) {
    omen_store *s = NULL;
    uint8_t big[1100];
    uint64_t off[4];
    const uint8_t *abc = (const uint8_t *)"v0000000v0000001v0000002";
    CHECK_OK(new_store(&s));
    CHECK_OK(h_put_range(s, 0, 2, 1, DIM));
    memset(big, 'x', sizeof big);

    /* decreasing offsets */
    off[0] = 0; off[1] = 16; off[2] = 8; off[3] = 24;
    expect_bad_batch(s, 3, abc, off, "decreasing offsets");
    /* empty ID (equal offsets) in the middle */
    off[0] = 0; off[1] = 8; off[2] = 8; off[3] = 16;
    expect_bad_batch(s, 3, abc, off, "an empty ID");
    /* empty first ID */
    off[0] = 0; off[1] = 0; off[2] = 8; off[3] = 16;
    expect_bad_batch(s, 3, abc, off, "an empty first ID");
    /* 1025-byte ID after a good one */
    off[0] = 0; off[1] = 8; off[2] = 8 + 1025;
    expect_bad_batch(s, 2, big, off, "an ID of 1025 bytes");
    /* decreasing offsets with an Arrow-slice start */
    off[0] = 8; off[1] = 16; off[2] = 0;
    expect_bad_batch(s, 2, abc, off, "offsets going back below id_offsets[0]");

    CHECK_OK(h_get_index(s, 0, 1, DIM));
    CHECK_OK(h_get_index(s, 1, 1, DIM));
    CHECK_OK(omen_close(s));
}

void test_id_length_limits(void) {
    omen_store *s = NULL;
    uint8_t id[1024];
    uint64_t off[2] = {0, 1024};
    float v[DIM], out[DIM];
    const uint8_t *kid = NULL;
    size_t klen = 0, count = 0;
    omen_hit hit;
    CHECK_OK(new_store(&s));
    memset(id, 'q', sizeof id);
    id[0] = 'A';
    id[1023] = 'Z';
    h_vec(42, 1, DIM, v);
    CHECK_OK(omen_put_batch(s, 1, id, off, v));
    CHECK_OK(omen_get(s, id, 1024, out, DIM));
    CHECK(h_same_bits(v, out, DIM));
    /* a 1023-byte prefix is another ID */
    CHECK_ERR(OMEN_ERR_NOT_FOUND, omen_get(s, id, 1023, out, DIM));
    CHECK_OK(omen_search(s, v, 1, NULL, &hit, &count));
    CHECK(count == 1);
    CHECK_OK(omen_key_id(s, hit.key, &kid, &klen));
    CHECK_MSG(klen == 1024 && memcmp(kid, id, 1024) == 0, "omen_key_id gave %zu bytes, want the 1024-byte ID", klen);
    /* one-byte ID */
    off[1] = 1;
    CHECK_OK(omen_put_batch(s, 1, (const uint8_t *)"\xff", off, v));
    CHECK_OK(omen_get(s, (const uint8_t *)"\xff", 1, out, DIM));
    CHECK(live(s) == 2);
    CHECK_OK(omen_close(s));
}

void test_binary_ids(void) {
    omen_store *s = NULL;
    /* NUL bytes, invalid UTF-8, prefixes of each other */
    static const struct {
        const char *b;
        size_t n;
    } k[] = {
        {"a", 1},          {"a\0", 2},          {"\0a", 2},         {"a\0b", 3},
        {"a\0c", 3},       {"\0", 1},           {"\0\0", 2},        {"\xff\xfe", 2},
        {"\xc0\x80", 2},   {"\xed\xa0\x80", 3}, {"\x80", 1},        {"ab", 2},
    };
    const size_t n = sizeof k / sizeof k[0];
    h_ids ids;
    float v[12 * DIM], out[DIM];
    size_t i;
    omen_hit hits[12];
    size_t count = 0;

    CHECK_OK(new_store(&s));
    h_ids_init(&ids);
    for (i = 0; i < n; i++) {
        h_ids_add(&ids, k[i].b, k[i].n);
        h_vec(i, 7, DIM, v + i * DIM);
    }
    CHECK_OK(omen_put_batch(s, n, ids.bytes, ids.offsets, v));
    CHECK_MSG(live(s) == n, "live_vectors %llu, want %zu distinct binary IDs", (unsigned long long)live(s), n);
    for (i = 0; i < n; i++) {
        CHECK_OK(omen_get(s, (const uint8_t *)k[i].b, k[i].n, out, DIM));
        CHECK_MSG(h_same_bits(out, v + i * DIM, DIM), "binary ID #%zu returned another ID's vector", i);
    }
    /* search + key_id gives back the exact bytes */
    for (i = 0; i < n; i++) {
        const uint8_t *kid = NULL;
        size_t klen = 0;
        CHECK_OK(omen_search(s, v + i * DIM, 1, NULL, hits, &count));
        CHECK(count == 1);
        CHECK_OK(omen_key_id(s, hits[0].key, &kid, &klen));
        CHECK_MSG(klen == k[i].n && memcmp(kid, k[i].b, klen) == 0, "key_id of binary ID #%zu differs", i);
    }
    CHECK_OK(omen_close(s));
    /* and after reopening */
    {
        char p[4096];
        h_sub(p, sizeof p, "store");
        CHECK_OK(h_open(p, 0, &s));
        for (i = 0; i < n; i++) {
            CHECK_OK(omen_get(s, (const uint8_t *)k[i].b, k[i].n, out, DIM));
            CHECK_MSG(h_same_bits(out, v + i * DIM, DIM), "after reopen, binary ID #%zu has another vector", i);
        }
        CHECK_OK(omen_close(s));
    }
    h_ids_free(&ids);
}

void test_arrow_slice_offsets(void) {
    omen_store *s = NULL;
    const uint8_t *buf = (const uint8_t *)"GARBAGEhelloworld!";
    const uint64_t off[3] = {7, 12, 17};
    float v[2 * DIM], out[DIM];
    uint64_t deleted = 0;
    uint8_t found[2];
    float outs[2 * DIM];
    CHECK_OK(new_store(&s));
    h_vec(1, 1, DIM, v);
    h_vec(2, 1, DIM, v + DIM);
    CHECK_OK(omen_put_batch(s, 2, buf, off, v));
    CHECK(live(s) == 2);
    CHECK_OK(omen_get(s, (const uint8_t *)"hello", 5, out, DIM));
    CHECK(h_same_bits(out, v, DIM));
    CHECK_OK(omen_get(s, (const uint8_t *)"world", 5, out, DIM));
    CHECK(h_same_bits(out, v + DIM, DIM));
    CHECK_ERR(OMEN_ERR_NOT_FOUND, omen_get(s, (const uint8_t *)"GARBAGEhello", 12, out, DIM));
    CHECK_OK(omen_get_batch(s, 2, buf, off, outs, found));
    CHECK(found[0] == 1 && found[1] == 1);
    CHECK(h_same_bits(outs, v, 2 * DIM));
    CHECK_OK(omen_delete_batch(s, 2, buf, off, &deleted));
    CHECK_MSG(deleted == 2, "deleted %llu, want 2", (unsigned long long)deleted);
    CHECK(live(s) == 0);
    CHECK_OK(omen_close(s));
}

void test_empty_batches(void) {
    omen_store *s = NULL;
    uint64_t deleted = 77;
    uint64_t off0 = 5;
    float dummy[DIM];
    omen_stats a, b;
    CHECK_OK(new_store(&s));
    CHECK_OK(h_put_range(s, 0, 3, 1, DIM));
    CHECK_OK(h_stats(s, &a));
    CHECK_OK(omen_put_batch(s, 0, NULL, NULL, NULL));
    CHECK_OK(omen_delete_batch(s, 0, NULL, NULL, &deleted));
    CHECK_MSG(deleted == 0, "delete_batch with n == 0 set out_deleted to %llu, want 0", (unsigned long long)deleted);
    CHECK_OK(omen_delete_batch(s, 0, NULL, NULL, NULL));
    CHECK_OK(omen_get_batch(s, 0, NULL, NULL, NULL, NULL));
    /* n == 0 with non-NULL pointers too */
    CHECK_OK(omen_put_batch(s, 0, (const uint8_t *)"", &off0, dummy));
    CHECK_OK(h_stats(s, &b));
    CHECK(a.live_vectors == b.live_vectors && a.dead_slots == b.dead_slots && b.live_vectors == 3);
    CHECK_OK(omen_close(s));
}

void test_upsert_and_accounting(void) {
    omen_store *s = NULL;
    h_ids ids;
    uint64_t deleted = 0;
    size_t i;
    CHECK_OK(new_store(&s));
    CHECK_MSG(live(s) == 0 && dead(s) == 0, "fresh store: live %llu dead %llu", (unsigned long long)live(s),
              (unsigned long long)dead(s));
    CHECK_OK(h_put_range(s, 0, 10, 1, DIM));
    CHECK_MSG(live(s) == 10 && dead(s) == 0, "after 10 puts: live %llu dead %llu, want 10/0",
              (unsigned long long)live(s), (unsigned long long)dead(s));
    /* replace 3 */
    CHECK_OK(h_put_range(s, 2, 3, 2, DIM));
    CHECK_MSG(live(s) == 10 && dead(s) == 3, "after replacing 3: live %llu dead %llu, want 10/3",
              (unsigned long long)live(s), (unsigned long long)dead(s));
    for (i = 0; i < 10; i++) CHECK_OK(h_get_index(s, i, (i >= 2 && i < 5) ? 2 : 1, DIM));
    /* delete 2 existing + 1 missing */
    h_ids_init(&ids);
    h_ids_add_index(&ids, 0);
    h_ids_add_index(&ids, 3);
    h_ids_add_index(&ids, 999);
    CHECK_OK(omen_delete_batch(s, ids.n, ids.bytes, ids.offsets, &deleted));
    CHECK_MSG(deleted == 2, "deleted %llu, want 2", (unsigned long long)deleted);
    CHECK_MSG(live(s) == 8 && dead(s) == 5, "after deleting 2: live %llu dead %llu, want 8/5",
              (unsigned long long)live(s), (unsigned long long)dead(s));
    /* deleting again: nothing existed */
    CHECK_OK(omen_delete_batch(s, ids.n, ids.bytes, ids.offsets, &deleted));
    CHECK_MSG(deleted == 0, "second delete: deleted %llu, want 0", (unsigned long long)deleted);
    CHECK_MSG(live(s) == 8 && dead(s) == 5, "after deleting again: live %llu dead %llu, want 8/5",
              (unsigned long long)live(s), (unsigned long long)dead(s));
    CHECK_ERR(OMEN_ERR_NOT_FOUND, h_get_index(s, 0, 1, DIM));
    CHECK_ERR(OMEN_ERR_NOT_FOUND, h_get_index(s, 3, 2, DIM));
    /* put again after delete */
    CHECK_OK(h_put_range(s, 3, 1, 5, DIM));
    CHECK_OK(h_get_index(s, 3, 5, DIM));
    CHECK_MSG(live(s) == 9 && dead(s) == 5, "after re-put: live %llu dead %llu, want 9/5",
              (unsigned long long)live(s), (unsigned long long)dead(s));
    /* same ID twice in one delete batch: it existed once */
    h_ids_clear(&ids);
    h_ids_add_index(&ids, 7);
    h_ids_add_index(&ids, 7);
    CHECK_OK(omen_delete_batch(s, ids.n, ids.bytes, ids.offsets, &deleted));
    CHECK_MSG(deleted == 1, "deleting the same existing ID twice in one batch: deleted %llu, want 1",
              (unsigned long long)deleted);
    CHECK(live(s) == 8);
    h_ids_free(&ids);
    /* survives reopen */
    CHECK_OK(omen_close(s));
    {
        char p[4096];
        h_sub(p, sizeof p, "store");
        CHECK_OK(h_open(p, 0, &s));
        CHECK_MSG(live(s) == 8, "after reopen live %llu, want 8", (unsigned long long)live(s));
        CHECK_OK(h_get_index(s, 3, 5, DIM));
        CHECK_ERR(OMEN_ERR_NOT_FOUND, h_get_index(s, 7, 1, DIM));
        CHECK_OK(omen_close(s));
    }
}

void test_last_occurrence_wins(void) {
    omen_store *s = NULL;
    h_ids ids;
    float v[4 * DIM], out[DIM];
    uint64_t d;
    CHECK_OK(new_store(&s));
    h_ids_init(&ids);
    h_ids_add(&ids, "dup", 3);
    h_ids_add(&ids, "other", 5);
    h_ids_add(&ids, "dup", 3);
    h_ids_add(&ids, "dup", 3);
    h_vec(1, 1, DIM, v);
    h_vec(2, 1, DIM, v + DIM);
    h_vec(3, 1, DIM, v + 2 * DIM);
    h_vec(4, 1, DIM, v + 3 * DIM);
    CHECK_OK(omen_put_batch(s, 4, ids.bytes, ids.offsets, v));
    CHECK_OK(omen_get(s, (const uint8_t *)"dup", 3, out, DIM));
    CHECK_MSG(h_same_bits(out, v + 3 * DIM, DIM), "within one batch, the last occurrence of an ID did not win");
    CHECK_MSG(live(s) == 2, "live %llu, want 2", (unsigned long long)live(s));
    d = dead(s);
    CHECK_MSG(d <= 2, "dead_slots %llu after a batch with 2 superseded duplicates", (unsigned long long)d);
    {
        /* search sees only the winner */
        omen_hit hits[4];
        size_t count = 0, i;
        CHECK_OK(omen_search(s, v, 4, NULL, hits, &count));
        CHECK_MSG(count == 2, "search over a store of 2 live vectors returned %zu hits", count);
        for (i = 0; i < count; i++) {
            const uint8_t *kid;
            size_t klen;
            CHECK_OK(omen_key_id(s, hits[i].key, &kid, &klen));
            if (klen == 3) {
                float want = 0;
                size_t j;
                for (j = 0; j < DIM; j++) want += (v[j] - v[3 * DIM + j]) * (v[j] - v[3 * DIM + j]);
                CHECK_MSG(fabsf(hits[i].distance - want) <= 1e-4f * (1 + want),
                          "hit for \"dup\" has distance %g, want %g (the last occurrence)", hits[i].distance, want);
            }
        }
    }
    CHECK_OK(omen_close(s));
    h_ids_free(&ids);
}

void test_get_bit_exact(void) {
    omen_store *s = NULL;
    float v[DIM], out[DIM + 4];
    const uint64_t off[2] = {0, 7};
    size_t i;
    char p[4096];
    CHECK_OK(new_store(&s));
    v[0] = -0.0f;
    v[1] = 0.0f;
    v[2] = FLT_MAX;
    v[3] = -FLT_MAX;
    v[4] = FLT_MIN;          /* smallest normal */
    v[5] = FLT_MIN / 2.0f;   /* denormal */
    v[6] = -FLT_MIN / 1024.0f;
#ifdef FLT_TRUE_MIN
    v[7] = FLT_TRUE_MIN;
#else
    v[7] = 1.4e-45f;
#endif
    v[8] = 1.0f / 3.0f;
    v[9] = -1e-38f;
    v[10] = 3.4e38f;
    v[11] = 1e-45f;
    for (i = 12; i < DIM; i++) v[i] = (float)i * 1.1f;
    CHECK_OK(omen_put_batch(s, 1, (const uint8_t *)"special", off, v));
    for (i = 0; i < DIM + 4; i++) out[i] = 123.0f;
    CHECK_OK(omen_get(s, (const uint8_t *)"special", 7, out, DIM + 4)); /* out_len > dim is fine */
    CHECK_MSG(h_same_bits(v, out, DIM), "omen_get is not bit-exact for -0.0/denormals/FLT_MAX");
    /* too small */
    CHECK_ERR(OMEN_ERR_BUFFER_TOO_SMALL, omen_get(s, (const uint8_t *)"special", 7, out, DIM - 1));
    CHECK_ERR(OMEN_ERR_BUFFER_TOO_SMALL, omen_get(s, (const uint8_t *)"special", 7, out, 0));
    /* missing */
    CHECK_ERR(OMEN_ERR_NOT_FOUND, omen_get(s, (const uint8_t *)"specia", 6, out, DIM));
    CHECK_ERR(OMEN_ERR_NOT_FOUND, omen_get(s, (const uint8_t *)"specialx", 8, out, DIM));
    CHECK_OK(omen_close(s));
    /* the same after a reopen (read from disk) */
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_open(p, OMEN_OPEN_READ_ONLY, &s));
    memset(out, 0, sizeof out);
    CHECK_OK(omen_get(s, (const uint8_t *)"special", 7, out, DIM));
    CHECK_MSG(h_same_bits(v, out, DIM), "after reopen, omen_get is not bit-exact for -0.0/denormals/FLT_MAX");
    CHECK_OK(omen_close(s));
}

void test_get_batch_missing_rows(void) {
    omen_store *s = NULL;
    h_ids ids;
    float *out;
    uint8_t found[6];
    size_t i, j;
    const int present[6] = {1, 0, 1, 0, 0, 1};
    CHECK_OK(new_store(&s));
    CHECK_OK(h_put_range(s, 0, 6, 1, DIM));
    h_ids_init(&ids);
    for (i = 0; i < 6; i++) h_ids_add_index(&ids, present[i] ? i : 100 + i);
    out = malloc(6 * DIM * sizeof(float));
    memset(out, 0xFF, 6 * DIM * sizeof(float)); /* NaN garbage */
    memset(found, 7, sizeof found);
    CHECK_OK(omen_get_batch(s, 6, ids.bytes, ids.offsets, out, found));
    for (i = 0; i < 6; i++) {
        CHECK_MSG(found[i] == (present[i] ? 1 : 0), "found[%zu] = %u, want %d", i, found[i], present[i]);
        if (present[i]) {
            float want[DIM];
            h_vec(i, 1, DIM, want);
            CHECK_MSG(h_same_bits(want, out + i * DIM, DIM), "get_batch row %zu is not the vector put", i);
        } else {
            for (j = 0; j < DIM; j++) {
                uint32_t bits;
                memcpy(&bits, &out[i * DIM + j], 4);
                CHECK_MSG(bits == 0, "get_batch row %zu (missing ID) component %zu is 0x%08x, want +0.0", i, j, bits);
            }
        }
    }
    /* found may be NULL */
    memset(out, 0xFF, 6 * DIM * sizeof(float));
    CHECK_OK(omen_get_batch(s, 6, ids.bytes, ids.offsets, out, NULL));
    CHECK(out[1 * DIM] == 0.0f && out[4 * DIM + DIM - 1] == 0.0f);
    {
        float want[DIM];
        h_vec(5, 1, DIM, want);
        CHECK(h_same_bits(want, out + 5 * DIM, DIM));
    }
    /* all missing: still OK */
    h_ids_clear(&ids);
    h_ids_add(&ids, "nope", 4);
    CHECK_OK(omen_get_batch(s, 1, ids.bytes, ids.offsets, out, found));
    CHECK(found[0] == 0);
    free(out);
    h_ids_free(&ids);
    CHECK_OK(omen_close(s));
}

void test_big_batch_round_trip(void) {
    omen_store *s = NULL;
    size_t n = g_valgrind ? 3000 : 20000, i;
    h_ids ids;
    float *out;
    uint8_t *found;
    CHECK_OK(new_store(&s));
    CHECK_OK(h_put_range(s, 0, n, 1, DIM));
    CHECK(live(s) == n);
    h_ids_init(&ids);
    for (i = 0; i < n; i++) h_ids_add_index(&ids, n - 1 - i);
    out = malloc(n * DIM * sizeof(float));
    found = malloc(n);
    CHECK_OK(omen_get_batch(s, n, ids.bytes, ids.offsets, out, found));
    for (i = 0; i < n; i++) {
        float want[DIM];
        h_vec(n - 1 - i, 1, DIM, want);
        CHECK_MSG(found[i] == 1 && h_same_bits(want, out + i * DIM, DIM), "row %zu of a %zu-row get_batch is wrong", i, n);
    }
    free(out);
    free(found);
    h_ids_free(&ids);
    CHECK_OK(omen_close(s));
}

/* omen_contains of "v<index>": 0 or 1; 2 (a failure recorded) otherwise. */
static uint8_t contains_index(const omen_store *s, uint64_t index) {
    char id[32];
    uint8_t found = 7;
    int n = snprintf(id, sizeof id, "v%07llu", (unsigned long long)index);
    omen_status st = omen_contains(s, (const uint8_t *)id, (size_t)n, &found);
    if (st != OMEN_OK || found > 1) {
        h_fail(__FILE__, __LINE__, "omen_contains(%s): %s, found %u", id, omen_status_name(st), found);
        return 2;
    }
    return found;
}

/* omen_contains agrees with omen_get: an absent ID is OMEN_OK with 0
 * (never NOT_FOUND), deleted IDs are absent, compaction keeps the answer. */
void test_contains_agrees_with_get(void) {
    char p[4096];
    omen_store *s = NULL;
    h_ids ids;
    uint64_t i, pass;
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, 8, OMEN_METRIC_L2, 0, &s));
    CHECK(contains_index(s, 0) == 0);
    CHECK_OK(h_put_range(s, 0, 50, 1, 8));
    h_ids_init(&ids);
    for (i = 10; i < 20; i++) h_ids_add_index(&ids, i);
    CHECK_OK(omen_delete_batch(s, ids.n, ids.bytes, ids.offsets, NULL));
    h_ids_free(&ids);
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < 60; i++) {
            uint8_t want = h_get_index(s, i, 1, 8) == OMEN_OK;
            EXPECT_MSG(contains_index(s, i) == want, "pass %llu: contains(v%07llu) != get's answer %u",
                       (unsigned long long)pass, (unsigned long long)i, want);
        }
        CHECK_OK(omen_compact(s));
    }
    CHECK(contains_index(s, 9) == 1 && contains_index(s, 10) == 0 && contains_index(s, 50) == 0);
    CHECK_OK(omen_close(s));
}
