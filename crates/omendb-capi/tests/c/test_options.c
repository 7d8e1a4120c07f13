/* omen_options, creation and reopening. */
#include "harness.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

/* omen_options_default writes the first layout only (32 bytes: what callers
 * built against an earlier header allocated), omen_options_init as many
 * bytes as it is told. */
void test_options_default_values(void) {
    struct {
        omen_options o;
        uint32_t canary;
    } first;
    omen_options o;
    size_t first_len = offsetof(omen_options, ivf_lists);
    memset(&first, 0xAB, sizeof first);
    omen_options_default(&first.o);
    EXPECT_MSG(first.o.struct_size == first_len, "struct_size %u, want %zu", first.o.struct_size, first_len);
    EXPECT_MSG(first.o.ivf_lists == 0xABABABABu && first.canary == 0xABABABABu,
               "omen_options_default wrote past the first layout");
    memset(&first, 0xAB, sizeof first);
    CHECK_OK(omen_options_init(&first.o, (uint32_t)first_len));
    EXPECT_MSG(first.o.struct_size == first_len && first.o.ivf_lists == 0xABABABABu, "init of the first layout");
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_options_init(&first.o, (uint32_t)first_len - 4));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_options_init(NULL, sizeof o));
    /* A caller with a larger struct (a later header): ours is filled. */
    memset(&first, 0xAB, sizeof first);
    CHECK_OK(omen_options_init(&first.o, (uint32_t)sizeof first));
    EXPECT_MSG(first.o.struct_size == sizeof(omen_options) && first.o.ivf_lists == 0 && first.canary == 0xABABABABu,
               "init with a larger size: struct_size %u", first.o.struct_size);

    memset(&o, 0xAB, sizeof o);
    CHECK_OK(omen_options_init(&o, sizeof o));
    EXPECT_MSG(o.struct_size == sizeof(omen_options), "struct_size %u, want %zu", o.struct_size, sizeof(omen_options));
    EXPECT_MSG(o.ivf_lists == 0, "ivf_lists %u, want 0", o.ivf_lists);
    EXPECT_MSG(o.flags == 0, "flags 0x%x, want 0", o.flags);
    EXPECT_MSG(o.dim == 0, "dim %u, want 0", o.dim);
    EXPECT_MSG(o.metric == OMEN_METRIC_L2, "metric %u, want L2 (0)", o.metric);
    EXPECT_MSG(o.pq_m == 0, "pq_m %u, want 0 (no PQ)", o.pq_m);
    EXPECT_MSG(o.pq_bits == 8, "pq_bits %u, want 8", o.pq_bits);
    /* Not spelled out by the contract, but "0 = ..." is the documented default meaning. */
    EXPECT_MSG(o.pq_train_size == 0, "pq_train_size %u, want 0", o.pq_train_size);
    EXPECT_MSG(o.threads == 0, "threads %u, want 0", o.threads);
}

/* Expects creation with `o` to fail with `want`, and no store to be left. */
#define EXPECT_CREATE_FAILS(want, o, what)                                           \
    do {                                                                             \
        char p_[4096];                                                               \
        omen_store *s_ = NULL;                                                       \
        omen_status st_;                                                             \
        h_path(p_, sizeof p_, "%s/s%d", g_dir, __LINE__);                            \
        st_ = omen_open(p_, &(o), &s_);                                              \
        if ((int)st_ != (int)(want)) {                                               \
            h_fail(__FILE__, __LINE__, "create with %s: expected %s, got %s (%s)", what, \
                   omen_status_name(want), omen_status_name(st_), h_last_error());   \
            if (st_ == OMEN_OK) omen_close(s_);                                      \
        } else if (omen_last_error()[0] == '\0') {                                   \
            h_fail(__FILE__, __LINE__, "create with %s: empty omen_last_error()", what); \
        } else if (h_open(p_, 0, &s_) != OMEN_ERR_NOT_FOUND) {                       \
            h_fail(__FILE__, __LINE__, "create with %s failed but left a store behind", what); \
        }                                                                            \
    } while (0)

