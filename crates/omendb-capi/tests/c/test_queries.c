/* The cursor over live entries (omen_cursor_*), search by a stored ID
 * (omen_search_by_id, omen_search_by_id_ids) and range search
 * (omen_range_search). */
#include "harness.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define DIM 8
#define ID_LEN 8 /* "v0000123" */

/* Index from an ID "v0000123"; (size_t)-1 if not of that form. */
static size_t index_of(const uint8_t *id, size_t len) {
    size_t i, v = 0;
    if (len != ID_LEN || id[0] != 'v') return (size_t)-1;
    for (i = 1; i < ID_LEN; i++) {
        if (id[i] < '0' || id[i] > '9') return (size_t)-1;
        v = v * 10 + (size_t)(id[i] - '0');
    }
    return v;
}

static double l2(const float *a, const float *b) {
    double d = 0;
    size_t j;
    for (j = 0; j < DIM; j++) d += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
    return d;
}

/* Reads a cursor to its end in pages of `page`, checking every entry
 * against h_vec(index, 1) (when `vectors`), marking seen[index]. Returns
 * the number of entries, or (size_t)-1 after a failure. */
static size_t drain(omen_cursor *c, size_t page, int vectors, int *seen, size_t n_seen) {
    uint8_t ids[64 * ID_LEN];
    uint64_t offsets[65];
    float v[64 * DIM], want[DIM];
    size_t total = 0, n, i;
    if (page > 64) return (size_t)-1;
    for (;;) {
        omen_status st = omen_cursor_next(c, page, ids, sizeof ids, offsets, vectors ? v : NULL, &n);
        if (st != OMEN_OK) {
            h_fail(__FILE__, __LINE__, "omen_cursor_next: %s (%s)", omen_status_name(st), h_last_error());
            return (size_t)-1;
        }
        if (n == 0) return total;
        if (n > page || offsets[0] != 0) {
            h_fail(__FILE__, __LINE__, "page of %zu entries for max %zu, offsets[0] %llu", n, page,
                   (unsigned long long)offsets[0]);
            return (size_t)-1;
        }
        for (i = 0; i < n; i++) {
            size_t idx = index_of(ids + offsets[i], (size_t)(offsets[i + 1] - offsets[i]));
            if (idx >= n_seen || seen[idx]) {
                h_fail(__FILE__, __LINE__, "entry %zu: unknown or repeated ID", total + i);
                return (size_t)-1;
            }
            seen[idx] = 1;
            h_vec(idx, 1, DIM, want);
            if (vectors && !h_same_bits(v + i * DIM, want, DIM)) {
                h_fail(__FILE__, __LINE__, "v%07zu: the cursor's vector differs from the one put", idx);
                return (size_t)-1;
            }
        }
        total += n;
    }
}

/* A cursor lists the live entries of its moment, whatever is put,
 * deleted or compacted after it opened, and a new cursor sees those. */
void test_cursor_snapshot(void) {
    enum { N = 300 };
    char p[4096];
    omen_store *s = NULL;
    omen_cursor *c = NULL;
    int seen[N + 100];
    h_ids del;
    uint64_t d;
    size_t i;
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_put_range(s, 0, N, 1, DIM));
    h_ids_init(&del);
    for (i = 0; i < N; i += 10) h_ids_add_index(&del, i);
    CHECK_OK(omen_delete_batch(s, del.n, del.bytes, del.offsets, &d));
    CHECK_OK(omen_cursor_open(s, &c));
    /* After the moment: new IDs, replacements, deletes and a compaction. */
    CHECK_OK(h_put_range(s, N, 100, 1, DIM));
    CHECK_OK(h_put_range(s, 1, 9, 2, DIM)); /* v1..v9: none of them deleted */
    h_ids_clear(&del);
    for (i = 3; i < N; i += 10) h_ids_add_index(&del, i);
    CHECK_OK(omen_delete_batch(s, del.n, del.bytes, del.offsets, &d));
    CHECK_OK(omen_compact(s));
    memset(seen, 0, sizeof seen);
    CHECK_MSG(drain(c, 7, 1, seen, N + 100) == N - N / 10, "the cursor lists its moment's %d entries", N - N / 10);
    for (i = 0; i < N; i++) CHECK_MSG(seen[i] == (i % 10 != 0), "v%07zu: seen %d", i, seen[i]);
    omen_cursor_close(c);
    omen_cursor_close(c); /* a second close is a no-op */
    omen_cursor_close(NULL);
    /* A new cursor: its own moment (IDs only: the replaced ones changed). */
    CHECK_OK(omen_cursor_open(s, &c));
    memset(seen, 0, sizeof seen);
    CHECK_MSG(drain(c, 64, 0, seen, N + 100) == N + 100 - N / 10 - N / 10, "the new cursor sees the changes");
    omen_cursor_close(c);
    h_ids_free(&del);
    CHECK_OK(omen_close(s));
}

