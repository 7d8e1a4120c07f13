/* Calls a host makes that the library must survive and answer clearly:
 * an inherited handle in a forked child, write calls from inside a
 * training's progress callback, stale search keys, IDs of bad lengths,
 * absurd thread counts, a store the caller may not read. */
#include "harness.h"

#include <errno.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DIM 8

static omen_status create_with_pq(const char *p, uint32_t flags, uint32_t train_size, omen_store **s) {
    omen_options o = h_opts(OMEN_OPEN_CREATE | flags, DIM, OMEN_METRIC_L2);
    o.pq_m = 2;
    o.pq_bits = 8;
    o.pq_train_size = train_size;
    return omen_open(p, &o, s);
}

/* Waits for `pid`; returns its exit code, or 100 + signal if it died of one. */
static int wait_child(pid_t pid) {
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    if (WIFSIGNALED(ws)) return 100 + WTERMSIG(ws);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

/* A store of 3,000 vectors, checkpointed, at `p` (the fork tests' start);
 * the first status that is not OMEN_OK, else OMEN_OK. */
static omen_status checkpointed_store(char *p, size_t cap, omen_store **s) {
    omen_status st;
    h_sub(p, cap, "store");
    if ((st = h_create(p, DIM, OMEN_METRIC_L2, 0, s)) != OMEN_OK) return st;
    if ((st = h_put_range(*s, 0, 3000, 1, DIM)) != OMEN_OK) return st;
    return omen_checkpoint(*s, NULL);
}

/* A forked child closes the handle it inherited (Python's `with` or
 * `__del__` in a multiprocessing worker does); its other calls are
 * refused. The parent's next puts must not die of SIGBUS (the child's
 * close used to checkpoint and truncate the files under the parent), and
 * nothing the parent wrote may be lost. */
void test_fork_child_close_leaves_parent_intact(void) {
    char p[4096];
    omen_store *s = NULL;
    pid_t pid;
    int code;
    size_t i;
    CHECK_OK(checkpointed_store(p, sizeof p, &s));
    CHECK_OK(h_put_range(s, 3000, 1000, 1, DIM)); /* published, not yet checkpointed */
    fflush(stdout);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        float v[DIM];
        omen_hit hit;
        size_t count;
        omen_stats st;
        int bad = 0;
        alarm(60);
        /* Every call but close is refused: no I/O on the parent's store. */
        bad |= omen_get(s, (const uint8_t *)"v0000001", 8, v, DIM) != OMEN_ERR_INVALID_ARGUMENT;
        bad |= omen_contains(s, (const uint8_t *)"v0000001", 8, (uint8_t[]){0}) != OMEN_ERR_INVALID_ARGUMENT;
        bad |= strstr(omen_last_error(), "forked") == NULL;
        bad |= omen_search(s, v, 1, NULL, &hit, &count) != OMEN_ERR_INVALID_ARGUMENT;
        bad |= omen_checkpoint(s, NULL) != OMEN_ERR_INVALID_ARGUMENT;
        bad |= h_put_range(s, 9000, 10, 1, DIM) != OMEN_ERR_INVALID_ARGUMENT;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        bad |= omen_store_stats(s, &st) != OMEN_ERR_INVALID_ARGUMENT;
        /* Close only frees memory. */
        bad |= omen_close(s) != OMEN_OK;
        _exit(bad ? 1 : 0);
    }
    code = wait_child(pid);
    CHECK_MSG(code == 0, "child: exit %d (1 = a call on the inherited handle was not refused)", code);
    /* The parent goes on: puts past what the child had published, then reads everything. */
    CHECK_OK(h_put_range(s, 4000, 3000, 1, DIM));
    CHECK_OK(omen_checkpoint(s, NULL));
    for (i = 0; i < 7000; i += 97) CHECK_OK(h_get_index(s, i, 1, DIM));
    CHECK_OK(omen_close(s));
    CHECK_OK(h_open(p, 0, &s));
    for (i = 0; i < 7000; i += 97) CHECK_OK(h_get_index(s, i, 1, DIM));
    CHECK_OK(h_get_index(s, 6999, 1, DIM));
    CHECK_OK(omen_close(s));
}

/* The library's worker threads are kept for the process, and a forked
 * child has none of them: a child that opens the store itself and searches
 * on several threads gets workers of its own (the parent's pool is never
 * touched there: its locks may have been held at the fork; the alarm ends
 * a child that hangs) and the same answers as the parent. */
