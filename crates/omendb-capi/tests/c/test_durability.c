/* Checkpoints, close, reopen, crashes (SIGKILL of a child), recovery, damage. */
#include "harness.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define DIM 32

static uint64_t seq_of(const omen_store *s) {
    omen_stats st;
    if (h_stats(s, &st) != OMEN_OK) return UINT64_MAX;
    return st.checkpoint_seq;
}

static uint64_t live_of(const omen_store *s) {
    omen_stats st;
    if (h_stats(s, &st) != OMEN_OK) return UINT64_MAX;
    return st.live_vectors;
}

void test_checkpoint_sequence(void) {
    char p[4096];
    omen_store *s = NULL;
    uint64_t seq = 0, prev, d;
    h_ids ids;

    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    CHECK_MSG(seq_of(s) == 1, "checkpoint_seq right after creation is %llu, want 1", (unsigned long long)seq_of(s));

    /* nothing changed: may keep the number, never decrease */
    CHECK_OK(omen_checkpoint(s, &seq));
    CHECK_MSG(seq >= 1, "empty checkpoint returned seq %llu", (unsigned long long)seq);
    CHECK_MSG(seq == seq_of(s), "out_seq %llu != stats.checkpoint_seq %llu", (unsigned long long)seq,
              (unsigned long long)seq_of(s));
    prev = seq;

    CHECK_OK(h_put_range(s, 0, 100, 1, DIM));
    CHECK_MSG(seq_of(s) == prev, "a put without SYNC_WRITES changed checkpoint_seq from %llu to %llu",
              (unsigned long long)prev, (unsigned long long)seq_of(s));
    CHECK_OK(omen_checkpoint(s, &seq));
    CHECK_MSG(seq > prev, "checkpoint after a put: seq %llu, previous %llu (must increase)", (unsigned long long)seq,
              (unsigned long long)prev);
    CHECK(seq == seq_of(s));
    prev = seq;

    CHECK_OK(omen_checkpoint(s, &seq));
    CHECK_MSG(seq >= prev, "seq decreased from %llu to %llu", (unsigned long long)prev, (unsigned long long)seq);
    prev = seq;

    h_ids_init(&ids);
    h_ids_add_index(&ids, 5);
    CHECK_OK(omen_delete_batch(s, 1, ids.bytes, ids.offsets, &d));
    CHECK(d == 1);
    CHECK_OK(omen_checkpoint(s, &seq));
    CHECK_MSG(seq > prev, "checkpoint after a delete: seq %llu, previous %llu (must increase)", (unsigned long long)seq,
              (unsigned long long)prev);
    prev = seq;

    /* a delete of a missing ID changed nothing: may keep the number */
    h_ids_clear(&ids);
    h_ids_add(&ids, "missing", 7);
    CHECK_OK(omen_delete_batch(s, 1, ids.bytes, ids.offsets, &d));
    CHECK(d == 0);
    CHECK_OK(omen_checkpoint(s, NULL));
    CHECK(seq_of(s) >= prev);
    prev = seq_of(s);

    /* a replacement is a change */
    CHECK_OK(h_put_range(s, 0, 1, 2, DIM));
    CHECK_OK(omen_checkpoint(s, &seq));
    CHECK_MSG(seq > prev, "checkpoint after a replacement: seq %llu, previous %llu", (unsigned long long)seq,
              (unsigned long long)prev);
    prev = seq;
    h_ids_free(&ids);

    CHECK_OK(omen_close(s));
    CHECK_OK(h_open(p, 0, &s));
    CHECK_MSG(seq_of(s) >= prev, "after reopen checkpoint_seq %llu < %llu", (unsigned long long)seq_of(s),
              (unsigned long long)prev);
    CHECK_OK(omen_close(s));
}