void test_options_invalid(void) {
    omen_options o;
    const uint32_t bad_pq_bits[] = {1, 2, 3, 5, 6, 7, 9, 16, 32, 0xFFFFFFFFu};
    size_t i;

    o = h_opts(OMEN_OPEN_CREATE, 8, OMEN_METRIC_L2);
    o.struct_size = 0;
    EXPECT_CREATE_FAILS(OMEN_ERR_INVALID_ARGUMENT, o, "struct_size 0");
    o.struct_size = 4;
    EXPECT_CREATE_FAILS(OMEN_ERR_INVALID_ARGUMENT, o, "struct_size 4");
    /* The first omen_options ended at threads: one field short of that is refused. */
    o.struct_size = (uint32_t)offsetof(omen_options, ivf_lists) - 4;
    EXPECT_CREATE_FAILS(OMEN_ERR_INVALID_ARGUMENT, o, "struct_size of the first layout - 4");
    o = h_opts(OMEN_OPEN_CREATE, 8, OMEN_METRIC_L2);
    o.pq_m = 4;
    o.ivf_lists = 10;
    EXPECT_CREATE_FAILS(OMEN_ERR_INVALID_ARGUMENT, o, "ivf_lists without OMEN_OPEN_IVF");

    o = h_opts(OMEN_OPEN_CREATE, 8, 3);
    EXPECT_CREATE_FAILS(OMEN_ERR_INVALID_ARGUMENT, o, "metric 3");
    o.metric = 0xFFFFFFFFu;
    EXPECT_CREATE_FAILS(OMEN_ERR_INVALID_ARGUMENT, o, "metric 0xFFFFFFFF");

    o = h_opts(OMEN_OPEN_CREATE | 0x40u, 8, OMEN_METRIC_L2);
    EXPECT_CREATE_FAILS(OMEN_ERR_INVALID_ARGUMENT, o, "flag bit 0x40");
    o = h_opts(OMEN_OPEN_CREATE | OMEN_OPEN_IVF, 8, OMEN_METRIC_L2);
    EXPECT_CREATE_FAILS(OMEN_ERR_INVALID_ARGUMENT, o, "OMEN_OPEN_IVF without PQ");
    o.flags = OMEN_OPEN_CREATE | 0x80000000u;
    EXPECT_CREATE_FAILS(OMEN_ERR_INVALID_ARGUMENT, o, "flag bit 0x80000000");

    o = h_opts(OMEN_OPEN_CREATE, 10, OMEN_METRIC_L2);
    o.pq_m = 3;
    EXPECT_CREATE_FAILS(OMEN_ERR_INVALID_ARGUMENT, o, "pq_m 3 with dim 10");
    o.dim = 8;
    o.pq_m = 16;
    EXPECT_CREATE_FAILS(OMEN_ERR_INVALID_ARGUMENT, o, "pq_m 16 with dim 8");

    for (i = 0; i < sizeof bad_pq_bits / sizeof bad_pq_bits[0]; i++) {
        char what[64];
        o = h_opts(OMEN_OPEN_CREATE, 8, OMEN_METRIC_L2);
        o.pq_m = 4;
        o.pq_bits = bad_pq_bits[i];
        snprintf(what, sizeof what, "pq_bits %u", bad_pq_bits[i]);
        EXPECT_CREATE_FAILS(OMEN_ERR_INVALID_ARGUMENT, o, what);
    }

    o = h_opts(OMEN_OPEN_CREATE, 0, OMEN_METRIC_L2);
    EXPECT_CREATE_FAILS(OMEN_ERR_INVALID_ARGUMENT, o, "dim 0");
    {
        /* dim 0 in an existing empty directory */
        char p[4096];
        omen_store *s = NULL;
        h_sub(p, sizeof p, "empty");
        CHECK(mkdir(p, 0700) == 0);
        CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_open(p, &o, &s));
        CHECK_ERR(OMEN_ERR_NOT_FOUND, h_open(p, 0, &s));
    }
}