void test_fork_child_searches_on_workers_of_its_own(void) {
    enum { NQ = 64, K = 5 };
    char p[4096];
    omen_store *s = NULL;
    omen_search_params sp;
    static float q[NQ * DIM];
    static omen_hit hits[NQ * K];
    static size_t counts[NQ];
    pid_t pid;
    int code;
    size_t i;
    CHECK_OK(checkpointed_store(p, sizeof p, &s));
    for (i = 0; i < NQ; i++) h_vec(7 * i + 3, 2, DIM, q + i * DIM);
    memset(&sp, 0, sizeof sp);
    sp.struct_size = sizeof sp;
    sp.threads = 2;
    CHECK_OK(omen_search_batch(s, NQ, q, K, &sp, hits, counts)); /* the parent's workers start */
    fflush(stdout);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        static omen_hit mine[NQ * K];
        static size_t my_counts[NQ];
        omen_store *c = NULL;
        int bad = 0;
        alarm(60);
        if (h_open(p, OMEN_OPEN_READ_ONLY, &c) != OMEN_OK) _exit(2);
        if (omen_search_batch(c, NQ, q, K, &sp, mine, my_counts) != OMEN_OK) _exit(3);
        for (i = 0; i < NQ; i++) bad |= my_counts[i] != counts[i];
        for (i = 0; i < NQ * K; i++) bad |= !h_same_bits(&mine[i].distance, &hits[i].distance, 1);
        omen_close(c);
        _exit(bad ? 1 : 0);
    }
    code = wait_child(pid);
    CHECK_MSG(code == 0, "child: exit %d (1 = other answers, 2 = open, 3 = search, 114 = SIGALRM: it hung)", code);
    CHECK_OK(omen_close(s));
}

typedef struct reentry {
    omen_store *s;
    int calls;
    omen_status put, del, checkpoint, train, compact, close, close_discard, get, stats;
    char close_error[512], close_discard_error[512];
} reentry;

static void reenter(void *user, uint64_t done, uint64_t total) {
    reentry *r = user;
    float v[DIM];
    omen_stats st;
    (void)done;
    (void)total;
    if (r->calls++) return;
    h_vec(9999, 1, DIM, v);
    r->put = omen_put_batch(r->s, 1, (const uint8_t *)"x", (const uint64_t[]){0, 1}, v);
    r->del = omen_delete_batch(r->s, 1, (const uint8_t *)"v0000001", (const uint64_t[]){0, 8}, NULL);
    r->checkpoint = omen_checkpoint(r->s, NULL);
    r->train = omen_train_pq(r->s, NULL, NULL);
    r->compact = omen_compact(r->s);
    r->close = omen_close(r->s);
    snprintf(r->close_error, sizeof r->close_error, "%s", omen_last_error());
    r->close_discard = omen_close_discard(r->s);
    snprintf(r->close_discard_error, sizeof r->close_discard_error, "%s", omen_last_error());
    r->get = omen_get(r->s, (const uint8_t *)"v0000002", 8, v, DIM);
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    r->stats = omen_store_stats(r->s, &st);
}

/* Write calls (and close) from inside omen_train_pq's progress callback
 * used to wait forever for the writer lock their own thread holds. They
 * are refused; reads work; the handle stays usable afterwards. */
void test_write_calls_from_progress_callback(void) {
    char p[4096];
    omen_store *s = NULL;
    reentry r;
    h_sub(p, sizeof p, "store");
    CHECK_OK(create_with_pq(p, 0, 0, &s));
    CHECK_OK(h_put_range(s, 0, 600, 1, DIM));
    memset(&r, 0, sizeof r);
    r.s = s;
    alarm(120); /* the old behaviour was a hang */
    CHECK_OK(omen_train_pq(s, reenter, &r));
    alarm(0);
    CHECK(r.calls > 1);
    EXPECT_MSG(r.put == OMEN_ERR_INVALID_ARGUMENT, "put: %s", omen_status_name(r.put));
    EXPECT_MSG(r.del == OMEN_ERR_INVALID_ARGUMENT, "delete: %s", omen_status_name(r.del));
    EXPECT_MSG(r.checkpoint == OMEN_ERR_INVALID_ARGUMENT, "checkpoint: %s", omen_status_name(r.checkpoint));
    EXPECT_MSG(r.train == OMEN_ERR_INVALID_ARGUMENT, "train: %s", omen_status_name(r.train));
    EXPECT_MSG(r.compact == OMEN_ERR_INVALID_ARGUMENT, "compact: %s", omen_status_name(r.compact));
    EXPECT_MSG(r.close == OMEN_ERR_INVALID_ARGUMENT, "close: %s", omen_status_name(r.close));
    EXPECT_MSG(strstr(r.close_error, "progress callback") != NULL, "close's message: %s", r.close_error);
    EXPECT_MSG(r.close_discard == OMEN_ERR_INVALID_ARGUMENT, "close_discard: %s", omen_status_name(r.close_discard));
    EXPECT_MSG(strstr(r.close_discard_error, "omen_close_discard called from inside") != NULL,
               "close_discard's message: %s", r.close_discard_error);
    EXPECT_MSG(r.get == OMEN_OK, "get: %s", omen_status_name(r.get));
    EXPECT_MSG(r.stats == OMEN_OK, "stats: %s", omen_status_name(r.stats));
    if (g_failures) return;
    /* Nothing was applied, and the handle (not closed) works. */
    {
        float v[DIM];
        CHECK_ERR(OMEN_ERR_NOT_FOUND, omen_get(s, (const uint8_t *)"x", 1, v, DIM));
    }
    CHECK_OK(h_get_index(s, 1, 1, DIM));
    CHECK_OK(h_put_range(s, 600, 1, 1, DIM));
    CHECK_OK(omen_close(s));
}

