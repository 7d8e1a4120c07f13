/* Product quantization through the C ABI: omen_train_pq and its progress
 * callback, automatic training, searches on a trained store, DROP_RAW. */
#include "harness.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#define DIM 32
#define PQ_M 8
/* Fewer vectors under valgrind: training is CPU-bound and valgrind is ~50x slower. */
#define N (g_valgrind ? 600 : 2000)

typedef struct progress_log {
    pthread_t thread;
    int wrong_thread;
    int calls;
    int in_call;      /* detects concurrent calls */
    int concurrent;
    uint64_t first_total, last_done, last_total;
    int total_changed, done_decreased;
} progress_log;

static void on_progress(void *user, uint64_t done, uint64_t total) {
    progress_log *p = user;
    if (!pthread_equal(pthread_self(), p->thread)) p->wrong_thread = 1;
    if (p->in_call) p->concurrent = 1;
    p->in_call = 1;
    if (p->calls == 0) p->first_total = total;
    if (total != p->first_total) p->total_changed = 1;
    if (p->calls > 0 && done < p->last_done) p->done_decreased = 1;
    p->last_done = done;
    p->last_total = total;
    p->calls++;
    p->in_call = 0;
}

static omen_status make_pq_store(omen_store **s, uint32_t extra_flags, uint32_t train_size, size_t n) {
    char p[4096];
    omen_options o = h_opts(OMEN_OPEN_CREATE | extra_flags, DIM, OMEN_METRIC_L2);
    omen_status st;
    o.pq_m = PQ_M;
    o.pq_bits = 8;
    o.pq_train_size = train_size;
    h_sub(p, sizeof p, "store");
    st = omen_open(p, &o, s);
    if (st) return st;
    return h_put_range(*s, 0, n, 1, DIM);
}

static double l2(const float *a, const float *b) {
    double d = 0;
    size_t j;
    for (j = 0; j < DIM; j++) d += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
    return d;
}

void test_pq_train_with_progress(void) {
    omen_store *s = NULL;
    omen_stats st;
    progress_log log;
    size_t i;
    char p[4096];

    CHECK_OK(make_pq_store(&s, 0, 0, N));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.pq_trained == 0, "pq_trained before omen_train_pq");
    memset(&log, 0, sizeof log);
    log.thread = pthread_self();
    CHECK_OK(omen_train_pq(s, on_progress, &log));
    CHECK_MSG(log.calls > 0, "the progress callback was never called");
    EXPECT_MSG(!log.wrong_thread, "the progress callback ran on another thread");
    EXPECT_MSG(!log.concurrent, "the progress callback ran concurrently with itself");
    EXPECT_MSG(!log.total_changed, "total changed during one training run");
    EXPECT_MSG(!log.done_decreased, "done decreased");
    EXPECT_MSG(log.last_done == log.last_total, "last progress call has done %llu != total %llu",
               (unsigned long long)log.last_done, (unsigned long long)log.last_total);
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.pq_trained == 1 && st.raw_kept == 1, "after training: pq_trained %u raw_kept %u", st.pq_trained,
              st.raw_kept);
    EXPECT_MSG(st.payload_bytes == (uint64_t)N * (DIM * 4 + PQ_M + 8),
               "trained store keeping raw vectors: payload_bytes %llu, want %llu (vectors + codes + IDs)",
               (unsigned long long)st.payload_bytes, (unsigned long long)N * (DIM * 4 + PQ_M + 8));
    /* raw vectors still bit-exact */
    for (i = 0; i < N; i += 97) CHECK_OK(h_get_index(s, i, 1, DIM));
    /* NULL progress is fine too (retraining) */
    CHECK_OK(omen_train_pq(s, NULL, NULL));
    CHECK_OK(omen_close(s));
    /* the trained state is durable */
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_open(p, OMEN_OPEN_READ_ONLY, &s));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.pq_trained == 1, "pq_trained %u after reopen", st.pq_trained);
    CHECK_OK(omen_close(s));
}

