/* The IVF index through the C ABI: OMEN_OPEN_IVF with the trailing
 * omen_options.ivf_lists, the trailing omen_search_params fields nprobe
 * and target_recall (and callers whose structs predate them), results that
 * survive reopening. */
#include "harness.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define DIM 16
#define N 4000
#define QUERIES 200

static omen_options ivf_opts(uint32_t lists) {
    omen_options o = h_opts(OMEN_OPEN_CREATE | OMEN_OPEN_IVF, DIM, OMEN_METRIC_L2);
    o.pq_m = 8;
    o.pq_bits = 4;
    o.ivf_lists = lists;
    return o;
}

/* How many of the first QUERIES stored vectors find themselves first. */
static size_t found_self(omen_store *s, const omen_search_params *p) {
    float v[DIM];
    omen_hit hit;
    size_t i, n, found = 0;
    for (i = 0; i < QUERIES; i++) {
        h_vec(i * (N / QUERIES), 1, DIM, v);
        if (omen_search(s, v, 1, p, &hit, &n) != OMEN_OK || n != 1) return (size_t)-1;
        found += hit.distance == 0.0f;
    }
    return found;
}

void test_ivf_search_params(void) {
    char path[512];
    omen_store *s = NULL;
    omen_options o = ivf_opts(0);
    omen_search_params p;
    omen_stats st;
    size_t all, dflt, one, old;
    h_sub(path, sizeof path, "s");
    CHECK_OK(omen_open(path, &o, &s));
    CHECK_OK(h_put_range(s, 0, N, 1, DIM));
    CHECK_OK(omen_train_pq(s, NULL, NULL));

    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.nprobe = 0xFFFFFFFFu; /* every list */
    p.rerank = 1000;
    all = found_self(s, &p);
    CHECK_MSG(all == QUERIES, "every list and a deep re-rank found %zu of %d", all, QUERIES);
    dflt = found_self(s, NULL);
    CHECK_MSG(dflt != (size_t)-1 && dflt >= QUERIES * 9 / 10, "the default target found %zu of %d", dflt, QUERIES);
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.nprobe = 1;
    one = found_self(s, &p);
    CHECK_MSG(one != (size_t)-1 && one <= dflt, "one list found %zu, the default %zu", one, dflt);

    /* A caller whose struct ends before nprobe gets the default target. */
    memset(&p, 0, sizeof p);
    p.struct_size = (uint32_t)offsetof(omen_search_params, nprobe);
    old = found_self(s, &p);
    CHECK_MSG(old == dflt, "an older omen_search_params found %zu, the default %zu", old, dflt);

    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.target_recall = 1.5f;
    {
        float v[DIM];
        omen_hit hit;
        size_t n;
        h_vec(0, 1, DIM, v);
        CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search(s, v, 1, &p, &hit, &n));
        p.target_recall = -0.5f;
        CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search(s, v, 1, &p, &hit, &n));
        p.target_recall = 0.99f;
        CHECK_OK(omen_search(s, v, 1, &p, &hit, &n));
        CHECK(n == 1 && hit.distance == 0.0f);
    }
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(omen_store_stats(s, &st));
    CHECK(st.pq_trained == 1 && st.live_vectors == N);
    /* About sqrt(n) (round(sqrt(4000)) = 63), at most n / 64: 62. */
    CHECK_MSG(st.ivf_lists == 62, "%u lists", st.ivf_lists);
    /* One stage (4,000 vectors): the lists hold whole PQ8x4 codes. */
    CHECK_MSG(st.ivf_stages == 1 && st.ivf_list_code_bytes == 4, "stages %u, list code bytes %u", st.ivf_stages,
              st.ivf_list_code_bytes);
    CHECK_OK(omen_close(s));

    /* Reopened: the lists are rebuilt from the codes, the answers the same. */
    CHECK_OK(h_open(path, 0, &s));
    CHECK_MSG(found_self(s, NULL) == dflt, "reopening changed the default search");
    CHECK_OK(omen_close(s));
}

void test_ivf_options_layouts(void) {
    char path[512];
    omen_store *s = NULL;
    omen_options o = ivf_opts(7);
    /* The first omen_options layout (no ivf_lists): lists chosen at training. */
    h_sub(path, sizeof path, "first-layout");
    o.struct_size = (uint32_t)offsetof(omen_options, ivf_lists);
    CHECK_OK(omen_open(path, &o, &s));
    CHECK_OK(h_put_range(s, 0, 500, 1, DIM));
    CHECK_OK(omen_train_pq(s, NULL, NULL));
    CHECK_MSG(found_self(s, NULL) != (size_t)-1, "search of an IVF store created with the first layout");
    {
        omen_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        CHECK_OK(omen_store_stats(s, &st));
        /* ivf_lists was past the struct: 0, chosen at training (500 / 64). */
        CHECK_MSG(st.ivf_lists == 7, "%u lists", st.ivf_lists);
    }
    CHECK_OK(omen_close(s));

    /* IVF needs PQ. */
    o = ivf_opts(0);
    o.pq_m = 0;
    h_sub(path, sizeof path, "no-pq");
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_open(path, &o, &s));
}