/* Key of the nearest vector to h_vec(index, 1). */
static omen_status nearest_key(omen_store *s, uint64_t index, int exact, uint64_t *key) {
    float q[DIM];
    omen_hit hit;
    size_t count = 0;
    omen_search_params sp;
    omen_status st;
    memset(&sp, 0, sizeof sp);
    sp.struct_size = sizeof sp;
    sp.exact = (uint32_t)exact;
    h_vec(index, 1, DIM, q);
    st = omen_search(s, q, 1, &sp, &hit, &count);
    if (st == OMEN_OK && count != 1) st = OMEN_ERR_INTERNAL;
    *key = hit.key;
    return st;
}

/* A key from before omen_compact is refused (NOT_FOUND), never resolved
 * to the ID that now sits in its slot. */
void test_stale_key_after_compact(void) {
    char p[4096];
    omen_store *s = NULL;
    uint64_t key, fresh;
    const uint8_t *id;
    size_t len;
    h_ids ids;
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_put_range(s, 0, 3, 1, DIM));
    CHECK_OK(nearest_key(s, 1, 1, &key));
    CHECK_OK(omen_key_id(s, key, &id, &len));
    CHECK(len == 8 && memcmp(id, "v0000001", 8) == 0);
    h_ids_init(&ids);
    h_ids_add_index(&ids, 0);
    CHECK_OK(omen_delete_batch(s, ids.n, ids.bytes, ids.offsets, NULL));
    h_ids_free(&ids);
    CHECK_OK(omen_compact(s)); /* v0000002 moves into v0000001's old slot */
    CHECK_ERR(OMEN_ERR_NOT_FOUND, omen_key_id(s, key, &id, &len));
    CHECK_MSG(strstr(omen_last_error(), "compaction") != NULL, "message: %s", omen_last_error());
    CHECK_OK(nearest_key(s, 1, 1, &fresh));
    CHECK_OK(omen_key_id(s, fresh, &id, &len));
    CHECK(len == 8 && memcmp(id, "v0000001", 8) == 0);
    CHECK_OK(omen_close(s));
}

/* Automatic training inside a put of a DROP_RAW store rewrites the store
 * (new slot numbers). Keys and omen_key_id pointers from before it stay
 * valid until the next compaction, as the contract says. */
void test_keys_survive_automatic_drop_raw_training(void) {
    char p[4096];
    omen_store *s = NULL;
    uint64_t keys[4];
    const uint8_t *before[4];
    size_t i, len;
    const uint64_t which[4] = {0, 7, 300, 598};
    omen_stats st;
    h_ids ids;
    h_sub(p, sizeof p, "store");
    CHECK_OK(create_with_pq(p, OMEN_OPEN_DROP_RAW, 600, &s));
    CHECK_OK(h_put_range(s, 0, 599, 1, DIM));
    h_ids_init(&ids);
    h_ids_add_index(&ids, 5); /* a dead slot, so that the rewrite renumbers */
    CHECK_OK(omen_delete_batch(s, ids.n, ids.bytes, ids.offsets, NULL));
    h_ids_free(&ids);
    for (i = 0; i < 4; i++) {
        CHECK_OK(nearest_key(s, which[i], 1, &keys[i]));
        CHECK_OK(omen_key_id(s, keys[i], &before[i], &len));
    }
    CHECK_OK(h_put_range(s, 599, 2, 1, DIM)); /* reaches 600 live: trains, drops the raw vectors */
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.pq_trained == 1 && st.raw_kept == 0, "pq_trained %u raw_kept %u", st.pq_trained, st.raw_kept);
    CHECK_MSG(st.pq_auto_train_status == 0, "pq_auto_train_status %u", st.pq_auto_train_status);
    for (i = 0; i < 4; i++) {
        char want[16];
        const uint8_t *id;
        snprintf(want, sizeof want, "v%07llu", (unsigned long long)which[i]);
        CHECK_OK(omen_key_id(s, keys[i], &id, &len));
        CHECK_MSG(len == 8 && memcmp(id, want, 8) == 0, "key of %s now names %.*s", want, (int)len, (const char *)id);
        /* the pointer handed out before the training still reads (ASan/valgrind watch this) */
        CHECK_MSG(memcmp(before[i], want, 8) == 0, "pointer of %s now reads %.8s", want, (const char *)before[i]);
    }
    CHECK_OK(omen_compact(s));
    for (i = 0; i < 4; i++) {
        const uint8_t *id;
        CHECK_ERR(OMEN_ERR_NOT_FOUND, omen_key_id(s, keys[i], &id, &len));
    }
    CHECK_OK(omen_close(s));
}

