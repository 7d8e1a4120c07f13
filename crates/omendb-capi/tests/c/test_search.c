/* omen_search, omen_search_batch and omen_key_id against a brute force. */
#include "harness.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#define DIM 24
#define N 500

typedef struct model {
    uint32_t metric;
    int alive[N + 50];
    uint64_t version[N + 50];
    size_t n; /* indices [0, n) were ever put */
} model;

typedef struct ref_hit {
    size_t index;
    double dist;
} ref_hit;

static double ref_distance(uint32_t metric, const float *a, const float *b) {
    double dot = 0, na = 0, nb = 0, l2 = 0;
    size_t j;
    for (j = 0; j < DIM; j++) {
        double d = (double)a[j] - (double)b[j];
        dot += (double)a[j] * (double)b[j];
        na += (double)a[j] * (double)a[j];
        nb += (double)b[j] * (double)b[j];
        l2 += d * d;
    }
    if (metric == OMEN_METRIC_L2) return l2;
    if (metric == OMEN_METRIC_IP) return -dot;
    return 1.0 - dot / (sqrt(na) * sqrt(nb));
}

static int cmp_ref(const void *x, const void *y) {
    const ref_hit *a = x, *b = y;
    return a->dist < b->dist ? -1 : a->dist > b->dist ? 1 : 0;
}

static size_t brute_force(const model *m, const float *q, ref_hit *out) {
    size_t i, c = 0;
    float v[DIM];
    for (i = 0; i < m->n; i++) {
        if (!m->alive[i]) continue;
        h_vec(i, m->version[i], DIM, v);
        out[c].index = i;
        out[c].dist = ref_distance(m->metric, q, v);
        c++;
    }
    qsort(out, c, sizeof *out, cmp_ref);
    return c;
}

static int close_enough(double got, double want) {
    return fabs(got - want) <= 2e-5 * (1.0 + fabs(want));
}

/* Index from an ID "v0000123"; (size_t)-1 if not of that form. */
static size_t parse_index(const uint8_t *id, size_t len) {
    size_t i, v = 0;
    if (len != 8 || id[0] != 'v') return (size_t)-1;
    for (i = 1; i < 8; i++) {
        if (id[i] < '0' || id[i] > '9') return (size_t)-1;
        v = v * 10 + (size_t)(id[i] - '0');
    }
    return v;
}

/* Checks hits[0..count) for query q against the model. */
static void check_hits(const omen_store *s, const model *m, const float *q, size_t k, const omen_hit *hits,
                       size_t count, const char *what) {
    ref_hit *ref = malloc((m->n + 1) * sizeof *ref);
    size_t live = brute_force(m, q, ref), i, j;
    size_t want = k < live ? k : live;
    CHECK_MSG(count == want, "%s: out_count %zu, want %zu (k %zu, live %zu)", what, count, want, k, live);
    for (i = 0; i < count; i++) {
        const uint8_t *id = NULL;
        size_t len = 0, idx;
        float v[DIM];
        CHECK_MSG(hits[i].reserved == 0, "%s: hit %zu reserved = %u, want 0", what, i, hits[i].reserved);
        CHECK_MSG(i == 0 || hits[i - 1].distance <= hits[i].distance, "%s: hits not ascending at %zu (%g > %g)", what,
                  i, hits[i - 1].distance, hits[i].distance);
        CHECK_MSG(close_enough(hits[i].distance, ref[i].dist), "%s: hit %zu distance %.7g, brute force %.7g", what, i,
                  hits[i].distance, ref[i].dist);
        CHECK_OK(omen_key_id(s, hits[i].key, &id, &len));
        idx = parse_index(id, len);
        CHECK_MSG(idx < m->n, "%s: hit %zu has an ID that was never put (%zu bytes)", what, i, len);
        CHECK_MSG(m->alive[idx], "%s: hit %zu is v%07zu, which was deleted", what, i, idx);
        h_vec(idx, m->version[idx], DIM, v);
        CHECK_MSG(close_enough(hits[i].distance, ref_distance(m->metric, q, v)),
                  "%s: hit %zu (v%07zu) distance %.7g does not match its current vector (%.7g); stale version?", what, i,
                  idx, hits[i].distance, ref_distance(m->metric, q, v));
        for (j = 0; j < i; j++) CHECK_MSG(hits[j].key != hits[i].key, "%s: key returned twice", what);
    }
    free(ref);
}