void test_options_valid_pq_settings(void) {
    const uint32_t bits[] = {0, 4, 8};
    size_t i;
    for (i = 0; i < 3; i++) {
        char p[4096];
        omen_store *s = NULL;
        omen_stats st;
        omen_options o = h_opts(OMEN_OPEN_CREATE, 16, OMEN_METRIC_L2);
        o.pq_m = i == 0 ? 16 : 4;
        o.pq_bits = bits[i];
        h_path(p, sizeof p, "%s/s%zu", g_dir, i);
        CHECK_OK(omen_open(p, &o, &s));
        CHECK_OK(h_stats(s, &st));
        EXPECT_MSG(st.pq_m == o.pq_m, "pq_m %u, want %u", st.pq_m, o.pq_m);
        EXPECT_MSG(st.pq_bits == (bits[i] ? bits[i] : 8), "pq_bits %u, want %u (0 = 8)", st.pq_bits, bits[i]);
        EXPECT_MSG(st.pq_trained == 0, "pq_trained %u on a fresh store", st.pq_trained);
        CHECK_OK(omen_close(s));
    }
}

void test_open_missing_store(void) {
    char p[4096];
    omen_store *s = NULL;
    omen_options o = h_opts(0, 8, OMEN_METRIC_L2);

    h_sub(p, sizeof p, "nope");
    CHECK_ERR(OMEN_ERR_NOT_FOUND, omen_open(p, &o, &s));
    CHECK_ERR(OMEN_ERR_NOT_FOUND, omen_open(p, NULL, &s));
    CHECK_ERR(OMEN_ERR_NOT_FOUND, h_open(p, OMEN_OPEN_READ_ONLY, &s));
    CHECK_ERR(OMEN_ERR_NOT_FOUND, omen_recover(p, NULL, &s, NULL));
    /* an existing empty directory holds no store either */
    CHECK(mkdir(p, 0700) == 0);
    CHECK_ERR(OMEN_ERR_NOT_FOUND, omen_open(p, &o, &s));
    CHECK_ERR(OMEN_ERR_NOT_FOUND, h_open(p, OMEN_OPEN_READ_ONLY, &s));
}

void test_create_missing_parent(void) {
    char p[4096];
    omen_store *s = NULL;
    struct stat sb;
    omen_options o = h_opts(OMEN_OPEN_CREATE, 8, OMEN_METRIC_L2);
    h_sub(p, sizeof p, "no/such/parent");
    CHECK_ERR(OMEN_ERR_NOT_FOUND, omen_open(p, &o, &s));
    h_sub(p, sizeof p, "no");
    CHECK_MSG(stat(p, &sb) != 0, "a failed creation created the directory %s", p);
}

void test_create_in_existing_empty_dir(void) {
    char p[4096];
    omen_store *s = NULL;
    omen_stats st;
    h_sub(p, sizeof p, "dir");
    CHECK(mkdir(p, 0700) == 0);
    CHECK_OK(h_create(p, 8, OMEN_METRIC_IP, 0, &s));
    CHECK_OK(h_put_range(s, 0, 10, 1, 8));
    CHECK_OK(omen_close(s));
    CHECK_OK(h_open(p, 0, &s));
    CHECK_OK(h_stats(s, &st));
    EXPECT_MSG(st.live_vectors == 10, "live_vectors %llu, want 10", (unsigned long long)st.live_vectors);
    EXPECT_MSG(st.metric == OMEN_METRIC_IP, "metric %u, want IP", st.metric);
    CHECK_OK(h_get_index(s, 3, 1, 8));
    CHECK_OK(omen_close(s));
}