void test_pq_search(void) {
    omen_store *s = NULL;
    omen_search_params sp;
    omen_hit hits[10], exact[10];
    size_t count = 0, ecount = 0, qi, i;
    int top1 = 0;

    CHECK_OK(make_pq_store(&s, 0, 0, N));
    CHECK_OK(omen_train_pq(s, NULL, NULL));
    for (qi = 0; qi < 20; qi++) {
        float q[DIM];
        size_t target = (size_t)qi * 97 % N;
        h_vec(target, 1, DIM, q);
        /* approximate search with exact re-rank */
        memset(&sp, 0, sizeof sp);
        sp.struct_size = sizeof sp;
        sp.rerank = 100;
        CHECK_OK(omen_search(s, q, 10, &sp, hits, &count));
        CHECK_MSG(count == 10, "PQ search returned %zu hits", count);
        for (i = 0; i < count; i++) {
            const uint8_t *id;
            size_t len;
            float v[DIM];
            unsigned long idx;
            char buf[16];
            CHECK(i == 0 || hits[i - 1].distance <= hits[i].distance);
            CHECK_OK(omen_key_id(s, hits[i].key, &id, &len));
            CHECK(len == 8);
            memcpy(buf, id + 1, 7);
            buf[7] = '\0';
            idx = strtoul(buf, NULL, 10);
            h_vec(idx, 1, DIM, v);
            /* re-ranked distances are exact */
            CHECK_MSG(fabs(hits[i].distance - l2(q, v)) <= 1e-4 * (1 + l2(q, v)),
                      "re-ranked hit %zu: distance %g, exact %g", i, hits[i].distance, l2(q, v));
            if (i == 0 && idx == target) top1++;
        }
        /* exact = 1 still an exact scan on a trained store */
        sp.rerank = 0;
        sp.exact = 1;
        CHECK_OK(omen_search(s, q, 10, &sp, exact, &ecount));
        CHECK(ecount == 10);
        CHECK_MSG(exact[0].distance == 0.0f, "exact search for a stored vector: nearest distance %g", exact[0].distance);
        /* default params (PQ, no re-rank) still give ascending hits */
        CHECK_OK(omen_search(s, q, 10, NULL, hits, &count));
        CHECK(count == 10);
        for (i = 1; i < count; i++) CHECK(hits[i - 1].distance <= hits[i].distance);
    }
    CHECK_MSG(top1 >= 18, "PQ search with re-rank 100 found the query's own vector first only %d/20 times", top1);
    CHECK_OK(omen_close(s));
}

void test_pq_automatic_training(void) {
    omen_store *s = NULL;
    omen_stats st;

    CHECK_OK(make_pq_store(&s, 0, 1000, 600));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.pq_trained == 0, "trained with 600 of pq_train_size 1000 vectors");
    CHECK_OK(h_put_range(s, 600, 600, 1, DIM));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.pq_trained == 1, "not trained after 1200 puts with pq_train_size 1000");
    CHECK_OK(h_get_index(s, 1100, 1, DIM));
    CHECK_OK(omen_close(s));
}

void test_pq_drop_raw(void) {
    omen_store *s = NULL;
    omen_stats st;
    float out[DIM], v[DIM];
    size_t i;
    double err = 0, norm = 0;
    char p[4096];

    CHECK_OK(make_pq_store(&s, OMEN_OPEN_DROP_RAW, 0, N));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.raw_kept == 1, "raw vectors dropped before training");
    CHECK_OK(h_get_index(s, 5, 1, DIM)); /* still exact before training */
    CHECK_OK(omen_train_pq(s, NULL, NULL));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.pq_trained == 1 && st.raw_kept == 0, "DROP_RAW after training: pq_trained %u raw_kept %u",
              st.pq_trained, st.raw_kept);
    CHECK_MSG(st.payload_bytes == (uint64_t)N * (PQ_M + 8), "DROP_RAW payload_bytes %llu, want %llu (codes + IDs)",
              (unsigned long long)st.payload_bytes, (unsigned long long)N * (PQ_M + 8));
    /* get gives the PQ reconstruction: close, not exact */
    for (i = 0; i < N; i += 50) {
        char id[16];
        snprintf(id, sizeof id, "v%07zu", i);
        CHECK_OK(omen_get(s, (const uint8_t *)id, 8, out, DIM));
        h_vec(i, 1, DIM, v);
        err += l2(out, v);
        norm += l2(v, (const float[DIM]){0});
    }
    CHECK_MSG(err < 0.5 * norm, "PQ reconstructions are far from the vectors (error %g of %g)", err, norm);
    CHECK_OK(omen_close(s));
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_open(p, 0, &s));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.raw_kept == 0 && st.pq_trained == 1, "after reopen raw_kept %u pq_trained %u", st.raw_kept,
              st.pq_trained);
    CHECK_OK(omen_close(s));
    /* the raw vectors are really gone from disk: no vectors file is left */
    {
        DIR *d = opendir(p);
        struct dirent *e;
        CHECK(d != NULL);
        while ((e = readdir(d)) != NULL)
            EXPECT_MSG(strncmp(e->d_name, "vectors.", 8) != 0, "compressed store still holds %s", e->d_name);
        closedir(d);
    }
    if (!g_valgrind)
        CHECK_MSG(h_dir_bytes(p) < (long long)N * DIM * 4,
                  "compressed store still takes %lld bytes; the raw vectors alone are %d", h_dir_bytes(p), N * DIM * 4);
}