static void build(omen_store **s, model *m, uint32_t metric) {
    char p[4096];
    h_ids ids;
    size_t i;
    uint64_t d;
    memset(m, 0, sizeof *m);
    m->metric = metric;
    m->n = N;
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, metric, 0, s));
    CHECK_OK(h_put_range(*s, 0, N, 1, DIM));
    for (i = 0; i < N; i++) {
        m->alive[i] = 1;
        m->version[i] = 1;
    }
    /* replace every 7th, delete every 5th */
    h_ids_init(&ids);
    for (i = 0; i < N; i += 7) {
        CHECK_OK(h_put_range(*s, i, 1, 2, DIM));
        m->version[i] = 2;
    }
    for (i = 0; i < N; i += 5) {
        h_ids_add_index(&ids, i);
        m->alive[i] = 0;
    }
    CHECK_OK(omen_delete_batch(*s, ids.n, ids.bytes, ids.offsets, &d));
    CHECK(d == ids.n);
    h_ids_free(&ids);
}

static void search_metric(uint32_t metric) {
    omen_store *s = NULL;
    model m;
    h_rng r;
    float q[DIM];
    omen_hit *hits = malloc((N + 20) * sizeof *hits);
    size_t count, qi;
    build(&s, &m, metric);
    if (g_failures) return;
    h_rng_seed(&r, 99 + metric);
    for (qi = 0; qi < 6; qi++) {
        char what[64];
        const size_t ks[] = {1, 10, N + 20};
        size_t ki;
        if (qi < 3) {
            h_rng_fill(&r, q, DIM);
        } else {
            /* a stored vector (alive or deleted) as the query */
            h_vec(qi * 5 + (qi == 4), m.version[qi * 5 + (qi == 4)], DIM, q);
        }
        for (ki = 0; ki < 3; ki++) {
            memset(hits, 0xFF, (N + 20) * sizeof *hits);
            count = 12345;
            snprintf(what, sizeof what, "metric %u query %zu k %zu", metric, qi, ks[ki]);
            CHECK_OK(omen_search(s, q, ks[ki], NULL, hits, &count));
            check_hits(s, &m, q, ks[ki], hits, count, what);
            if (g_failures) return;
        }
    }
    free(hits);
    CHECK_OK(omen_close(s));
}

void test_search_l2_exact(void) {
    search_metric(OMEN_METRIC_L2);
}

void test_search_ip_exact(void) {
    search_metric(OMEN_METRIC_IP);
}

void test_search_cosine_exact(void) {
    search_metric(OMEN_METRIC_COSINE);
}

void test_search_after_reopen(void) {
    char p[4096];
    omen_store *s = NULL;
    model m;
    float q[DIM];
    omen_hit hits[20];
    size_t count;
    h_rng r;
    build(&s, &m, OMEN_METRIC_L2);
    if (g_failures) return;
    CHECK_OK(omen_close(s));
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_open(p, OMEN_OPEN_READ_ONLY, &s));
    h_rng_seed(&r, 5);
    h_rng_fill(&r, q, DIM);
    CHECK_OK(omen_search(s, q, 20, NULL, hits, &count));
    check_hits(s, &m, q, 20, hits, count, "after reopen");
    CHECK_OK(omen_close(s));
}