void test_create_flag_on_existing_store_keeps_data(void) {
    char p[4096];
    omen_store *s = NULL;
    omen_stats st;
    h_sub(p, sizeof p, "s");
    CHECK_OK(h_create(p, 8, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_put_range(s, 0, 5, 1, 8));
    CHECK_OK(omen_close(s));
    /* CREATE = "create the store if the directory holds none": here it holds one. */
    CHECK_OK(h_create(p, 8, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_stats(s, &st));
    EXPECT_MSG(st.live_vectors == 5, "CREATE on an existing store: live_vectors %llu, want 5",
               (unsigned long long)st.live_vectors);
    CHECK_OK(h_get_index(s, 4, 1, 8));
    CHECK_OK(omen_close(s));
}

void test_reopen_dimension_and_options(void) {
    char p[4096];
    omen_store *s = NULL;
    omen_stats st;
    omen_options o = h_opts(OMEN_OPEN_CREATE, 16, OMEN_METRIC_IP);
    o.pq_m = 4;
    o.pq_bits = 8;
    o.pq_train_size = 0;
    o.flags |= OMEN_OPEN_DROP_RAW;
    h_sub(p, sizeof p, "s");
    CHECK_OK(omen_open(p, &o, &s));
    CHECK_OK(h_put_range(s, 0, 3, 1, 16));
    CHECK_OK(omen_close(s));

    /* Another dimension: OMEN_ERR_DIMENSION */
    o = h_opts(0, 8, OMEN_METRIC_IP);
    CHECK_ERR(OMEN_ERR_DIMENSION, omen_open(p, &o, &s));
    o.dim = 17;
    CHECK_ERR(OMEN_ERR_DIMENSION, omen_open(p, &o, &s));
    o.flags = OMEN_OPEN_READ_ONLY;
    CHECK_ERR(OMEN_ERR_DIMENSION, omen_open(p, &o, &s));
    o.flags = OMEN_OPEN_CREATE;
    CHECK_ERR(OMEN_ERR_DIMENSION, omen_open(p, &o, &s));

    /* Other metric/PQ settings are ignored: the store's own values apply. */
    o = h_opts(0, 0, OMEN_METRIC_COSINE);
    o.pq_m = 2;
    o.pq_bits = 4;
    o.pq_train_size = 1;
    CHECK_OK(omen_open(p, &o, &s));
    CHECK_OK(h_stats(s, &st));
    EXPECT_MSG(st.dim == 16, "dim %u, want 16", st.dim);
    EXPECT_MSG(st.metric == OMEN_METRIC_IP, "metric %u, want the store's IP (1)", st.metric);
    EXPECT_MSG(st.pq_m == 4, "pq_m %u, want the store's 4", st.pq_m);
    EXPECT_MSG(st.pq_bits == 8 && st.pq_train_size == 0 && st.drop_raw == 1,
               "pq_bits %u pq_train_size %u drop_raw %u, want the store's 8/0/1", st.pq_bits, st.pq_train_size,
               st.drop_raw);
    EXPECT_MSG(st.pq_trained == 0, "pq_trained %u after reopen with pq_train_size 1", st.pq_trained);
    EXPECT_MSG(st.live_vectors == 3, "live_vectors %llu, want 3", (unsigned long long)st.live_vectors);
    /* pq_train_size=1 passed on reopen must be ignored: a put must not train */
    CHECK_OK(h_put_range(s, 3, 3, 1, 16));
    CHECK_OK(h_stats(s, &st));
    EXPECT_MSG(st.pq_trained == 0, "pq_train_size given on reopen was not ignored (store got trained)");
    CHECK_OK(omen_close(s));

    /* dim equal to the store's, and NULL options, both fine */
    o = h_opts(0, 16, OMEN_METRIC_L2);
    CHECK_OK(omen_open(p, &o, &s));
    CHECK_OK(h_stats(s, &st));
    EXPECT_MSG(st.metric == OMEN_METRIC_IP, "metric %u, want the store's IP (1)", st.metric);
    CHECK_OK(omen_close(s));
    CHECK_OK(omen_open(p, NULL, &s));
    CHECK_OK(h_stats(s, &st));
    EXPECT_MSG(st.dim == 16 && st.metric == OMEN_METRIC_IP && st.pq_m == 4,
               "with NULL options: dim %u metric %u pq_m %u, want 16/1/4", st.dim, st.metric, st.pq_m);
    CHECK_OK(omen_close(s));
}

/* Structs other than omen_options with a too-small struct_size. */
void test_struct_size_too_small_other_structs(void) {
    char p[4096];
    omen_store *s = NULL;
    omen_stats st;
    omen_recovery rep;
    omen_search_params sp;
    omen_hit hit;
    size_t count = 0;
    float q[8] = {0};

    h_sub(p, sizeof p, "s");
    CHECK_OK(h_create(p, 8, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_put_range(s, 0, 2, 1, 8));
    memset(&st, 0, sizeof st);
    st.struct_size = 0;
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_store_stats(s, &st));
    st.struct_size = 4;
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_store_stats(s, &st));

    memset(&sp, 0, sizeof sp);
    sp.struct_size = 0;
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_search(s, q, 1, &sp, &hit, &count));
    CHECK_OK(omen_close(s));

    memset(&rep, 0, sizeof rep);
    rep.struct_size = 0;
    s = NULL;
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_recover(p, NULL, &s, &rep));
    if (s) omen_close(s);
}