/* IVF with OMEN_OPEN_DROP_RAW: training keeps only the codes, the index
 * searches them (no re-rank), gets give the reconstruction. */
void test_ivf_drop_raw(void) {
    char path[512];
    omen_store *s = NULL;
    omen_options o = ivf_opts(0);
    omen_stats st;
    float v[DIM], got[DIM];
    size_t i, found = 0;
    o.flags |= OMEN_OPEN_DROP_RAW;
    o.pq_m = 16; /* one code a dimension: the codes alone rank */
    h_sub(path, sizeof path, "drop-raw");
    CHECK_OK(omen_open(path, &o, &s));
    CHECK_OK(h_put_range(s, 0, N, 1, DIM));
    CHECK_OK(omen_train_pq(s, NULL, NULL));
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(omen_store_stats(s, &st));
    CHECK_MSG(st.pq_trained == 1 && st.raw_kept == 0 && st.ivf_lists > 0, "trained %u raw_kept %u lists %u",
              st.pq_trained, st.raw_kept, st.ivf_lists);
    for (i = 0; i < QUERIES; i++) {
        omen_hit hit;
        size_t n;
        const uint8_t *id;
        size_t len;
        char want[16];
        h_vec(i * (N / QUERIES), 1, DIM, v);
        CHECK_OK(omen_search(s, v, 1, NULL, &hit, &n));
        CHECK(n == 1);
        CHECK_OK(omen_key_id(s, hit.key, &id, &len));
        snprintf(want, sizeof want, "v%07zu", i * (N / QUERIES));
        found += len == strlen(want) && memcmp(id, want, len) == 0;
    }
    CHECK_MSG(found >= QUERIES * 9 / 10, "the codes found %zu of %d vectors first", found, QUERIES);
    h_vec(7, 1, DIM, v);
    CHECK_OK(omen_get(s, (const uint8_t *)"v0000007", 8, got, DIM));
    {
        double err = 0, norm = 0;
        for (i = 0; i < DIM; i++) {
            err += (got[i] - v[i]) * (got[i] - v[i]);
            norm += v[i] * v[i];
        }
        CHECK_MSG(err < 0.01 * norm, "reconstruction error %g of norm %g", err, norm);
    }
    CHECK_OK(omen_close(s));
}

/* Keeps every other ID (by its last byte): half the store. */
static int32_t keep_half(void *user, const uint8_t *id, size_t len) {
    (void)user;
    return len > 0 && id[len - 1] % 2 == 0;
}

/* omen_explain_search says what omen_search does (a search with the plan's
 * nprobe and rerank given explicitly finds the same; a filter probes more
 * lists), and omen_calibration lists the points the targets choose from. */