void test_search_params_and_batch(void) {
    omen_store *s = NULL;
    model m;
    h_rng r;
    enum { NQ = 7, K = 10 };
    float qs[NQ * DIM];
    omen_hit loop[NQ * K], batch[NQ * K], other[K];
    size_t loop_counts[NQ], counts[NQ], count, i, j;
    omen_search_params sp;
    build(&s, &m, OMEN_METRIC_COSINE);
    if (g_failures) return;
    h_rng_seed(&r, 1234);
    h_rng_fill(&r, qs, NQ * DIM);
    for (i = 0; i < NQ; i++) CHECK_OK(omen_search(s, qs + i * DIM, K, NULL, loop + i * K, &loop_counts[i]));

    /* params NULL = defaults = explicit zeroes; exact = 1 is the same without PQ */
    for (j = 0; j < 4; j++) {
        memset(&sp, 0, sizeof sp);
        sp.struct_size = sizeof sp;
        sp.exact = j >= 1;
        sp.threads = j == 2 ? 1 : j == 3 ? 3 : 0;
        CHECK_OK(omen_search(s, qs, K, &sp, other, &count));
        CHECK_MSG(count == loop_counts[0], "params variant %zu: count %zu vs %zu", j, count, loop_counts[0]);
        for (i = 0; i < count; i++)
            CHECK_MSG(other[i].key == loop[i].key && other[i].distance == loop[i].distance,
                      "params variant %zu: hit %zu differs from params NULL", j, i);
    }

    /* batch == loop, with NULL params and with explicit params */
    for (j = 0; j < 3; j++) {
        memset(&sp, 0, sizeof sp);
        sp.struct_size = sizeof sp;
        sp.exact = 1;
        sp.threads = (uint32_t)j;
        memset(batch, 0xFF, sizeof batch);
        for (i = 0; i < NQ; i++) counts[i] = 999;
        CHECK_OK(omen_search_batch(s, NQ, qs, K, j == 0 ? NULL : &sp, batch, counts));
        for (i = 0; i < NQ; i++) {
            size_t h;
            CHECK_MSG(counts[i] == loop_counts[i], "search_batch query %zu: count %zu, loop %zu", i, counts[i],
                      loop_counts[i]);
            for (h = 0; h < counts[i]; h++) {
                const omen_hit *a = &batch[i * K + h], *b = &loop[i * K + h];
                CHECK_MSG(a->key == b->key && close_enough(a->distance, b->distance),
                          "search_batch query %zu hit %zu (key %llu, %.7g) != omen_search (key %llu, %.7g)", i, h,
                          (unsigned long long)a->key, a->distance, (unsigned long long)b->key, b->distance);
            }
            check_hits(s, &m, qs + i * DIM, K, batch + i * K, counts[i], "search_batch");
        }
    }
    /* nq == 0 */
    CHECK_OK(omen_search_batch(s, 0, qs, K, NULL, batch, counts));
    /* k larger than the store in a batch */
    {
        omen_hit *big = malloc(2 * (N + 5) * sizeof *big);
        size_t c2[2];
        CHECK_OK(omen_search_batch(s, 2, qs, N + 5, NULL, big, c2));
        check_hits(s, &m, qs, N + 5, big, c2[0], "search_batch k > n, query 0");
        check_hits(s, &m, qs + DIM, N + 5, big + (N + 5), c2[1], "search_batch k > n, query 1");
        free(big);
    }
    CHECK_OK(omen_close(s));
}

void test_search_rejects_non_finite_query(void) {
    omen_store *s = NULL;
    model m;
    float q[2 * DIM];
    omen_hit hits[4];
    size_t count, counts[2];
    build(&s, &m, OMEN_METRIC_L2);
    if (g_failures) return;
    h_vec(1, 1, DIM, q);
    h_vec(2, 1, DIM, q + DIM);
    q[3] = NAN;
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search(s, q, 2, NULL, hits, &count));
    q[3] = INFINITY;
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search(s, q, 2, NULL, hits, &count));
    q[3] = 0.5f;
    q[DIM + 5] = -INFINITY;
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search_batch(s, 2, q, 2, NULL, hits, counts));
    CHECK_OK(omen_close(s));
}

void test_search_empty_store_and_deleted(void) {
    char p[4096];
    omen_store *s = NULL;
    float q[DIM];
    omen_hit hits[8];
    size_t count = 99;
    h_ids ids;
    uint64_t d;
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    h_vec(0, 1, DIM, q);
    CHECK_OK(omen_search(s, q, 8, NULL, hits, &count));
    CHECK_MSG(count == 0, "search on an empty store: out_count %zu", count);
    CHECK_OK(h_put_range(s, 0, 3, 1, DIM));
    h_ids_init(&ids);
    h_ids_add_index(&ids, 0);
    h_ids_add_index(&ids, 1);
    h_ids_add_index(&ids, 2);
    CHECK_OK(omen_delete_batch(s, 3, ids.bytes, ids.offsets, &d));
    h_ids_free(&ids);
    count = 99;
    CHECK_OK(omen_search(s, q, 8, NULL, hits, &count));
    CHECK_MSG(count == 0, "search after deleting everything: out_count %zu", count);
    CHECK_OK(omen_close(s));
}