/* omen_stats grew pq_bits, pq_train_size, drop_raw and reserved after
 * heap_bytes. A caller built against the older header declares 72 bytes:
 * it gets every field up to heap_bytes, and nothing past them is written. */
void test_stats_older_struct_size(void) {
    char p[4096];
    omen_store *s = NULL;
    omen_stats full;
    union {
        omen_stats st;
        unsigned char b[sizeof(omen_stats) + 16];
    } u;
    unsigned char *buf = u.b;
    omen_stats *st = &u.st;
    const uint32_t older = (uint32_t)offsetof(omen_stats, pq_bits);
    omen_options o = h_opts(OMEN_OPEN_CREATE, 8, OMEN_METRIC_L2);
    size_t i;

    CHECK(older == 72);
    CHECK(offsetof(omen_stats, pq_auto_train_status) == 88); /* the layout before it ended at reserved */
    CHECK(offsetof(omen_stats, ivf_stages) == 104);          /* the layout before it ended at calibration_queries */
    o.pq_m = 2;
    o.pq_bits = 4;
    o.pq_train_size = 1000;
    h_sub(p, sizeof p, "s");
    CHECK_OK(omen_open(p, &o, &s));
    CHECK_OK(h_put_range(s, 0, 5, 1, 8));
    CHECK_OK(h_stats(s, &full));
    EXPECT_MSG(full.pq_bits == 4 && full.pq_train_size == 1000 && full.drop_raw == 0 && full.reserved == 0,
               "pq_bits %u pq_train_size %u drop_raw %u reserved %u, want 4/1000/0/0", full.pq_bits,
               full.pq_train_size, full.drop_raw, full.reserved);

    memset(buf, 0xA5, sizeof u.b);
    st->struct_size = older;
    CHECK_OK(omen_store_stats(s, st));
    EXPECT_MSG(st->struct_size == older, "struct_size rewritten to %u", st->struct_size);
    EXPECT_MSG(memcmp(buf + 4, (const unsigned char *)&full + 4, older - 4) == 0,
               "the fields up to heap_bytes differ from a full-size call");
    for (i = older; i < sizeof u.b; i++)
        CHECK_MSG(buf[i] == 0xA5, "byte %zu past the declared struct_size %u was written", i, older);

    /* One u32 short of the older layout: refused, nothing written. */
    memset(buf, 0xA5, sizeof u.b);
    st->struct_size = older - 4;
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_store_stats(s, st));
    for (i = 4; i < sizeof u.b; i++) CHECK_MSG(buf[i] == 0xA5, "byte %zu written by a refused call", i);

    /* Larger than this header's struct (a newer caller): the known fields, nothing past them. */
    memset(buf, 0xA5, sizeof u.b);
    st->struct_size = (uint32_t)sizeof u.b;
    CHECK_OK(omen_store_stats(s, st));
    EXPECT_MSG(memcmp(buf + 4, (const unsigned char *)&full + 4, sizeof full - 4) == 0,
               "a larger struct_size got other fields than a full-size call");
    for (i = sizeof full; i < sizeof u.b; i++) CHECK_MSG(buf[i] == 0xA5, "byte %zu past omen_stats was written", i);
    CHECK_OK(omen_close(s));
}

/* "On failure, nothing the call was asked to do has been applied": a
 * creation refused for bad options leaves the file system as it was. */
void test_failed_create_leaves_no_trace(void) {
    char p[4096];
    omen_store *s = NULL;
    struct stat sb;
    omen_options o = h_opts(OMEN_OPEN_CREATE, 0, OMEN_METRIC_L2);
    h_sub(p, sizeof p, "new");
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_open(p, &o, &s));
    EXPECT_MSG(stat(p, &sb) != 0, "omen_open(CREATE, dim 0) failed but created the directory %s", p + strlen(g_dir));
    o.dim = 10;
    o.pq_m = 3;
    h_sub(p, sizeof p, "new2");
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_open(p, &o, &s));
    EXPECT_MSG(stat(p, &sb) != 0, "omen_open(CREATE, pq_m 3 for dim 10) failed but created the directory %s",
               p + strlen(g_dir));
    /* an existing empty directory stays empty */
    h_sub(p, sizeof p, "empty");
    CHECK(mkdir(p, 0700) == 0);
    o.dim = 0;
    o.pq_m = 0;
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_open(p, &o, &s));
    {
        DIR *d = opendir(p);
        struct dirent *e;
        CHECK(d != NULL);
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                h_fail(__FILE__, __LINE__, "omen_open(CREATE, dim 0) in an empty directory failed but left \"%s\" in it",
                       e->d_name);
        closedir(d);
    }
}