void test_close_checkpoints(void) {
    char p[4096];
    omen_store *s = NULL;
    h_ids ids;
    uint64_t d, seq_before;
    size_t i;

    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_put_range(s, 0, 50, 1, DIM));
    CHECK_OK(omen_checkpoint(s, &seq_before));
    /* changes after the last explicit checkpoint */
    CHECK_OK(h_put_range(s, 50, 50, 1, DIM));
    CHECK_OK(h_put_range(s, 0, 10, 2, DIM));
    h_ids_init(&ids);
    h_ids_add_index(&ids, 20);
    h_ids_add_index(&ids, 60);
    CHECK_OK(omen_delete_batch(s, ids.n, ids.bytes, ids.offsets, &d));
    CHECK(d == 2);
    h_ids_free(&ids);
    CHECK_OK(omen_close(s)); /* checkpoints */

    CHECK_OK(h_open(p, 0, &s));
    CHECK_MSG(live_of(s) == 98, "after close+reopen live_vectors %llu, want 98", (unsigned long long)live_of(s));
    CHECK_MSG(seq_of(s) > seq_before, "omen_close did not commit a checkpoint (seq %llu, before %llu)",
              (unsigned long long)seq_of(s), (unsigned long long)seq_before);
    for (i = 0; i < 100; i++) {
        omen_status st = h_get_index(s, i, i < 10 ? 2 : 1, DIM);
        if (i == 20 || i == 60)
            CHECK_MSG(st == OMEN_ERR_NOT_FOUND, "deleted v%07zu is back after close+reopen (%s)", i, omen_status_name(st));
        else
            CHECK_MSG(st == OMEN_OK, "v%07zu after close+reopen: %s", i, omen_status_name(st));
    }
    CHECK_OK(omen_close(s));
}

void test_reopen_exact_data(void) {
    char p[4096];
    omen_store *s = NULL;
    size_t n = g_valgrind ? 500 : 3000, i;
    h_ids ids;
    uint64_t d;

    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_COSINE, 0, &s));
    CHECK_OK(h_put_range(s, 0, n, 1, DIM));
    CHECK_OK(omen_checkpoint(s, NULL));
    CHECK_OK(h_put_range(s, n / 2, n / 4, 2, DIM));
    h_ids_init(&ids);
    for (i = 0; i < n; i += 7) h_ids_add_index(&ids, i);
    CHECK_OK(omen_delete_batch(s, ids.n, ids.bytes, ids.offsets, &d));
    CHECK(d == ids.n);
    CHECK_OK(omen_checkpoint(s, NULL));
    CHECK_OK(omen_close(s));

    for (i = 0; i < 2; i++) { /* read-write, then read-only */
        size_t j;
        CHECK_OK(h_open(p, i ? OMEN_OPEN_READ_ONLY : 0, &s));
        CHECK_MSG(live_of(s) == n - ids.n, "live %llu, want %zu", (unsigned long long)live_of(s), n - ids.n);
        for (j = 0; j < n; j++) {
            omen_status st = h_get_index(s, j, (j >= n / 2 && j < n / 2 + n / 4) ? 2 : 1, DIM);
            if (j % 7 == 0)
                CHECK_MSG(st == OMEN_ERR_NOT_FOUND, "deleted v%07zu: %s", j, omen_status_name(st));
            else
                CHECK_MSG(st == OMEN_OK, "v%07zu: %s", j, omen_status_name(st));
        }
        CHECK_OK(omen_close(s));
    }
    h_ids_free(&ids);
}

void test_sync_writes(void) {
    char p[4096];
    omen_store *s = NULL;
    uint64_t prev, d;
    h_ids ids;

    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, OMEN_OPEN_SYNC_WRITES, &s));
    prev = seq_of(s);
    CHECK_OK(h_put_range(s, 0, 10, 1, DIM));
    CHECK_MSG(seq_of(s) > prev, "with SYNC_WRITES a put batch is a checkpoint, but seq stayed %llu",
              (unsigned long long)prev);
    prev = seq_of(s);
    h_ids_init(&ids);
    h_ids_add_index(&ids, 3);
    CHECK_OK(omen_delete_batch(s, 1, ids.bytes, ids.offsets, &d));
    CHECK_MSG(seq_of(s) > prev, "with SYNC_WRITES a delete batch is a checkpoint, but seq stayed %llu",
              (unsigned long long)prev);
    h_ids_free(&ids);
    CHECK_OK(omen_close(s));
    /* SYNC_WRITES is per open: reopen without it and puts no longer commit */
    CHECK_OK(h_open(p, 0, &s));
    prev = seq_of(s);
    CHECK_OK(h_put_range(s, 10, 1, 1, DIM));
    CHECK_MSG(seq_of(s) == prev, "without SYNC_WRITES a put changed checkpoint_seq");
    CHECK_OK(omen_close(s));
}

