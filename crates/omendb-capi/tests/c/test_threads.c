/* One handle shared by reader threads and one writer thread. Every vector
 * describes itself: v[0] = id number, v[1] = version, the rest follow from
 * both. A reader must see either NOT_FOUND or exactly a vector that was put
 * for that ID (never a torn or foreign one). */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define DIM 16
#define NIDS 200
#define READERS 3

static omen_store *g_s;
static atomic_uint_fast64_t g_started[NIDS]; /* highest version whose put has begun */
static atomic_int g_stop;
static atomic_long g_reads, g_found, g_bad;
static atomic_long g_max_get_us; /* slowest single omen_get, microseconds */
static pthread_mutex_t g_msg_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_msg[512];
/* Writer compacts too; readers then leave keys alone (compaction invalidates them). */
static int g_compact_mode;

static void bad(const char *fmt, long a, long b) {
    atomic_fetch_add(&g_bad, 1);
    pthread_mutex_lock(&g_msg_lock);
    if (g_msg[0] == '\0') snprintf(g_msg, sizeof g_msg, fmt, a, b);
    pthread_mutex_unlock(&g_msg_lock);
}

static void make_vec(uint32_t id, uint64_t ver, float *v) {
    uint32_t j;
    v[0] = (float)id;
    v[1] = (float)ver;
    for (j = 2; j < DIM; j++) v[j] = (float)((id * 31u + (uint32_t)ver * 17u + j * 7u) % 1000u) / 8.0f;
}

static void id_of(uint32_t id, char *buf) {
    snprintf(buf, 16, "t%05u", id);
}

/* Validates a vector read for ID `id`. */
static void check_vec(uint32_t id, const float *v) {
    float want[DIM];
    uint64_t ver, started;
    if (v[0] != (float)id) {
        bad("vector for id %ld carries id %ld", (long)id, (long)v[0]);
        return;
    }
    ver = (uint64_t)v[1];
    started = atomic_load(&g_started[id]);
    if (ver < 1 || ver > started) {
        bad("id %ld: version %ld was never put", (long)id, (long)ver);
        return;
    }
    make_vec(id, ver, want);
    if (!h_same_bits(want, v, DIM)) bad("id %ld version %ld: torn or wrong vector", (long)id, (long)ver);
}