/* Issue 17: 600 vectors of dim 16, pq_m 4, one component of each >= 3.38e38
 * (finite, so put accepts it). Training once committed codebooks that every
 * later open rejected as corrupt; with DROP_RAW every vector was lost. Now
 * training, open, recover and read-only open all work, every vector is
 * there (bit-exact when raw vectors are kept) and distances are finite. */
void test_pq_huge_components_train_and_reopen(void) {
    enum { HN = 600, HDIM = 16 };
    static float v[HN * HDIM];
    int drop;
    size_t i;

    for (i = 0; i < HN; i++) {
        h_vec(i, 1, HDIM, v + i * HDIM);
        v[i * HDIM + 5] = 3.38e38f;
    }
    for (drop = 0; drop <= 1; drop++) {
        omen_store *s = NULL;
        omen_options o = h_opts(OMEN_OPEN_CREATE | (drop ? OMEN_OPEN_DROP_RAW : 0), HDIM, OMEN_METRIC_L2);
        omen_stats st;
        omen_hit hits[10];
        size_t count = 0;
        h_ids ids;
        char p[4096];
        int way;

        o.pq_m = 4;
        o.pq_bits = 8;
        h_sub(p, sizeof p, drop ? "huge_drop" : "huge_raw");
        CHECK_OK(omen_open(p, &o, &s));
        h_ids_init(&ids);
        for (i = 0; i < HN; i++) h_ids_add_index(&ids, i);
        CHECK_OK(omen_put_batch(s, HN, ids.bytes, ids.offsets, v));
        h_ids_free(&ids);
        CHECK_OK(omen_train_pq(s, NULL, NULL));
        CHECK_OK(omen_close(s));
        /* open, recover, read-only open */
        for (way = 0; way < 3; way++) {
            omen_options ro = h_opts_flags(way == 2 ? OMEN_OPEN_READ_ONLY : 0);
            s = NULL;
            if (way == 1)
                CHECK_OK(omen_recover(p, &ro, &s, NULL));
            else
                CHECK_OK(omen_open(p, &ro, &s));
            CHECK_OK(h_stats(s, &st));
            CHECK_MSG(st.live_vectors == HN && st.pq_trained == 1, "drop_raw %d way %d: %llu vectors, trained %u",
                      drop, way, (unsigned long long)st.live_vectors, st.pq_trained);
            for (i = 0; i < HN; i++) {
                char id[16];
                float out[HDIM];
                size_t j;
                snprintf(id, sizeof id, "v%07zu", i);
                CHECK_OK(omen_get(s, (const uint8_t *)id, 8, out, HDIM));
                if (!drop)
                    CHECK_MSG(h_same_bits(out, v + i * HDIM, HDIM), "drop_raw 0 way %d: %s changed", way, id);
                for (j = 0; j < HDIM; j++) CHECK_MSG(isfinite(out[j]), "drop_raw %d way %d: %s not finite", drop, way, id);
            }
            CHECK_OK(omen_search(s, v, 10, NULL, hits, &count));
            CHECK(count == 10);
            for (i = 0; i < count; i++)
                CHECK_MSG(isfinite(hits[i].distance), "drop_raw %d way %d: hit %zu distance %g", drop, way, i,
                          hits[i].distance);
            CHECK_OK(omen_close(s));
        }
    }
}
