/* The ABI surface itself: NULL checks, status names, version, last error. */
#include "harness.h"

#include <pthread.h>
#include <stdlib.h>

/* A store with dim 4 holding ID "a", and a valid key for it. */
static omen_status open_small(omen_store **s, uint64_t *key) {
    char p[4096];
    const float v[4] = {1, 2, 3, 4};
    const uint64_t off[2] = {0, 1};
    omen_hit hit;
    size_t count = 0;
    omen_status st;
    h_sub(p, sizeof p, "store");
    st = h_create(p, 4, OMEN_METRIC_L2, 0, s);
    if (st) return st;
    st = omen_put_batch(*s, 1, (const uint8_t *)"a", off, v);
    if (st) return st;
    st = omen_search(*s, v, 1, NULL, &hit, &count);
    if (st) return st;
    if (count != 1) return OMEN_ERR_INTERNAL;
    *key = hit.key;
    return OMEN_OK;
}

void test_null_open_recover(void) {
    char p[4096];
    omen_options o = h_opts(OMEN_OPEN_CREATE, 4, OMEN_METRIC_L2);
    omen_store *s = NULL;
    omen_recovery rep;

    h_sub(p, sizeof p, "store");
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_open(NULL, &o, &s));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_open(p, &o, NULL));
    /* The failed creations left no store behind. */
    EXPECT_STATUS(OMEN_ERR_NOT_FOUND, h_open(p, 0, &s));

    CHECK_OK(omen_open(p, &o, &s));
    CHECK_OK(omen_close(s));
    /* opts may be NULL on an existing store */
    s = NULL;
    CHECK_OK(omen_open(p, NULL, &s));
    CHECK(s != NULL);
    CHECK_OK(omen_close(s));

    memset(&rep, 0, sizeof rep);
    rep.struct_size = sizeof rep;
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_recover(NULL, &o, &s, &rep));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_recover(p, &o, NULL, &rep));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_recover(p, NULL, NULL, NULL));
    /* opts and report may be NULL */
    s = NULL;
    CHECK_OK(omen_recover(p, NULL, &s, NULL));
    CHECK(s != NULL);
    CHECK_OK(omen_close(s));
}

void test_null_writers(void) {
    omen_store *s = NULL;
    uint64_t key = 0, deleted = 99, seq = 0;
    const float v[4] = {5, 6, 7, 8};
    const uint64_t off[2] = {0, 1};
    const uint8_t *id = (const uint8_t *)"b";
    omen_stats st;

    CHECK_OK(open_small(&s, &key));

    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_put_batch(NULL, 1, id, off, v));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_put_batch(s, 1, NULL, off, v));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_put_batch(s, 1, id, NULL, v));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_put_batch(s, 1, id, off, NULL));

    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_delete_batch(NULL, 1, (const uint8_t *)"a", off, &deleted));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_delete_batch(s, 1, NULL, off, &deleted));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_delete_batch(s, 1, (const uint8_t *)"a", NULL, &deleted));

    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_checkpoint(NULL, &seq));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_train_pq(NULL, NULL, NULL));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_compact(NULL));

    /* Nothing of the above was applied: "a" still there, "b" absent. */
    CHECK_OK(h_stats(s, &st));
    EXPECT_MSG(st.live_vectors == 1, "live_vectors %llu, want 1", (unsigned long long)st.live_vectors);
    {
        float out[4];
        EXPECT_STATUS(OMEN_OK, omen_get(s, (const uint8_t *)"a", 1, out, 4));
        EXPECT_STATUS(OMEN_ERR_NOT_FOUND, omen_get(s, id, 1, out, 4));
    }
    /* NULL allowed: out_deleted, out_seq */
    EXPECT_STATUS(OMEN_OK, omen_delete_batch(s, 1, (const uint8_t *)"z", off, NULL));
    EXPECT_STATUS(OMEN_OK, omen_checkpoint(s, NULL));
    CHECK_OK(omen_close(s));
}