void test_ivf_search_plan(void) {
    char path[512];
    omen_store *s = NULL;
    omen_options o = ivf_opts(0);
    omen_search_params p;
    omen_search_plan plan;
    float recall[256], v[DIM];
    uint32_t nprobe[256], per_k[256];
    double cost[256];
    size_t count = 0, i, n1, n2;
    omen_hit a[10], b[10];
    h_sub(path, sizeof path, "s");
    CHECK_OK(omen_open(path, &o, &s));
    CHECK_OK(h_put_range(s, 0, N, 1, DIM));

    memset(&plan, 0, sizeof plan);
    plan.struct_size = sizeof plan;
    CHECK_OK(omen_explain_search(s, 10, NULL, &plan));
    CHECK_MSG(plan.method == OMEN_SEARCH_METHOD_EXACT && plan.nprobe == 0 && plan.rerank == 0, "untrained: method %u", plan.method);
    CHECK_OK(omen_calibration(s, NULL, NULL, NULL, NULL, 0, &count));
    CHECK(count == 0);
    CHECK_OK(omen_train_pq(s, NULL, NULL));

    CHECK_ERR(OMEN_ERR_BUFFER_TOO_SMALL, omen_calibration(s, recall, nprobe, per_k, cost, 1, &count));
    CHECK_MSG(count > 1 && count <= 256, "%zu calibration points", count);
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_calibration(s, NULL, nprobe, per_k, cost, 256, &count));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_calibration(s, recall, nprobe, per_k, cost, 256, NULL));
    CHECK_OK(omen_calibration(s, recall, nprobe, per_k, cost, 256, &count));
    for (i = 1; i < count; i++) CHECK_MSG(recall[i] > recall[i - 1] && cost[i] >= cost[i - 1], "point %zu", i);

    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.target_recall = 0.9f;
    CHECK_OK(omen_explain_search(s, 10, &p, &plan));
    CHECK(plan.method == OMEN_SEARCH_METHOD_IVF);
    /* The cheapest point reaching 0.9 (or the best, if none did). */
    for (i = 0; i + 1 < count && recall[i] < 0.9f; i++) {}
    CHECK_MSG(plan.nprobe == nprobe[i] && plan.rerank == per_k[i] * 10 && plan.calibrated_recall == recall[i],
              "plan %u/%u/%f, point %u/%u/%f", plan.nprobe, plan.rerank, plan.calibrated_recall, nprobe[i], per_k[i] * 10, recall[i]);
    {
        omen_search_params explicit_params = p;
        explicit_params.target_recall = 0.0f;
        explicit_params.nprobe = plan.nprobe;
        explicit_params.rerank = plan.rerank;
        for (i = 0; i < 50; i++) {
            h_vec(i * 71 + 5, 1, DIM, v);
            v[0] += 0.01f;
            CHECK_OK(omen_search(s, v, 10, &p, a, &n1));
            CHECK_OK(omen_search(s, v, 10, &explicit_params, b, &n2));
            CHECK_MSG(n1 == n2 && memcmp(a, b, n1 * sizeof a[0]) == 0, "query %zu: the plan's setting searched otherwise", i);
        }
    }
    {
        /* A filter allowing half the store probes more lists. */
        omen_search_plan unfiltered = plan, filtered;
        memset(&filtered, 0, sizeof filtered);
        filtered.struct_size = sizeof filtered;
        p.filter_fn = keep_half;
        CHECK_OK(omen_explain_search(s, 10, &p, &filtered));
        CHECK_MSG(filtered.method == OMEN_SEARCH_METHOD_IVF && filtered.nprobe > unfiltered.nprobe && filtered.rerank == unfiltered.rerank,
                  "filtered plan %u/%u against %u/%u", filtered.nprobe, filtered.rerank, unfiltered.nprobe, unfiltered.rerank);
        p.filter_fn = NULL;
    }
    p.target_recall = 0.0f;
    p.nprobe = 3;
    p.rerank = 4;
    CHECK_OK(omen_explain_search(s, 10, &p, &plan));
    CHECK(plan.method == OMEN_SEARCH_METHOD_IVF && plan.nprobe == 3 && plan.rerank == 10 && plan.calibrated_recall == 0.0f);
    p.exact = 1;
    CHECK_OK(omen_explain_search(s, 10, &p, &plan));
    CHECK(plan.method == OMEN_SEARCH_METHOD_EXACT);
    p.exact = 0;
    p.target_recall = 2.0f;
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_explain_search(s, 10, &p, &plan));
    p.target_recall = 0.0f;
    plan.struct_size = 8;
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_explain_search(s, 10, &p, &plan));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_explain_search(s, 10, &p, NULL));
    CHECK_OK(omen_close(s));
}

/* Reads the calibration into the arrays (256 points at most); returns the count. */
static size_t calibration_of(omen_store *s, float *recall, uint32_t *nprobe) {
    uint32_t per_k[256];
    double cost[256];
    size_t count = 0;
    if (omen_calibration(s, recall, nprobe, per_k, cost, 256, &count) != OMEN_OK) return (size_t)-1;
    return count;
}

/* What omen_calibrate's progress callback saw. */
typedef struct {
    size_t calls;
    uint64_t total, last;
    int monotonic, write_refused;
    omen_store *store;
} progress_log;

static void log_progress(void *user, uint64_t done, uint64_t total) {
    progress_log *log = user;
    if (log->calls > 0 && (done < log->last || total != log->total)) log->monotonic = 0;
    if (log->calls == 0 && log->store != NULL) {
        /* A write from the callback is refused: the calibration holds the writer. */
        log->write_refused = h_put_range(log->store, N, 1, 1, DIM) == OMEN_ERR_INVALID_ARGUMENT;
    }
    log->calls++;
    log->total = total;
    log->last = done;
}

/* omen_calibrate measures the targets on the host's queries and commits
 * them: the calibration changes, stats name its query count, it survives
 * a close that commits nothing more and a read-only open; what it cannot
 * do is refused with the calibration in use unchanged. */