/* Buffers: a page stops before an ID that does not fit; when the first
 * one does not, BUFFER_TOO_SMALL says its size and the cursor stays. */
void test_cursor_buffers(void) {
    char p[4096];
    omen_store *s = NULL;
    omen_cursor *c = NULL;
    h_ids ids;
    float vecs[3 * DIM], out[3 * DIM];
    uint8_t bytes[64];
    uint64_t offsets[4];
    size_t n, i;
    char longid[40];
    memset(longid, 'x', sizeof longid);
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    h_ids_init(&ids);
    h_ids_add(&ids, "ab", 2);
    h_ids_add(&ids, longid, sizeof longid);
    h_ids_add(&ids, "c", 1);
    for (i = 0; i < 3 * DIM; i++) vecs[i] = (float)i;
    CHECK_OK(omen_put_batch(s, ids.n, ids.bytes, ids.offsets, vecs));
    CHECK_OK(omen_cursor_open(s, &c));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_cursor_next(c, 0, bytes, sizeof bytes, offsets, NULL, &n));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_cursor_next(c, 3, NULL, 8, offsets, NULL, &n));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_cursor_next(c, 3, bytes, sizeof bytes, NULL, NULL, &n));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_cursor_next(c, 3, bytes, sizeof bytes, offsets, NULL, NULL));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_cursor_next(NULL, 3, bytes, sizeof bytes, offsets, NULL, &n));
    /* 10 bytes: "ab" fits, the 40-byte ID does not; the page ends before it. */
    memset(out, 0, sizeof out);
    CHECK_OK(omen_cursor_next(c, 3, bytes, 10, offsets, out, &n));
    CHECK_MSG(n == 1 && offsets[0] == 0 && offsets[1] == 2 && memcmp(bytes, "ab", 2) == 0, "first page: n %zu", n);
    CHECK(h_same_bits(out, vecs, DIM));
    n = 99;
    CHECK_ERR(OMEN_ERR_BUFFER_TOO_SMALL, omen_cursor_next(c, 3, bytes, 10, offsets, out, &n));
    CHECK_MSG(n == 0 && offsets[1] == sizeof longid, "needed size: n %zu, offsets[1] %llu", n,
              (unsigned long long)offsets[1]);
    CHECK_MSG(strstr(omen_last_error(), "40 bytes") != NULL, "message names the size: %s", h_last_error());
    CHECK_ERR(OMEN_ERR_BUFFER_TOO_SMALL, omen_cursor_next(c, 3, NULL, 0, offsets, NULL, &n));
    /* With room, the rest (the refused calls did not move the cursor). */
    CHECK_OK(omen_cursor_next(c, 3, bytes, sizeof bytes, offsets, out, &n));
    CHECK_MSG(n == 2 && offsets[1] == sizeof longid && offsets[2] == sizeof longid + 1, "second page: n %zu", n);
    CHECK(memcmp(bytes, longid, sizeof longid) == 0 && bytes[sizeof longid] == 'c');
    CHECK(h_same_bits(out, vecs + DIM, 2 * DIM));
    CHECK_OK(omen_cursor_next(c, 3, NULL, 0, offsets, NULL, &n));
    CHECK(n == 0);
    omen_cursor_close(c);
    h_ids_free(&ids);
    CHECK_OK(omen_close(s));
}