/* ---- crashes: a child process does work and SIGKILLs itself -------------- */

enum crash_mode { CRASH_AFTER_CREATE, CRASH_AFTER_CHECKPOINT, CRASH_SYNC_WRITES };

/* Returns 0 if the child was killed by SIGKILL as planned. */
static int run_crash_child(const char *p, enum crash_mode mode) {
    pid_t pid;
    int ws = 0;
    fflush(stdout);
    pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        omen_store *s = NULL;
        omen_options o = h_opts(OMEN_OPEN_CREATE | (mode == CRASH_SYNC_WRITES ? OMEN_OPEN_SYNC_WRITES : 0), DIM,
                                OMEN_METRIC_L2);
        if (omen_open(p, &o, &s) != OMEN_OK) _exit(10);
        if (mode == CRASH_AFTER_CHECKPOINT) {
            h_ids ids;
            uint64_t d;
            if (h_put_range(s, 0, 200, 1, DIM) != OMEN_OK) _exit(11);
            if (omen_checkpoint(s, NULL) != OMEN_OK) _exit(12);
            /* not committed: must not be visible after the crash */
            if (h_put_range(s, 200, 100, 1, DIM) != OMEN_OK) _exit(13);
            if (h_put_range(s, 0, 50, 2, DIM) != OMEN_OK) _exit(14);
            h_ids_init(&ids);
            h_ids_add_index(&ids, 100);
            if (omen_delete_batch(s, 1, ids.bytes, ids.offsets, &d) != OMEN_OK) _exit(15);
        } else if (mode == CRASH_SYNC_WRITES) {
            h_ids ids;
            uint64_t d;
            if (h_put_range(s, 0, 200, 1, DIM) != OMEN_OK) _exit(11);
            if (h_put_range(s, 0, 50, 2, DIM) != OMEN_OK) _exit(14);
            h_ids_init(&ids);
            h_ids_add_index(&ids, 100);
            if (omen_delete_batch(s, 1, ids.bytes, ids.offsets, &d) != OMEN_OK) _exit(15);
        }
        kill(getpid(), SIGKILL);
        _exit(20);
    }
    while (waitpid(pid, &ws, 0) < 0) {
    }
    if (WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL) return 0;
    h_note("crash child ended with %s %d", WIFEXITED(ws) ? "exit status" : "signal",
           WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
    return -1;
}

void test_crash_right_after_create(void) {
    char p[4096];
    omen_store *s = NULL;
    omen_stats st;
    h_sub(p, sizeof p, "store");
    CHECK_MSG(run_crash_child(p, CRASH_AFTER_CREATE) == 0, "child failed before the planned crash");
    CHECK_OK(h_open(p, 0, &s)); /* no CREATE: the empty store must exist */
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.live_vectors == 0 && st.dim == DIM && st.checkpoint_seq == 1,
              "after a crash right after creation: live %llu dim %u seq %llu, want 0/%d/1",
              (unsigned long long)st.live_vectors, st.dim, (unsigned long long)st.checkpoint_seq, DIM);
    CHECK_OK(omen_close(s));
}