void test_null_readers(void) {
    omen_store *s = NULL;
    uint64_t key = 0;
    const float q[8] = {1, 2, 3, 4, 1, 2, 3, 4};
    const uint64_t off[2] = {0, 1};
    const uint8_t *id = (const uint8_t *)"a";
    float out[8];
    uint8_t found[2];
    omen_hit hits[2];
    size_t count = 0, counts[2];
    const uint8_t *kid = NULL;
    size_t klen = 0;
    omen_stats st;

    CHECK_OK(open_small(&s, &key));

    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_get(NULL, id, 1, out, 4));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_get(s, NULL, 1, out, 4));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_get(s, id, 1, NULL, 4));

    found[0] = 7;
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_contains(NULL, id, 1, found));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_contains(s, NULL, 1, found));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_contains(s, id, 1, NULL));
    EXPECT_MSG(found[0] == 7, "a refused omen_contains wrote *out_found");

    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_get_batch(NULL, 1, id, off, out, found));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_get_batch(s, 1, NULL, off, out, found));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_get_batch(s, 1, id, NULL, out, found));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_get_batch(s, 1, id, off, NULL, found));
    EXPECT_STATUS(OMEN_OK, omen_get_batch(s, 1, id, off, out, NULL));

    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_search(NULL, q, 1, NULL, hits, &count));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_search(s, NULL, 1, NULL, hits, &count));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_search(s, q, 1, NULL, NULL, &count));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_search(s, q, 1, NULL, hits, NULL));

    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_search_batch(NULL, 2, q, 1, NULL, hits, counts));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_search_batch(s, 2, NULL, 1, NULL, hits, counts));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_search_batch(s, 2, q, 1, NULL, NULL, counts));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_search_batch(s, 2, q, 1, NULL, hits, NULL));

    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_key_id(NULL, key, &kid, &klen));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_key_id(s, key, NULL, &klen));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_key_id(s, key, &kid, NULL));
    EXPECT_STATUS(OMEN_OK, omen_key_id(s, key, &kid, &klen));
    EXPECT_MSG(klen == 1 && kid && kid[0] == 'a', "omen_key_id of the only vector is not \"a\"");

    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_store_stats(NULL, &st));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_store_stats(s, NULL));

    CHECK_OK(omen_close(s));
}

void test_close_null_is_noop(void) {
    CHECK_OK(omen_close(NULL));
    CHECK_OK(omen_close(NULL));
    CHECK_OK(omen_close_discard(NULL));
}

/* A garbage-collected host may close a handle twice (an explicit close, then
 * a finalizer): the second close is refused without touching freed memory
 * (valgrind checks that), and the store stays usable for a new open. */
void test_double_close_is_refused(void) {
    char p[4096];
    omen_store *s = NULL, *again = NULL;
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, 4, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(omen_close(s));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_close(s));
    CHECK_MSG(strstr(omen_last_error(), "not open") != NULL, "message: %s", omen_last_error());
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_close_discard(s));
    CHECK_MSG(strstr(omen_last_error(), "not open") != NULL, "message: %s", omen_last_error());
    CHECK_OK(h_open(p, 0, &again));
    CHECK_OK(omen_close_discard(again));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_close(again));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_close_discard(again));
    CHECK_OK(h_open(p, 0, &again));
    CHECK_OK(omen_close(again));
}

void test_options_default_null_does_not_crash(void) {
    /* A void function cannot report the NULL; it must simply not crash. */
    omen_options_default(NULL);
}

static const char *const k_names[] = {
    "OMEN_OK",
    "OMEN_ERR_INVALID_ARGUMENT",
    "OMEN_ERR_DIMENSION",
    "OMEN_ERR_NOT_FOUND",
    "OMEN_ERR_IO",
    "OMEN_ERR_CORRUPT",
    "OMEN_ERR_LOCKED",
    "OMEN_ERR_VERSION",
    "OMEN_ERR_READ_ONLY",
    "OMEN_ERR_NOT_TRAINED",
    "OMEN_ERR_BUFFER_TOO_SMALL",
    "OMEN_ERR_INTERNAL",
};

void test_status_values_and_names(void) {
    const int32_t unknown[] = {-1, 12, 13, 100, 255, 256, INT32_MIN, INT32_MAX};
    const omen_status all[] = {OMEN_OK, OMEN_ERR_INVALID_ARGUMENT, OMEN_ERR_DIMENSION,
                               OMEN_ERR_NOT_FOUND, OMEN_ERR_IO, OMEN_ERR_CORRUPT,
                               OMEN_ERR_LOCKED, OMEN_ERR_VERSION, OMEN_ERR_READ_ONLY,
                               OMEN_ERR_NOT_TRAINED, OMEN_ERR_BUFFER_TOO_SMALL,
                               OMEN_ERR_INTERNAL};
    size_t i;
    /* The header's values are the contract's values. */
    for (i = 0; i < sizeof all / sizeof all[0]; i++)
        EXPECT_MSG((int)all[i] == (int)i, "%s has value %d, contract says %d", k_names[i], (int)all[i], (int)i);
    EXPECT_MSG(sizeof(omen_status) == sizeof(int32_t), "sizeof(omen_status) = %zu, want 4", sizeof(omen_status));
    for (i = 0; i < sizeof k_names / sizeof k_names[0]; i++) {
        const char *n = omen_status_name((int32_t)i);
        EXPECT_MSG(n != NULL && strcmp(n, k_names[i]) == 0, "omen_status_name(%d) = \"%s\", want \"%s\"",
                   (int)i, n ? n : "(NULL)", k_names[i]);
    }
    for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *n = omen_status_name(unknown[i]);
        EXPECT_MSG(n != NULL && strcmp(n, "OMEN_UNKNOWN") == 0, "omen_status_name(%ld) = \"%s\", want \"OMEN_UNKNOWN\"",
                   (long)unknown[i], n ? n : "(NULL)");
    }
}