/* The store closes first: the cursor refuses to read, and is still freed
 * by omen_cursor_close (valgrind and ASan check that nothing is read
 * after free and nothing leaks). Forked children are refused too. */
void test_cursor_outlived_store_and_fork(void) {
    char p[4096];
    omen_store *s = NULL;
    omen_cursor *c = NULL, *c2 = NULL;
    uint8_t bytes[64];
    uint64_t offsets[9];
    float v[8 * DIM];
    size_t n;
    pid_t pid;
    int ws = 0;
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_put_range(s, 0, 100, 1, DIM));
    CHECK_OK(omen_cursor_open(s, &c));
    CHECK_OK(omen_cursor_next(c, 8, bytes, sizeof bytes, offsets, v, &n));
    CHECK(n == 8);
    fflush(stdout);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int bad = omen_cursor_next(c, 8, bytes, sizeof bytes, offsets, v, &n) != OMEN_ERR_INVALID_ARGUMENT;
        bad |= strstr(omen_last_error(), "forked") == NULL;
        bad |= omen_cursor_open(s, &c2) != OMEN_ERR_INVALID_ARGUMENT;
        omen_cursor_close(c);
        bad |= omen_close(s) != OMEN_OK;
        _exit(bad);
    }
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    CHECK_MSG(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "child: a cursor call was not refused");
    CHECK_OK(omen_cursor_next(c, 8, bytes, sizeof bytes, offsets, v, &n));
    CHECK(n == 8);
    CHECK_OK(omen_cursor_open(s, &c2));
    CHECK_OK(omen_close_discard(s));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_cursor_next(c, 8, bytes, sizeof bytes, offsets, v, &n));
    CHECK_MSG(strstr(omen_last_error(), "closed") != NULL, "message: %s", h_last_error());
    CHECK(n == 0);
    /* Reopen: a cursor of the old handle still refuses; the new one reads. */
    CHECK_OK(h_open(p, 0, &s));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_cursor_next(c2, 8, bytes, sizeof bytes, offsets, v, &n));
    omen_cursor_close(c2);
    CHECK_OK(omen_cursor_open(s, &c2));
    CHECK_OK(omen_close(s));
    omen_cursor_close(c);
    omen_cursor_close(c2);
}

static omen_status create_drop_raw(const char *p, omen_store **s) {
    omen_options o = h_opts(OMEN_OPEN_CREATE | OMEN_OPEN_DROP_RAW, DIM, OMEN_METRIC_L2);
    o.pq_m = 2;
    return omen_open(p, &o, s);
}

/* A trained DROP_RAW store keeps no raw vectors: its cursor lists IDs,
 * refuses vectors; search by ID works there, range search refuses. */
void test_queries_drop_raw(void) {
    enum { N = 400 };
    char p[4096];
    omen_store *s = NULL;
    omen_cursor *c = NULL;
    int seen[N];
    uint8_t bytes[64];
    uint64_t offsets[9], total;
    float v[8 * DIM], q[DIM];
    omen_hit hits[5], plain[5];
    size_t n, count, plain_count, i;
    h_sub(p, sizeof p, "store");
    CHECK_OK(create_drop_raw(p, &s));
    CHECK_OK(h_put_range(s, 0, N, 1, DIM));
    CHECK_OK(omen_train_pq(s, NULL, NULL));
    CHECK_OK(omen_cursor_open(s, &c));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_cursor_next(c, 8, bytes, sizeof bytes, offsets, v, &n));
    memset(seen, 0, sizeof seen);
    CHECK_MSG(drain(c, 8, 0, seen, N) == N, "every ID");
    omen_cursor_close(c);
    /* The query is the stored reconstruction, as omen_get returns it. */
    CHECK_OK(omen_get(s, (const uint8_t *)"v0000042", ID_LEN, q, DIM));
    CHECK_OK(omen_search(s, q, 5, NULL, plain, &plain_count));
    CHECK_OK(omen_search_by_id(s, (const uint8_t *)"v0000042", ID_LEN, 5, NULL, 0, hits, &count));
    CHECK(count == 5 && plain_count == 5 && memcmp(hits, plain, sizeof hits) == 0);
    CHECK_OK(omen_search_by_id(s, (const uint8_t *)"v0000042", ID_LEN, 5, NULL, OMEN_SEARCH_EXCLUDE_SELF, hits, &count));
    for (i = 0; i < count; i++) {
        const uint8_t *id;
        size_t len;
        CHECK_OK(omen_key_id(s, hits[i].key, &id, &len));
        CHECK_MSG(index_of(id, len) != 42, "excluded ID returned");
    }
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_range_search(s, q, 1.0f, 5, NULL, hits, &count, &total));
    CHECK_OK(omen_close(s));
}