void test_key_id_stability(void) {
    omen_store *s = NULL;
    model m;
    float q[DIM];
    omen_hit hits[10];
    size_t count, i;
    const uint8_t *id;
    size_t len;
    size_t idx[10];
    omen_status st;
    build(&s, &m, OMEN_METRIC_L2);
    if (g_failures) return;
    h_vec(3, 1, DIM, q);
    CHECK_OK(omen_search(s, q, 10, NULL, hits, &count));
    CHECK(count == 10);
    for (i = 0; i < count; i++) {
        CHECK_OK(omen_key_id(s, hits[i].key, &id, &len));
        idx[i] = parse_index(id, len);
    }
    /* more writes (no compaction): the keys keep naming the same IDs */
    CHECK_OK(h_put_range(s, N, 50, 1, DIM));
    CHECK_OK(omen_checkpoint(s, NULL));
    for (i = 0; i < count; i++) {
        CHECK_OK(omen_key_id(s, hits[i].key, &id, &len));
        CHECK_MSG(parse_index(id, len) == idx[i], "key %llu named v%07zu, now another ID after unrelated writes",
                  (unsigned long long)hits[i].key, idx[i]);
    }
    /* a key that was never handed out */
    st = omen_key_id(s, UINT64_MAX, &id, &len);
    CHECK_MSG(st == OMEN_ERR_NOT_FOUND || st == OMEN_ERR_INVALID_ARGUMENT,
              "omen_key_id(UINT64_MAX): %s, want NOT_FOUND or INVALID_ARGUMENT", omen_status_name(st));
    st = omen_key_id(s, (uint64_t)1 << 40, &id, &len);
    CHECK_MSG(st == OMEN_ERR_NOT_FOUND || st == OMEN_ERR_INVALID_ARGUMENT,
              "omen_key_id(2^40): %s, want NOT_FOUND or INVALID_ARGUMENT", omen_status_name(st));
    CHECK_OK(omen_close(s));
}

/* The zero-copy ID pointer stays valid while the store grows (until compact/close). */
void test_key_id_pointer_survives_growth(void) {
    char p[4096];
    omen_store *s = NULL;
    const uint32_t dim = 4;
    uint8_t id0[1000];
    uint64_t off[2] = {0, sizeof id0};
    float v[4] = {1, 2, 3, 4};
    omen_hit hit;
    size_t count, round;
    const uint8_t *ptr = NULL;
    size_t len = 0;
    h_ids ids;
    float *vs;

    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, dim, OMEN_METRIC_L2, 0, &s));
    memset(id0, 'k', sizeof id0);
    CHECK_OK(omen_put_batch(s, 1, id0, off, v));
    CHECK_OK(omen_search(s, v, 1, NULL, &hit, &count));
    CHECK(count == 1);
    CHECK_OK(omen_key_id(s, hit.key, &ptr, &len));
    CHECK(len == sizeof id0 && memcmp(ptr, id0, len) == 0);
    /* ~40 MB of new IDs: the ID storage has to grow several times */
    h_ids_init(&ids);
    vs = calloc(4000 * dim, sizeof(float));
    for (round = 0; round < (g_valgrind ? 3u : 10u); round++) {
        size_t i;
        h_ids_clear(&ids);
        for (i = 0; i < 4000; i++) {
            char buf[1000];
            memset(buf, 'a' + (int)(round % 26), sizeof buf);
            snprintf(buf, 32, "r%zu-%zu-", round, i);
            h_ids_add(&ids, buf, sizeof buf);
        }
        CHECK_OK(omen_put_batch(s, 4000, ids.bytes, ids.offsets, vs));
        CHECK_OK(omen_checkpoint(s, NULL));
        CHECK_MSG(memcmp(ptr, id0, sizeof id0) == 0, "the omen_key_id pointer changed after round %zu of growth", round);
    }
    free(vs);
    h_ids_free(&ids);
    CHECK_OK(omen_close(s));
}