static void *reader(void *arg) {
    h_rng r;
    uintptr_t seed = (uintptr_t)arg;
    float out[8 * DIM], q[DIM];
    uint8_t found[8];
    omen_hit hits[5];
    h_ids ids;
    h_rng_seed(&r, 1000 + seed);
    h_ids_init(&ids);
    while (!atomic_load(&g_stop)) {
        uint32_t id = (uint32_t)(h_rng_next(&r) % NIDS), i;
        char buf[16];
        omen_status st;
        size_t count = 0;
        omen_stats stats;

        id_of(id, buf);
        {
            double t0 = h_now();
            long us;
            st = omen_get(g_s, (const uint8_t *)buf, 6, out, DIM);
            us = (long)((h_now() - t0) * 1e6);
            if (us > atomic_load(&g_max_get_us)) atomic_store(&g_max_get_us, us);
        }
        atomic_fetch_add(&g_reads, 1);
        if (st == OMEN_OK) {
            atomic_fetch_add(&g_found, 1);
            check_vec(id, out);
        } else if (st != OMEN_ERR_NOT_FOUND) {
            bad("omen_get: status %ld (id %ld)", (long)st, (long)id);
        }

        h_ids_clear(&ids);
        for (i = 0; i < 8; i++) {
            uint32_t bid = (uint32_t)(h_rng_next(&r) % NIDS);
            id_of(bid, buf);
            h_ids_add(&ids, buf, 6);
        }
        memset(found, 9, sizeof found);
        st = omen_get_batch(g_s, 8, ids.bytes, ids.offsets, out, (seed & 1) ? found : NULL);
        if (st != OMEN_OK) {
            bad("omen_get_batch: status %ld (%ld)", (long)st, 0);
        } else {
            for (i = 0; i < 8; i++) {
                size_t len;
                const uint8_t *b = h_ids_at(&ids, i, &len);
                uint32_t bid;
                int zero = out[i * DIM] == 0.0f && out[i * DIM + 1] == 0.0f;
                (void)len;
                bid = (uint32_t)((b[1] - '0') * 10000 + (b[2] - '0') * 1000 + (b[3] - '0') * 100 + (b[4] - '0') * 10 +
                                 (b[5] - '0'));
                if ((seed & 1) && found[i] > 1) bad("found[%ld] = %ld", (long)i, (long)found[i]);
                if ((seed & 1) && found[i] == 0 && !zero) bad("found[%ld] = 0 but row not zeroed (id %ld)", (long)i, (long)bid);
                if (!zero || ((seed & 1) && found[i] == 1)) check_vec(bid, out + i * DIM);
            }
        }

        make_vec(id, 1, q);
        st = omen_search(g_s, q, 5, NULL, hits, &count);
        if (g_compact_mode && st == OMEN_OK) count = 0; /* keys may be stale already */
        if (st != OMEN_OK) {
            bad("omen_search: status %ld (%ld)", (long)st, 0);
        } else if (count > 5) {
            bad("omen_search: count %ld > k %ld", (long)count, 5);
        } else {
            for (i = 0; i < count; i++) {
                const uint8_t *kid;
                size_t len;
                if (i && hits[i - 1].distance > hits[i].distance) bad("search hits not ascending at %ld (%ld)", (long)i, 0);
                if (!(hits[i].distance >= 0.0f)) bad("negative L2 distance at hit %ld (%ld)", (long)i, 0);
                st = omen_key_id(g_s, hits[i].key, &kid, &len);
                if (st != OMEN_OK)
                    bad("omen_key_id on a fresh hit: status %ld (%ld)", (long)st, 0);
                else if (len != 6 || kid[0] != 't')
                    bad("omen_key_id on a fresh hit: foreign id of %ld bytes (%ld)", (long)len, 0);
            }
        }

        st = h_stats(g_s, &stats);
        if (st != OMEN_OK)
            bad("omen_store_stats: status %ld (%ld)", (long)st, 0);
        else if (stats.live_vectors > NIDS || stats.dim != DIM)
            bad("stats: live %ld dim %ld", (long)stats.live_vectors, (long)stats.dim);
    }
    h_ids_free(&ids);
    return NULL;
}

struct writer_result {
    int failed;
    char msg[256];
    long batches;
};

static void *writer(void *arg) {
    struct writer_result *res = arg;
    h_rng r;
    uint64_t ver[NIDS];
    float v[20 * DIM];
    h_ids ids;
    int it, iters = g_valgrind ? 40 : 400;
    double deadline = h_now() + (g_valgrind ? 60.0 : 8.0); /* readers may starve the writer */
    memset(ver, 0, sizeof ver);
    h_rng_seed(&r, 77);
    h_ids_init(&ids);
    for (it = 0; it < iters && !res->failed && (it < 20 || h_now() < deadline); it++) {
        int i;
        omen_status st;
        uint64_t d;
        char buf[16];
        h_ids_clear(&ids);
        for (i = 0; i < 20; i++) {
            uint32_t id = (uint32_t)(h_rng_next(&r) % NIDS); /* repeats allowed: last one wins */
            ver[id]++;
            atomic_store(&g_started[id], ver[id]); /* before the put that may publish it */
            make_vec(id, ver[id], v + i * DIM);
            id_of(id, buf);
            h_ids_add(&ids, buf, 6);
        }
        st = omen_put_batch(g_s, 20, ids.bytes, ids.offsets, v);
        if (st != OMEN_OK) {
            res->failed = 1;
            snprintf(res->msg, sizeof res->msg, "put_batch: %s (%s)", omen_status_name(st), h_last_error());
            break;
        }
        res->batches++;
        if (it % 3 == 2) {
            h_ids_clear(&ids);
            for (i = 0; i < 5; i++) {
                id_of((uint32_t)(h_rng_next(&r) % NIDS), buf);
                h_ids_add(&ids, buf, 6);
            }
            st = omen_delete_batch(g_s, 5, ids.bytes, ids.offsets, &d);
            if (st != OMEN_OK) {
                res->failed = 1;
                snprintf(res->msg, sizeof res->msg, "delete_batch: %s (%s)", omen_status_name(st), h_last_error());
            }
        }
        if (g_compact_mode && it % 10 == 4) {
            st = omen_compact(g_s);
            if (st != OMEN_OK) {
                res->failed = 1;
                snprintf(res->msg, sizeof res->msg, "compact: %s (%s)", omen_status_name(st), h_last_error());
            }
        }
        if (it % 10 == 9) {
            st = omen_checkpoint(g_s, NULL);
            if (st != OMEN_OK) {
                res->failed = 1;
                snprintf(res->msg, sizeof res->msg, "checkpoint: %s (%s)", omen_status_name(st), h_last_error());
            }
        }
    }
    h_ids_free(&ids);
    atomic_store(&g_stop, 1);
    return NULL;
}