void test_ivf_calibrate(void) {
    enum { NQ = 64 };
    char path[512], flat_path[512];
    omen_store *s = NULL, *flat = NULL;
    omen_options o = ivf_opts(0);
    omen_stats st;
    float *q = malloc(NQ * DIM * sizeof *q), a[DIM], b[DIM];
    float recall[256], recall2[256];
    uint32_t nprobe[256], nprobe2[256];
    size_t i, d, count, count2;
    uint64_t seq;
    CHECK(q != NULL);
    /* Halfway between two stored vectors: not like any of them. */
    for (i = 0; i < NQ; i++) {
        h_vec(i * 37, 1, DIM, a);
        h_vec(i * 37 + 1000, 1, DIM, b);
        for (d = 0; d < DIM; d++) q[i * DIM + d] = (a[d] + b[d]) / 2;
    }
    h_sub(path, sizeof path, "s");
    CHECK_OK(omen_open(path, &o, &s));
    CHECK_OK(h_put_range(s, 0, N, 1, DIM));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_calibrate(s, NQ, q, NULL, NULL)); /* not trained */
    CHECK_OK(omen_train_pq(s, NULL, NULL));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.calibration_queries == 0, "calibration_queries %u after training", st.calibration_queries);
    seq = st.checkpoint_seq;
    count = calibration_of(s, recall, nprobe);

    {
        progress_log log = {0, 0, 0, 1, 0, NULL};
        log.store = s;
        CHECK_OK(omen_calibrate(s, NQ, q, log_progress, &log));
        CHECK_MSG(log.calls >= 3 && log.monotonic && log.total == 3 * NQ && log.last == log.total,
                  "progress: %zu calls, total %llu, last %llu, monotonic %d", log.calls,
                  (unsigned long long)log.total, (unsigned long long)log.last, log.monotonic);
        CHECK_MSG(log.write_refused, "a put from the progress callback was not refused");
    }
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.calibration_queries == NQ && st.checkpoint_seq == seq + 1, "calibration_queries %u, seq %llu (was %llu)",
              st.calibration_queries, (unsigned long long)st.checkpoint_seq, (unsigned long long)seq);
    count2 = calibration_of(s, recall2, nprobe2);
    CHECK_MSG(count2 > 0 && count2 <= 256, "%zu points", count2);
    CHECK_MSG(count2 != count || memcmp(recall, recall2, count * sizeof recall[0]) != 0, "the calibration did not change");
    for (i = 1; i < count2; i++) CHECK_MSG(recall2[i] > recall2[i - 1], "point %zu", i);

    /* Refused, and nothing changes. */
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_calibrate(s, 0, q, NULL, NULL));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_calibrate(s, NQ, NULL, NULL, NULL));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_calibrate(NULL, NQ, q, NULL, NULL));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_calibrate(s, (size_t)-1, q, NULL, NULL)); /* nq * dim overflows */
    q[3 * DIM + 2] = 1.0f / 0.0f;
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_calibrate(s, NQ, q, NULL, NULL));
    q[3 * DIM + 2] = 0.0f;
    CHECK_OK(h_stats(s, &st));
    CHECK(st.calibration_queries == NQ && st.checkpoint_seq == seq + 1);

    /* Committed by the call itself: a close that commits nothing keeps it. */
    CHECK_OK(omen_close_discard(s));
    CHECK_OK(h_open(path, OMEN_OPEN_READ_ONLY, &s));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.calibration_queries == NQ, "reopened: calibration_queries %u", st.calibration_queries);
    count = calibration_of(s, recall, nprobe);
    CHECK_MSG(count == count2 && memcmp(recall, recall2, count * sizeof recall[0]) == 0 &&
                  memcmp(nprobe, nprobe2, count * sizeof nprobe[0]) == 0,
              "reopened: another calibration (%zu points, was %zu)", count, count2);
    CHECK_ERR(OMEN_ERR_READ_ONLY, omen_calibrate(s, NQ, q, NULL, NULL));
    CHECK_OK(omen_close(s));

    /* A store without an IVF index has nothing to calibrate. */
    h_sub(flat_path, sizeof flat_path, "flat");
    o = ivf_opts(0);
    o.flags &= ~(uint32_t)OMEN_OPEN_IVF;
    CHECK_OK(omen_open(flat_path, &o, &flat));
    CHECK_OK(h_put_range(flat, 0, 500, 1, DIM));
    CHECK_OK(omen_train_pq(flat, NULL, NULL));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_calibrate(flat, NQ, q, NULL, NULL));
    CHECK_OK(omen_close(flat));
    free(q);
}