typedef struct filter_ctx {
    const omen_store *s;
    int calls;
    int reentry_failed;
} filter_ctx;

/* Keeps indices divisible by 3; reads the store from inside the filter. */
static int32_t keep_multiples_of_3(void *user, const uint8_t *id, size_t len) {
    filter_ctx *c = user;
    float v[DIM];
    c->calls++;
    if (omen_get(c->s, id, len, v, DIM) != OMEN_OK) c->reentry_failed = 1;
    return parse_index(id, len) % 3 == 0;
}

/* Sets keep_multiples_of_3, with a fresh ctx, as the params' predicate. */
static void use_predicate(omen_search_params *sp, filter_ctx *ctx, const omen_store *s) {
    memset(ctx, 0, sizeof *ctx);
    ctx->s = s;
    sp->filter_fn = keep_multiples_of_3;
    sp->filter_user = ctx;
}

/* The model restricted to what a filter allows. */
static void restrict_model(const model *m, model *f, int by_list, int by_fn) {
    size_t i;
    *f = *m;
    for (i = 0; i < m->n; i++)
        f->alive[i] = m->alive[i] && (!by_list || i % 10 == 3) && (!by_fn || i % 3 == 0);
}

/* omen_search_params' filter fields: an ID allow-list (deleted and unknown
 * IDs in it are ignored), a predicate on the ID (which may call back into
 * the store), both together, in single and batch searches; an empty list
 * allows nothing; a caller with the older 16-byte struct searches
 * unfiltered; bad list offsets are refused. Exact search, so the hits must
 * be exactly the brute force over the allowed vectors. */
void test_search_filters(void) {
    omen_store *s = NULL;
    model m, f;
    float q[2 * DIM];
    omen_hit hits[2 * 20];
    size_t count, counts[2], i;
    omen_search_params sp;
    filter_ctx ctx;
    h_ids ids;
    build(&s, &m, OMEN_METRIC_L2);
    if (g_failures) return;
    h_vec(7, 1, DIM, q);
    h_vec(8, 2, DIM, q + DIM);
    h_ids_init(&ids);
    for (i = 3; i < N; i += 10) h_ids_add_index(&ids, i);
    h_ids_add(&ids, "nope", 4);
    memset(&sp, 0, sizeof sp);
    sp.struct_size = sizeof sp;
    sp.exact = 1;

    sp.filter_n = ids.n;
    sp.filter_ids = ids.bytes;
    sp.filter_id_offsets = ids.offsets;
    restrict_model(&m, &f, 1, 0);
    CHECK_OK(omen_search(s, q, 20, &sp, hits, &count));
    check_hits(s, &f, q, 20, hits, count, "allow-list");
    if (g_failures) return;

    use_predicate(&sp, &ctx, s);
    restrict_model(&m, &f, 1, 1);
    CHECK_OK(omen_search(s, q, 20, &sp, hits, &count));
    check_hits(s, &f, q, 20, hits, count, "allow-list and predicate");
    if (g_failures) return;
    CHECK_MSG(!ctx.reentry_failed, "omen_get from inside the filter failed");
    CHECK_MSG(ctx.calls == 50, "the predicate ran %d times, want 50 (the live IDs of the list)", ctx.calls);

    sp.filter_id_offsets = NULL; /* predicate alone, batch: evaluated once per call */
    ctx.calls = 0;
    restrict_model(&m, &f, 0, 1);
    CHECK_OK(omen_search_batch(s, 2, q, 20, &sp, hits, counts));
    check_hits(s, &f, q, 20, hits, counts[0], "predicate, batch query 0");
    check_hits(s, &f, q + DIM, 20, hits + 20, counts[1], "predicate, batch query 1");
    if (g_failures) return;
    CHECK_MSG(ctx.calls == 400, "the predicate ran %d times, want 400 (once per live vector)", ctx.calls);

    sp.filter_fn = NULL; /* an empty list allows nothing */
    sp.filter_n = 0;
    sp.filter_id_offsets = ids.offsets;
    CHECK_OK(omen_search(s, q, 20, &sp, hits, &count));
    CHECK_MSG(count == 0, "an empty allow-list returned %zu hits", count);

    sp.filter_n = 2; /* offsets that decrease */
    {
        const uint64_t bad[3] = {0, 8, 4};
        sp.filter_id_offsets = bad;
        CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search(s, q, 20, &sp, hits, &count));
        CHECK_MSG(strstr(omen_last_error(), "filter") != NULL, "message: %s", omen_last_error());
    }

    /* A caller built before the filter fields: struct_size 16, whatever
     * lies past it, searches unfiltered. */
    sp.struct_size = (uint32_t)offsetof(omen_search_params, filter_n);
    CHECK(sp.struct_size == 16);
    sp.filter_n = 1;
    sp.filter_id_offsets = (const uint64_t *)(uintptr_t)8; /* garbage that must not be read */
    CHECK_OK(omen_search(s, q, 20, &sp, hits, &count));
    check_hits(s, &m, q, 20, hits, count, "struct_size 16");
    h_ids_free(&ids);
    CHECK_OK(omen_close(s));
}