static void run_threads(void) {
    char p[4096];
    pthread_t rt[READERS], wt;
    struct writer_result wres;
    uintptr_t i;
    double t0 = h_now();
    atomic_store(&g_stop, 0);
    atomic_store(&g_reads, 0);
    atomic_store(&g_found, 0);
    atomic_store(&g_bad, 0);
    atomic_store(&g_max_get_us, 0);
    g_msg[0] = '\0';
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &g_s));
    for (i = 0; i < NIDS; i++) atomic_store(&g_started[i], 0);
    memset(&wres, 0, sizeof wres);
    for (i = 0; i < READERS; i++) CHECK(pthread_create(&rt[i], NULL, reader, (void *)i) == 0);
    CHECK(pthread_create(&wt, NULL, writer, &wres) == 0);
    CHECK(pthread_join(wt, NULL) == 0);
    for (i = 0; i < READERS; i++) CHECK(pthread_join(rt[i], NULL) == 0);
    h_note("%ld write batches, %ld single gets (%ld found) by %d readers in %.1f s; slowest get %.1f ms",
           wres.batches, (long)atomic_load(&g_reads), (long)atomic_load(&g_found), READERS, h_now() - t0,
           (double)atomic_load(&g_max_get_us) / 1000.0);
    CHECK_MSG(!wres.failed, "writer thread: %s", wres.msg);
    CHECK_MSG(atomic_load(&g_bad) == 0, "%ld bad reads; first: %s", (long)atomic_load(&g_bad), g_msg);
    CHECK_MSG(atomic_load(&g_found) > 0, "readers never found a vector");
    /* final state checks out and survives a reopen */
    {
        omen_stats st;
        uint32_t id;
        float out[DIM];
        CHECK_OK(h_stats(g_s, &st));
        CHECK_OK(omen_close(g_s));
        g_s = NULL;
        CHECK_OK(h_open(p, OMEN_OPEN_READ_ONLY, &g_s));
        for (id = 0; id < NIDS; id++) {
            char buf[16];
            omen_status s2;
            id_of(id, buf);
            s2 = omen_get(g_s, (const uint8_t *)buf, 6, out, DIM);
            CHECK(s2 == OMEN_OK || s2 == OMEN_ERR_NOT_FOUND);
            if (s2 == OMEN_OK) {
                check_vec(id, out);
                CHECK_MSG((uint64_t)out[1] == atomic_load(&g_started[id]), "after reopen %s has version %g, last put %llu",
                          buf, out[1], (unsigned long long)atomic_load(&g_started[id]));
            }
        }
        CHECK_MSG(atomic_load(&g_bad) == 0, "after reopen: %s", g_msg);
        CHECK_OK(omen_close(g_s));
    }
}

void test_threads_readers_and_writer(void) {
    g_compact_mode = 0;
    run_threads();
}

void test_threads_readers_during_compaction(void) {
    g_compact_mode = 1;
    run_threads();
}