static void check_after_crash(const char *p, int sync_writes, int use_recover) {
    omen_store *s = NULL;
    omen_recovery rep;
    size_t i;
    memset(&rep, 0, sizeof rep);
    rep.struct_size = sizeof rep;
    if (use_recover)
        CHECK_OK(omen_recover(p, NULL, &s, &rep));
    else
        CHECK_OK(h_open(p, 0, &s));
    if (!sync_writes) {
        /* recovered to the checkpoint: 200 vectors of version 1 */
        CHECK_MSG(live_of(s) == 200, "after a crash, live %llu, want the checkpoint's 200", (unsigned long long)live_of(s));
        for (i = 0; i < 300; i++) {
            omen_status st = h_get_index(s, i, 1, DIM);
            CHECK_MSG(st == (i < 200 ? OMEN_OK : OMEN_ERR_NOT_FOUND),
                      "after a crash, v%07zu: %s (uncommitted changes must be gone, committed ones intact)", i,
                      omen_status_name(st));
        }
        if (use_recover) {
            CHECK_MSG(rep.live_vectors == 200, "recovery report live_vectors %llu, want 200",
                      (unsigned long long)rep.live_vectors);
            CHECK_MSG(rep.checkpoint_seq == seq_of(s), "report checkpoint_seq %llu, stats %llu",
                      (unsigned long long)rep.checkpoint_seq, (unsigned long long)seq_of(s));
            h_note("recovery after crash: seq %llu, discarded %llu bytes, verified %llu bytes",
                   (unsigned long long)rep.checkpoint_seq, (unsigned long long)rep.discarded_bytes,
                   (unsigned long long)rep.verified_bytes);
        }
    } else {
        CHECK_MSG(live_of(s) == 199, "after a crash with SYNC_WRITES, live %llu, want 199", (unsigned long long)live_of(s));
        for (i = 0; i < 200; i++) {
            omen_status st = h_get_index(s, i, i < 50 ? 2 : 1, DIM);
            CHECK_MSG(st == (i == 100 ? OMEN_ERR_NOT_FOUND : OMEN_OK), "after a crash with SYNC_WRITES, v%07zu: %s",
                      i, omen_status_name(st));
        }
    }
    CHECK_OK(omen_close(s));
}

void test_crash_after_checkpoint(void) {
    char p[4096];
    h_sub(p, sizeof p, "store");
    CHECK_MSG(run_crash_child(p, CRASH_AFTER_CHECKPOINT) == 0, "child failed before the planned crash");
    check_after_crash(p, 0, 0);
}

void test_crash_then_recover(void) {
    char p[4096];
    h_sub(p, sizeof p, "store");
    CHECK_MSG(run_crash_child(p, CRASH_AFTER_CHECKPOINT) == 0, "child failed before the planned crash");
    check_after_crash(p, 0, 1);
}

void test_crash_with_sync_writes(void) {
    char p[4096];
    h_sub(p, sizeof p, "store");
    CHECK_MSG(run_crash_child(p, CRASH_SYNC_WRITES) == 0, "child failed before the planned crash");
    check_after_crash(p, 1, 0);
}

/* ---- omen_recover ------------------------------------------------------- */