/* The IDs omen_search_ids / omen_search_batch_ids wrote for nq rows of k
 * hit slots: each hit's ID is what omen_key_id says, the unused slots of a
 * short row are empty, and the offsets end at the needed size. */
static void check_hit_ids(const omen_store *s, size_t nq, size_t k, const omen_hit *hits, const size_t *counts,
                          const uint8_t *bytes, const uint64_t *offsets, size_t needed, const char *what) {
    size_t i, j;
    CHECK_MSG(offsets[0] == 0, "%s: id_offsets[0] = %llu", what, (unsigned long long)offsets[0]);
    for (i = 0; i < nq; i++) {
        for (j = 0; j < k; j++) {
            size_t slot = i * k + j;
            uint64_t start = offsets[slot], end = offsets[slot + 1];
            CHECK_MSG(start <= end && end <= needed, "%s: offsets of hit %zu/%zu: %llu..%llu", what, i, j,
                      (unsigned long long)start, (unsigned long long)end);
            if (j < counts[i]) {
                const uint8_t *id;
                size_t len;
                CHECK_OK(omen_key_id(s, hits[slot].key, &id, &len));
                CHECK_MSG(end - start == len && memcmp(bytes + start, id, len) == 0,
                          "%s: ID of hit %zu/%zu differs from omen_key_id", what, i, j);
            } else {
                CHECK_MSG(start == end, "%s: missing hit %zu/%zu has a %llu-byte ID", what, i, j,
                          (unsigned long long)(end - start));
            }
        }
    }
    CHECK_MSG(offsets[nq * k] == needed, "%s: last offset %llu, needed %zu", what,
              (unsigned long long)offsets[nq * k], needed);
}