/* omen_get refuses the ID lengths omen_put_batch refuses, with the same status. */
void test_get_refuses_bad_id_lengths(void) {
    char p[4096];
    omen_store *s = NULL;
    uint8_t long_id[1025];
    float v[DIM];
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    memset(long_id, 'a', sizeof long_id);
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_get(s, long_id, 0, v, DIM));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_get(s, long_id, 1025, v, DIM));
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT,
              omen_put_batch(s, 1, long_id, (const uint64_t[]){0, 1025}, v));
    CHECK_ERR(OMEN_ERR_NOT_FOUND, omen_get(s, long_id, 1024, v, DIM));
    {
        uint8_t found = 7;
        CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_contains(s, long_id, 0, &found));
        CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_contains(s, long_id, 1025, &found));
        CHECK(found == 7);
        CHECK_OK(omen_contains(s, long_id, 1024, &found));
        CHECK(found == 0);
    }
    CHECK_OK(omen_close(s));
}

/* A million threads is refused at open and in a batch search (training
 * used to start that many threads per k-means iteration). */
void test_thread_counts_are_bounded(void) {
    char p[4096];
    omen_store *s = NULL;
    omen_options o = h_opts(OMEN_OPEN_CREATE, DIM, OMEN_METRIC_L2);
    omen_search_params sp;
    float q[2 * DIM];
    omen_hit hits[2];
    size_t counts[2];
    h_sub(p, sizeof p, "store");
    o.threads = 1000000;
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_open(p, &o, &s));
    CHECK(s == NULL);
    o.threads = 1024;
    CHECK_OK(omen_open(p, &o, &s));
    CHECK_OK(h_put_range(s, 0, 10, 1, DIM));
    memset(&sp, 0, sizeof sp);
    sp.struct_size = sizeof sp;
    sp.threads = 1000000;
    h_vec(1, 1, DIM, q);
    h_vec(2, 1, DIM, q + DIM);
    CHECK_ERR(OMEN_ERR_INVALID_ARGUMENT, omen_search_batch(s, 2, q, 1, &sp, hits, counts));
    sp.threads = 1024;
    CHECK_OK(omen_search_batch(s, 2, q, 1, &sp, hits, counts));
    CHECK(counts[0] == 1 && counts[1] == 1);
    CHECK_OK(omen_close(s));
}

/* Opening a store the caller may not read is OMEN_ERR_IO with the OS's
 * reason, not "no store" (NOT_FOUND). As root (CI), a child drops to an
 * unprivileged user to be refused. */
void test_unreadable_store_is_io_error(void) {
    char p[4096];
    omen_store *s = NULL;
    pid_t pid;
    int code;
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(omen_close(s));
    CHECK(chmod(g_dir, 0755) == 0); /* others may reach the store directory ... */
    CHECK(chmod(p, 0700) == 0);     /* ... but not look inside it */
    fflush(stdout);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        omen_status st;
        alarm(60);
        if (geteuid() == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
        } else if (chmod(p, 0) != 0) {
            _exit(3);
        }
        st = h_open(p, 0, &s);
        if (st != OMEN_ERR_IO) {
            printf("    child: open of an unreadable store: %s (%s)\n", omen_status_name(st), h_last_error());
            _exit(1);
        }
        if (!strstr(omen_last_error(), "ermission denied")) {
            printf("    child: message without the OS reason: %s\n", h_last_error());
            _exit(2);
        }
        _exit(0);
    }
    code = wait_child(pid);
    chmod(p, 0700);
    CHECK_MSG(code != 3, "child could not drop its privileges");
    CHECK_MSG(code == 0, "child exit %d", code);
}