/* On an existing store metric, pq_m, pq_bits and pq_train_size are ignored
 * (even values that would be invalid for a creation), and so is
 * OMEN_OPEN_DROP_RAW (fixed at creation). */
void test_reopen_ignores_creation_settings(void) {
    char p[4096];
    omen_store *s = NULL;
    omen_stats st;
    omen_options o;
    h_sub(p, sizeof p, "s");
    CHECK_OK(h_create(p, 8, OMEN_METRIC_COSINE, 0, &s));
    CHECK_OK(h_put_range(s, 0, 4, 1, 8));
    CHECK_OK(omen_close(s));

    o = h_opts(0, 0, 7);
    o.pq_m = 3;
    o.pq_bits = 5;
    CHECK_OK(omen_open(p, &o, &s));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.metric == OMEN_METRIC_COSINE && st.pq_m == 0, "metric %u pq_m %u after reopen with other settings",
              st.metric, st.pq_m);
    CHECK_OK(omen_close(s));
    o.flags = OMEN_OPEN_CREATE; /* CREATE on an existing store: still ignored */
    CHECK_OK(omen_open(p, &o, &s));
    CHECK_OK(omen_close(s));
    o = h_opts(OMEN_OPEN_DROP_RAW, 0, OMEN_METRIC_L2);
    CHECK_OK(omen_open(p, &o, &s));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.raw_kept == 1 && st.drop_raw == 0 && st.metric == OMEN_METRIC_COSINE,
              "reopen with DROP_RAW: raw_kept %u drop_raw %u metric %u", st.raw_kept, st.drop_raw, st.metric);
    CHECK_OK(h_get_index(s, 2, 1, 8));
    CHECK_OK(omen_close(s));
    o.flags = OMEN_OPEN_DROP_RAW | OMEN_OPEN_READ_ONLY;
    CHECK_OK(omen_open(p, &o, &s));
    CHECK_OK(h_get_index(s, 3, 1, 8));
    CHECK_OK(omen_close(s));
}

/* OMEN_OPEN_HUGE_PAGES changes only how puts lay the vectors file out in
 * the page cache (each batch padded to its 2 MiB page): past 8 MiB of
 * vectors, batches ending anywhere in a page read back exactly, across
 * reopens that switch the flag off and on again. */
void test_huge_pages_flag_round_trip(void) {
    char p[4096];
    omen_store *s = NULL;
    const uint32_t dim = 768;
    const uint64_t sizes[] = {1000, 1000, 1000, 1000, 333, 1000, 777};
    uint64_t n = 0;
    h_sub(p, sizeof p, "s");
    for (int round = 0; round < 3; round++) {
        if (round == 0) CHECK_OK(h_create(p, dim, OMEN_METRIC_L2, OMEN_OPEN_HUGE_PAGES, &s));
        else CHECK_OK(h_open(p, round == 1 ? 0 : OMEN_OPEN_HUGE_PAGES, &s));
        for (int b = 0; b < (round == 0 ? 5 : 1); b++) {
            uint64_t m = sizes[round == 0 ? b : 4 + round];
            CHECK_OK(h_put_range(s, n, m, 1, dim));
            n += m;
        }
        for (uint64_t i = 0; i < n; i += 7) CHECK_OK(h_get_index(s, i, 1, dim));
        CHECK_OK(h_get_index(s, n - 1, 1, dim));
        CHECK_OK(omen_checkpoint(s, NULL));
        CHECK_OK(omen_close(s));
    }
    CHECK_MSG(n * dim * 4 > (12u << 20), "only %llu vectors: not past the padding threshold", (unsigned long long)n);
    CHECK_OK(h_open(p, 0, &s));
    for (uint64_t i = 0; i < n; i++) CHECK_OK(h_get_index(s, i, 1, dim));
    CHECK_OK(omen_close(s));
}