static int is_digits(const char *s, size_t n) {
    size_t i;
    if (n == 0) return 0;
    for (i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

void test_version(void) {
    const char *v = omen_version();
    const char *d1, *d2, *end;
    CHECK_MSG(v != NULL, "omen_version() returned NULL");
    /* MAJOR.MINOR.PATCH[-pre][+build], as Cargo spells CARGO_PKG_VERSION */
    d1 = strchr(v, '.');
    CHECK_MSG(d1 != NULL, "omen_version() = \"%s\" is not MAJOR.MINOR.PATCH", v);
    d2 = strchr(d1 + 1, '.');
    CHECK_MSG(d2 != NULL, "omen_version() = \"%s\" is not MAJOR.MINOR.PATCH", v);
    end = d2 + 1 + strcspn(d2 + 1, "-+");
    CHECK_MSG(is_digits(v, (size_t)(d1 - v)) && is_digits(d1 + 1, (size_t)(d2 - d1 - 1)) &&
                  is_digits(d2 + 1, (size_t)(end - d2 - 1)),
              "omen_version() = \"%s\" is not MAJOR.MINOR.PATCH", v);
#ifdef OMEN_CRATE_VERSION
    CHECK_MSG(strcmp(v, OMEN_CRATE_VERSION) == 0, "omen_version() = \"%s\", Cargo.toml says \"%s\"", v,
              OMEN_CRATE_VERSION);
#endif
    /* Stable pointer and content */
    CHECK(strcmp(omen_version(), v) == 0);
}

/* ---- omen_last_error ---------------------------------------------------- */

struct thread_err {
    int fresh_ok;      /* last_error was "" and non-NULL before any call */
    int after_err_ok;  /* non-empty after a failing call */
    char msg[512];
};

static void *err_thread(void *arg) {
    struct thread_err *te = arg;
    const char *e = omen_last_error();
    omen_store *s = NULL;
    te->fresh_ok = e != NULL && e[0] == '\0';
    (void)omen_open(NULL, NULL, &s); /* fails: NULL path */
    e = omen_last_error();
    te->after_err_ok = e != NULL && e[0] != '\0';
    snprintf(te->msg, sizeof te->msg, "%s", e ? e : "");
    return NULL;
}

void test_last_error_per_thread(void) {
    const char *e = omen_last_error();
    char mine[512];
    char p[4096];
    omen_store *s = NULL;
    pthread_t t;
    struct thread_err te;

    CHECK_MSG(e != NULL, "omen_last_error() is NULL before any call");
    CHECK_MSG(e[0] == '\0', "omen_last_error() is \"%s\" before any call, want \"\"", e);

    /* A failing call leaves a message naming the problem. */
    h_sub(p, sizeof p, "missing");
    CHECK_ERR(OMEN_ERR_NOT_FOUND, h_open(p, 0, &s));
    snprintf(mine, sizeof mine, "%s", omen_last_error());

    memset(&te, 0, sizeof te);
    CHECK(pthread_create(&t, NULL, err_thread, &te) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    EXPECT_MSG(te.fresh_ok, "a new thread sees a non-empty or NULL omen_last_error() before its first call");
    EXPECT_MSG(te.after_err_ok, "omen_last_error() empty after a failing call in a second thread");
    /* The other thread's failure did not overwrite this thread's message. */
    e = omen_last_error();
    CHECK(e != NULL);
    EXPECT_MSG(strcmp(e, mine) == 0, "this thread's last error changed from \"%s\" to \"%s\" after another thread failed",
               mine, e);
    EXPECT_MSG(strcmp(te.msg, mine) != 0, "both threads report the same message \"%s\" for different errors", mine);
}