void test_recover_report(void) {
    char p[4096];
    omen_store *s = NULL;
    omen_recovery rep;
    uint64_t seq, d;
    h_ids ids;

    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_put_range(s, 0, 300, 1, DIM));
    CHECK_OK(omen_checkpoint(s, NULL));
    CHECK_OK(h_put_range(s, 300, 100, 1, DIM));
    h_ids_init(&ids);
    h_ids_add_index(&ids, 1);
    CHECK_OK(omen_delete_batch(s, 1, ids.bytes, ids.offsets, &d));
    h_ids_free(&ids);
    CHECK_OK(omen_close(s));

    memset(&rep, 0xEE, sizeof rep);
    rep.struct_size = sizeof rep;
    CHECK_OK(omen_recover(p, NULL, &s, &rep));
    seq = seq_of(s);
    EXPECT_MSG(rep.struct_size == sizeof rep, "report struct_size changed to %u", rep.struct_size);
    EXPECT_MSG(rep.reserved == 0, "report reserved = %u, want 0", rep.reserved);
    EXPECT_MSG(rep.checkpoint_seq == seq && seq >= 3, "report checkpoint_seq %llu, stats %llu (want equal, >= 3)",
               (unsigned long long)rep.checkpoint_seq, (unsigned long long)seq);
    EXPECT_MSG(rep.live_vectors == 399, "report live_vectors %llu, want 399", (unsigned long long)rep.live_vectors);
    EXPECT_MSG(rep.discarded_bytes == 0, "report discarded_bytes %llu after a clean close, want 0",
               (unsigned long long)rep.discarded_bytes);
    EXPECT_MSG(rep.verified_bytes >= 399ull * DIM * 4, "report verified_bytes %llu, less than the %llu bytes of live vectors",
               (unsigned long long)rep.verified_bytes, 399ull * DIM * 4);
    CHECK(live_of(s) == 399);
    CHECK_OK(h_get_index(s, 350, 1, DIM));
    CHECK_ERR(OMEN_ERR_NOT_FOUND, h_get_index(s, 1, 1, DIM));
    /* the recovered handle is a normal writable handle */
    CHECK_OK(h_put_range(s, 1000, 1, 1, DIM));
    CHECK_OK(omen_close(s));

    /* read-only recover changes no file */
    {
        uint64_t before = h_dir_fingerprint(p);
        omen_options o = h_opts_flags(OMEN_OPEN_READ_ONLY);
        memset(&rep, 0, sizeof rep);
        rep.struct_size = sizeof rep;
        CHECK_OK(omen_recover(p, &o, &s, &rep));
        EXPECT_MSG(rep.live_vectors == 400, "read-only recover: live_vectors %llu, want 400",
                   (unsigned long long)rep.live_vectors);
        CHECK_OK(h_get_index(s, 1000, 1, DIM));
        CHECK_OK(omen_close(s));
        CHECK_MSG(h_dir_fingerprint(p) == before, "a read-only omen_recover + omen_close changed the store's files");
    }
    /* dim mismatch */
    {
        omen_options o = h_opts(0, DIM + 1, OMEN_METRIC_L2);
        CHECK_ERR(OMEN_ERR_DIMENSION, omen_recover(p, &o, &s, NULL));
    }
}

/* Builds a closed store of n vectors of dim 64 at p. */
static omen_status build_closed_store(const char *p, size_t n) {
    omen_store *s = NULL;
    omen_status st = h_create(p, 64, OMEN_METRIC_L2, 0, &s);
    if (st) return st;
    st = h_put_range(s, 0, n, 1, 64);
    if (st) {
        omen_close(s);
        return st;
    }
    return omen_close(s);
}

static int flip_in_largest(const char *p, char *file, size_t cap, long long *off) {
    long long size = 0;
    if (h_largest_file(p, file, cap, &size) != 0) return -1;
    if (size <= 4096 + 1) return -1;
    /* In the middle of what the vectors would occupy after a 4 KiB header. */
    {
        long long span = size - 4096;
        if (span > 2000LL * 64 * 4) span = 2000LL * 64 * 4;
        *off = 4096 + span / 2;
    }
    return h_flip_byte(file, *off);
}

void test_recover_detects_flipped_byte(void) {
    char p[4096], file[4096];
    omen_store *s = NULL;
    omen_recovery rep;
    long long off = 0;
    uint64_t fp;
    omen_options ro = h_opts_flags(OMEN_OPEN_READ_ONLY);

    h_sub(p, sizeof p, "store");
    CHECK_OK(build_closed_store(p, 2000));
    CHECK_MSG(flip_in_largest(p, file, sizeof file, &off) == 0, "could not flip a byte in the store's largest file");
    h_note("flipped byte %lld of %s", off, file + strlen(g_dir));

    fp = h_dir_fingerprint(p);
    memset(&rep, 0, sizeof rep);
    rep.struct_size = sizeof rep;
    CHECK_ERR(OMEN_ERR_CORRUPT, omen_recover(p, &ro, &s, &rep));
    CHECK_MSG(h_dir_fingerprint(p) == fp, "a failed read-only omen_recover changed files");
    CHECK_ERR(OMEN_ERR_CORRUPT, omen_recover(p, NULL, &s, &rep));
    CHECK_ERR(OMEN_ERR_CORRUPT, omen_recover(p, NULL, &s, NULL));
}

/* A flipped byte must never come back as data: every get either returns the
 * exact vector or OMEN_ERR_CORRUPT, and at least one returns CORRUPT. */