void test_search_by_id(void) {
    enum { N = 500, K = 10 };
    char p[4096];
    omen_store *s = NULL;
    omen_hit hits[K + 1], plain[K + 1];
    size_t count, plain_count, needed, i, j;
    uint8_t bytes[(K + 1) * ID_LEN];
    uint64_t offsets[K + 2];
    float q[DIM];
    const uint8_t *self = (const uint8_t *)"v0000042";
    omen_search_params sp;
    memset(&sp, 0, sizeof sp);
    sp.struct_size = sizeof sp;
    sp.exact = 1;
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_put_range(s, 0, N, 1, DIM));
    h_vec(42, 1, DIM, q);
    CHECK_OK(omen_search(s, q, K + 1, &sp, plain, &plain_count));
    CHECK_OK(omen_search_by_id(s, self, ID_LEN, K, &sp, 0, hits, &count));
    CHECK_MSG(count == K && memcmp(hits, plain, K * sizeof *hits) == 0, "as omen_search with the stored vector");
    /* Excluding self: the K others, in order. */
    CHECK_OK(omen_search_by_id(s, self, ID_LEN, K, &sp, OMEN_SEARCH_EXCLUDE_SELF, hits, &count));
    CHECK(count == K);
    for (i = 0, j = 0; i < plain_count && j < K; i++) {
        const uint8_t *id;
        size_t len;
        CHECK_OK(omen_key_id(s, plain[i].key, &id, &len));
        if (index_of(id, len) == 42) continue;
        CHECK_MSG(hits[j].key == plain[i].key && hits[j].distance == plain[i].distance, "hit %zu", j);
        j++;
    }
    CHECK(j == K);
    /* The _ids variant: the same hits and their IDs. */
    CHECK_OK(omen_search_by_id_ids(s, self, ID_LEN, K, &sp, OMEN_SEARCH_EXCLUDE_SELF, plain, &plain_count, bytes,
                                   sizeof bytes, offsets, &needed));
    CHECK(plain_count == K && memcmp(hits, plain, K * sizeof *hits) == 0 && needed == K * ID_LEN);
    for (i = 0; i < K; i++) {
        const uint8_t *id;
        size_t len;
        CHECK_OK(omen_key_id(s, hits[i].key, &id, &len));
        CHECK(offsets[i + 1] - offsets[i] == len && memcmp(bytes + offsets[i], id, len) == 0);
    }
    CHECK_ERR(OMEN_ERR_BUFFER_TOO_SMALL, omen_search_by_id_ids(s, self, ID_LEN, K, &sp, OMEN_SEARCH_EXCLUDE_SELF, plain,
                                                               &plain_count, bytes, needed - 1, offsets, &needed));
    CHECK(needed == K * ID_LEN);
    /* Bad calls. */
    CHECK_ERR(OMEN_ERR_NOT_FOUND, omen_search_by_id(s, (const uint8_t *)"nope", 4, K, &sp, 0, hits, &count));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search_by_id(s, self, ID_LEN, K, &sp, 0x2, hits, &count));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search_by_id(s, self, 0, K, &sp, 0, hits, &count));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search_by_id(s, NULL, ID_LEN, K, &sp, 0, hits, &count));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search_by_id(s, self, ID_LEN, K, &sp, 0, NULL, &count));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search_by_id(s, self, ID_LEN, K, &sp, 0, hits, NULL));
    CHECK_OK(omen_close(s));
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void test_range_search(void) {
    enum { N = 700, CAP = 16 };
    char p[4096];
    omen_store *s = NULL;
    omen_hit hits[N];
    double dist[N];
    size_t count, i, within = 0;
    uint64_t total = 0, capped_total = 0;
    float q[DIM], v[DIM], radius;
    omen_hit capped[CAP];
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_put_range(s, 0, N, 1, DIM));
    h_vec(100000, 1, DIM, q);
    for (i = 0; i < N; i++) {
        h_vec(i, 1, DIM, v);
        dist[i] = l2(q, v);
    }
    qsort(dist, N, sizeof *dist, cmp_double);
    /* A radius half-way between two neighbours' distances: no ties at the edge. */
    radius = (float)((dist[N / 4] + dist[N / 4 + 1]) / 2);
    for (i = 0; i < N; i++) within += dist[i] <= radius;
    CHECK_OK(omen_range_search(s, q, radius, N, NULL, hits, &count, &total));
    CHECK_MSG(count == within && total == within, "found %zu (total %llu), brute force %zu", count,
              (unsigned long long)total, within);
    for (i = 0; i < count; i++) {
        CHECK_MSG(fabs(hits[i].distance - dist[i]) <= 1e-4 * (1 + dist[i]), "hit %zu: %g, brute force %g", i,
                  hits[i].distance, dist[i]);
        CHECK(hits[i].distance <= radius && hits[i].reserved == 0);
    }
    CHECK_OK(omen_range_search(s, q, radius, CAP, NULL, capped, &count, &capped_total));
    CHECK_MSG(count == CAP && capped_total == within, "capped: %zu of %llu", count, (unsigned long long)capped_total);
    CHECK(memcmp(capped, hits, sizeof capped) == 0);
    /* The _ids variant: the same hits, with their IDs. */
    {
        uint8_t bytes[CAP * ID_LEN];
        uint64_t offsets[CAP + 1];
        omen_hit named[CAP];
        size_t needed;
        CHECK_OK(omen_range_search_ids(s, q, radius, CAP, NULL, named, &count, &total, bytes, sizeof bytes, offsets,
                                       &needed));
        CHECK(count == CAP && total == within && needed == CAP * ID_LEN && memcmp(named, capped, sizeof named) == 0);
        for (i = 0; i < CAP; i++) {
            const uint8_t *id;
            size_t len;
            CHECK_OK(omen_key_id(s, named[i].key, &id, &len));
            CHECK(offsets[i + 1] - offsets[i] == len && memcmp(bytes + offsets[i], id, len) == 0);
        }
        CHECK_ERR(OMEN_ERR_BUFFER_TOO_SMALL, omen_range_search_ids(s, q, radius, CAP, NULL, named, &count, &total,
                                                                   bytes, needed - 1, offsets, &needed));
        CHECK(needed == CAP * ID_LEN && count == CAP && total == within);
    }
    CHECK_OK(omen_range_search(s, q, radius, 0, NULL, NULL, &count, &total));
    CHECK(count == 0 && total == within);
    CHECK_OK(omen_range_search(s, q, radius, CAP, NULL, capped, &count, NULL));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_range_search(s, q, NAN, CAP, NULL, capped, &count, &total));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_range_search(s, NULL, radius, CAP, NULL, capped, &count, &total));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_range_search(s, q, radius, CAP, NULL, NULL, &count, &total));
    q[3] = INFINITY;
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_range_search(s, q, radius, CAP, NULL, capped, &count, &total));
    CHECK_OK(omen_close(s));
}