void test_search_ids(void) {
    enum { K = 20, NQ = 3 };
    omen_store *s = NULL;
    model m, f;
    float q[NQ * DIM];
    omen_hit hits[NQ * K], plain[NQ * K];
    size_t count, plain_count, counts[NQ], plain_counts[NQ], needed, want, i;
    uint8_t bytes[NQ * K * 16];
    uint64_t offsets[NQ * K + 1], good[K + 1];
    omen_search_params sp;
    filter_ctx ctx;
    h_ids ids;
    build(&s, &m, OMEN_METRIC_L2);
    if (g_failures) return;
    for (i = 0; i < NQ; i++) h_vec(7 + i, 1, DIM, q + i * DIM);
    memset(&sp, 0, sizeof sp);
    sp.struct_size = sizeof sp;
    sp.exact = 1;

    /* One query: the same hits as omen_search, with their IDs. */
    CHECK_OK(omen_search(s, q, K, &sp, plain, &plain_count));
    CHECK_OK(omen_search_ids(s, q, K, &sp, hits, &count, bytes, sizeof bytes, offsets, &needed));
    CHECK_MSG(count == plain_count && count == K, "omen_search_ids found %zu hits, omen_search %zu", count,
              plain_count);
    CHECK(memcmp(hits, plain, count * sizeof *hits) == 0);
    check_hit_ids(s, 1, K, hits, &count, bytes, offsets, needed, "search_ids");
    if (g_failures) return;
    check_hits(s, &m, q, K, hits, count, "search_ids");
    if (g_failures) return;

    /* A buffer too small: the needed size (hits and offsets written, bytes
     * untouched), then success with exactly that size. */
    want = needed;
    memcpy(good, offsets, sizeof good);
    memset(offsets, 0, sizeof offsets);
    memset(hits, 0, sizeof hits);
    CHECK_ERR(OMEN_ERR_BUFFER_TOO_SMALL, omen_search_ids(s, q, K, &sp, hits, &count, NULL, 0, offsets, &needed));
    CHECK_MSG(needed == want, "size query: needed %zu, want %zu", needed, want);
    CHECK(count == K && memcmp(hits, plain, count * sizeof *hits) == 0);
    memset(bytes, 0xAB, sizeof bytes);
    CHECK_ERR(OMEN_ERR_BUFFER_TOO_SMALL,
              omen_search_ids(s, q, K, &sp, hits, &count, bytes, want - 1, offsets, &needed));
    CHECK_MSG(needed == want, "cap %zu: needed %zu, want %zu", want - 1, needed, want);
    for (i = 0; i < sizeof bytes; i++) CHECK_MSG(bytes[i] == 0xAB, "id_bytes written on BUFFER_TOO_SMALL");
    CHECK_MSG(memcmp(offsets, good, (K + 1) * sizeof *offsets) == 0, "offsets differ on BUFFER_TOO_SMALL");
    CHECK_OK(omen_search_ids(s, q, K, &sp, hits, &count, bytes, want, offsets, &needed));
    check_hit_ids(s, 1, K, hits, &count, bytes, offsets, needed, "exact-size buffer");
    if (g_failures) return;
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search_ids(s, q, K, &sp, hits, &count, NULL, 8, offsets, &needed));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search_ids(s, q, K, &sp, hits, &count, bytes, want, NULL, &needed));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search_ids(s, q, K, &sp, hits, &count, bytes, want, offsets, NULL));

    /* A batch: the same hits as omen_search_batch, hit j of query i at i*K + j. */
    CHECK_OK(omen_search_batch(s, NQ, q, K, &sp, plain, plain_counts));
    CHECK_OK(omen_search_batch_ids(s, NQ, q, K, &sp, hits, counts, bytes, sizeof bytes, offsets, &needed));
    CHECK(memcmp(counts, plain_counts, sizeof counts) == 0 && memcmp(hits, plain, sizeof hits) == 0);
    check_hit_ids(s, NQ, K, hits, counts, bytes, offsets, needed, "batch");
    if (g_failures) return;
    for (i = 0; i < NQ; i++) check_hits(s, &m, q + i * DIM, K, hits + i * K, counts[i], "batch");
    if (g_failures) return;
    want = needed;
    CHECK_ERR(OMEN_ERR_BUFFER_TOO_SMALL,
              omen_search_batch_ids(s, NQ, q, K, &sp, hits, counts, bytes, want - 1, offsets, &needed));
    CHECK_MSG(needed == want, "batch: needed %zu, want %zu", needed, want);
    CHECK_OK(omen_search_batch_ids(s, NQ, q, K, &sp, hits, counts, bytes, want, offsets, &needed));
    check_hit_ids(s, NQ, K, hits, counts, bytes, offsets, needed, "batch, exact-size buffer");
    if (g_failures) return;

    /* Short rows, through an allow-list of 5 live IDs (and one absent) and
     * then with a predicate too: every row has fewer hits than K. */
    h_ids_init(&ids);
    for (i = 3; i < 60; i += 10) h_ids_add_index(&ids, i);
    sp.filter_n = ids.n;
    sp.filter_ids = ids.bytes;
    sp.filter_id_offsets = ids.offsets;
    restrict_model(&m, &f, 1, 0);
    for (i = 60; i < f.n; i++) f.alive[i] = 0;
    CHECK_OK(omen_search_batch_ids(s, NQ, q, K, &sp, hits, counts, bytes, sizeof bytes, offsets, &needed));
    for (i = 0; i < NQ; i++) {
        CHECK_MSG(counts[i] == 6, "allow-list of 6: row %zu has %zu hits", i, counts[i]);
        check_hits(s, &f, q + i * DIM, K, hits + i * K, counts[i], "allow-list batch");
    }
    check_hit_ids(s, NQ, K, hits, counts, bytes, offsets, needed, "allow-list batch");
    if (g_failures) return;
    use_predicate(&sp, &ctx, s);
    restrict_model(&m, &f, 1, 1);
    for (i = 60; i < f.n; i++) f.alive[i] = 0;
    CHECK_OK(omen_search_ids(s, q, K, &sp, hits, &count, bytes, sizeof bytes, offsets, &needed));
    CHECK_MSG(count == 2, "allow-list and predicate: %zu hits, want 2 (indices 3 and 33)", count);
    check_hits(s, &f, q, K, hits, count, "allow-list and predicate");
    check_hit_ids(s, 1, K, hits, &count, bytes, offsets, needed, "allow-list and predicate");
    if (g_failures) return;
    h_ids_free(&ids);

    /* nq = 0 and k = 0: nothing to write but the first offset. */
    offsets[0] = 99;
    CHECK_OK(omen_search_batch_ids(s, 0, NULL, K, NULL, NULL, NULL, NULL, 0, offsets, &needed));
    CHECK(offsets[0] == 0 && needed == 0);
    CHECK_OK(omen_close(s));
}