void test_flipped_byte_never_returned_as_data(void) {
    char p[4096], file[4096];
    omen_store *s = NULL;
    long long off = 0;
    size_t i, n = 2000, corrupt = 0;
    omen_status st;

    h_sub(p, sizeof p, "store");
    CHECK_OK(build_closed_store(p, n));
    CHECK(flip_in_largest(p, file, sizeof file, &off) == 0);
    st = h_open(p, OMEN_OPEN_READ_ONLY, &s);
    if (st == OMEN_ERR_CORRUPT) {
        h_note("omen_open itself refused the damaged store (fine)");
        return;
    }
    CHECK_MSG(st == OMEN_OK, "omen_open on a store with a flipped vector byte: %s", omen_status_name(st));
    for (i = 0; i < n; i++) {
        st = h_get_index(s, i, 1, 64);
        CHECK_MSG(st == OMEN_OK || st == OMEN_ERR_CORRUPT, "get v%07zu on a damaged store: %s (last error %s)", i,
                  omen_status_name(st), h_last_error());
        corrupt += st == OMEN_ERR_CORRUPT;
    }
    CHECK_MSG(corrupt >= 1, "byte %lld of the largest file flipped, yet every omen_get returned the exact data", off);
    {
        /* get_batch over everything: the whole call is CORRUPT */
        h_ids ids;
        float *out = malloc(n * 64 * sizeof(float));
        h_ids_init(&ids);
        for (i = 0; i < n; i++) h_ids_add_index(&ids, i);
        st = omen_get_batch(s, n, ids.bytes, ids.offsets, out, NULL);
        free(out);
        h_ids_free(&ids);
        CHECK_MSG(st == OMEN_ERR_CORRUPT, "get_batch over a damaged vector: %s, want OMEN_ERR_CORRUPT", omen_status_name(st));
    }
    CHECK_OK(omen_close(s));
}

/* omen_close_discard drops the puts, replacements and deletes since the
 * last checkpoint; the store reopens (by another writer, at once) as of
 * that checkpoint, and grows and closes normally afterwards. */
void test_close_discard_keeps_last_checkpoint(void) {
    char p[4096];
    omen_store *s = NULL;
    uint64_t seq = 0, i;
    h_ids ids;
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_put_range(s, 0, 100, 1, DIM));
    CHECK_OK(omen_checkpoint(s, &seq));
    CHECK_OK(h_put_range(s, 100, 50, 1, DIM)); /* new */
    CHECK_OK(h_put_range(s, 0, 10, 2, DIM));   /* replaced */
    h_ids_init(&ids);
    for (i = 20; i < 30; i++) h_ids_add_index(&ids, i);
    CHECK_OK(omen_delete_batch(s, ids.n, ids.bytes, ids.offsets, NULL));
    CHECK_OK(omen_close_discard(s));

    CHECK_OK(h_open(p, 0, &s));
    CHECK_MSG(seq_of(s) == seq, "checkpoint_seq %llu after discard, want %llu", (unsigned long long)seq_of(s),
              (unsigned long long)seq);
    CHECK_MSG(live_of(s) == 100, "live_vectors %llu after discard, want 100", (unsigned long long)live_of(s));
    for (i = 0; i < 100; i++) CHECK_OK(h_get_index(s, i, 1, DIM));
    CHECK_ERR(OMEN_ERR_NOT_FOUND, h_get_index(s, 100, 1, DIM));

    /* deletes alone */
    CHECK_OK(omen_delete_batch(s, ids.n, ids.bytes, ids.offsets, NULL));
    CHECK(live_of(s) == 90);
    CHECK_OK(omen_close_discard(s));
    CHECK_OK(h_open(p, 0, &s));
    CHECK_MSG(live_of(s) == 100, "live_vectors %llu after discarded deletes, want 100", (unsigned long long)live_of(s));
    h_ids_free(&ids);

    /* the space past the checkpoint is reused; a normal close keeps it all */
    CHECK_OK(h_put_range(s, 100, 20, 3, DIM));
    CHECK_OK(omen_close(s));
    CHECK_OK(h_open(p, 0, &s));
    CHECK(live_of(s) == 120);
    CHECK_OK(h_get_index(s, 119, 3, DIM));
    CHECK_OK(h_get_index(s, 5, 1, DIM));
    CHECK_OK(omen_close(s));
}