/* omen_search_params.query_threads: a query whose work is shared by
 * threads (here an exact scan of 5 MB of vectors, split from 2 MiB a
 * thread) finds the same hits, in single and batch searches; a struct
 * ending before the field reads it as 0; over 1024 is refused. */
void test_search_query_threads(void) {
    enum { QT_DIM = 128, QT_N = 10000, QT_K = 10, QT_NQ = 3 };
    static const uint32_t shares[] = {2, 3, 1024};
    char path[512];
    omen_store *s = NULL;
    omen_options o = h_opts(OMEN_OPEN_CREATE, QT_DIM, OMEN_METRIC_L2);
    omen_search_params p;
    omen_hit alone[QT_NQ * QT_K], split[QT_NQ * QT_K];
    size_t counts[QT_NQ], split_counts[QT_NQ], i, t, n;
    float q[QT_NQ * QT_DIM];
    h_sub(path, sizeof path, "query-threads");
    CHECK_OK(omen_open(path, &o, &s));
    CHECK_OK(h_put_range(s, 0, QT_N, 1, QT_DIM));
    for (i = 0; i < QT_NQ; i++) {
        h_vec(i * 977 + 5, 2, QT_DIM, q + i * QT_DIM); /* near, not equal to, stored vectors */
    }
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    CHECK_OK(omen_search_batch(s, QT_NQ, q, QT_K, &p, alone, counts));
    for (i = 0; i < QT_NQ; i++) CHECK_MSG(counts[i] == QT_K, "row %zu: %zu hits", i, counts[i]);
    for (t = 0; t < sizeof shares / sizeof shares[0]; t++) {
        p.query_threads = shares[t];
        for (i = 0; i < QT_NQ; i++) {
            CHECK_OK(omen_search(s, q + i * QT_DIM, QT_K, &p, split, &n));
            CHECK_MSG(n == QT_K && memcmp(split, alone + i * QT_K, sizeof(omen_hit) * QT_K) == 0,
                      "query %zu shared by %u threads: other hits", i, shares[t]);
        }
        CHECK_OK(omen_search_batch(s, QT_NQ, q, QT_K, &p, split, split_counts));
        CHECK_MSG(memcmp(split_counts, counts, sizeof counts) == 0 && memcmp(split, alone, sizeof alone) == 0,
                  "a batch shared by %u threads a query: other hits", shares[t]);
    }
    p.query_threads = 1025;
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search(s, q, QT_K, &p, split, &n));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search_batch(s, QT_NQ, q, QT_K, &p, split, split_counts));
    /* A caller built before the field: whatever lies past its struct is not read. */
    p.struct_size = (uint32_t)offsetof(omen_search_params, query_threads);
    CHECK_OK(omen_search(s, q, QT_K, &p, split, &n));
    CHECK(n == QT_K && memcmp(split, alone, sizeof(omen_hit) * QT_K) == 0);
    CHECK_OK(omen_close(s));
}
