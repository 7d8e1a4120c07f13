/* Read-only opens and the single-writer lock. */
#include "harness.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define DIM 8

static omen_status make_store(const char *p, int pq) {
    omen_store *s = NULL;
    omen_options o = h_opts(OMEN_OPEN_CREATE, DIM, OMEN_METRIC_L2);
    omen_status st;
    if (pq) o.pq_m = 4;
    st = omen_open(p, &o, &s);
    if (st) return st;
    st = h_put_range(s, 0, 300, 1, DIM);
    if (st) {
        omen_close(s);
        return st;
    }
    return omen_close(s);
}

void test_read_only_rejects_writes(void) {
    char p[4096];
    omen_store *s = NULL;
    h_ids ids;
    float v[DIM];
    uint64_t d = 99, seq = 0;
    omen_stats st;
    omen_hit hits[3];
    size_t count = 0;
    uint64_t fp;

    h_sub(p, sizeof p, "store");
    CHECK_OK(make_store(p, 1));
    fp = h_dir_fingerprint(p);
    CHECK_OK(h_open(p, OMEN_OPEN_READ_ONLY, &s));
    h_ids_init(&ids);
    h_ids_add_index(&ids, 1);
    h_vec(1, 9, DIM, v);
    EXPECT_STATUS(OMEN_ERR_READ_ONLY, omen_put_batch(s, 1, ids.bytes, ids.offsets, v));
    EXPECT_STATUS(OMEN_ERR_READ_ONLY, omen_delete_batch(s, 1, ids.bytes, ids.offsets, &d));
    EXPECT_STATUS(OMEN_ERR_READ_ONLY, omen_checkpoint(s, &seq));
    EXPECT_STATUS(OMEN_ERR_READ_ONLY, omen_compact(s));
    EXPECT_STATUS(OMEN_ERR_READ_ONLY, omen_train_pq(s, NULL, NULL));
    h_ids_free(&ids);
    /* reads work and nothing changed */
    CHECK_OK(h_get_index(s, 1, 1, DIM));
    CHECK_OK(h_stats(s, &st));
    CHECK_MSG(st.live_vectors == 300 && st.pq_trained == 0, "read-only store: live %llu, pq_trained %u",
              (unsigned long long)st.live_vectors, st.pq_trained);
    CHECK_OK(omen_search(s, v, 3, NULL, hits, &count));
    CHECK(count == 3);
    CHECK_OK(omen_close(s));
    CHECK_MSG(h_dir_fingerprint(p) == fp, "a read-only open + close changed the store's files");
}

void test_two_read_only_opens_share(void) {
    char p[4096];
    omen_store *a = NULL, *b = NULL;
    h_sub(p, sizeof p, "store");
    CHECK_OK(make_store(p, 0));
    CHECK_OK(h_open(p, OMEN_OPEN_READ_ONLY, &a));
    CHECK_OK(h_open(p, OMEN_OPEN_READ_ONLY, &b));
    CHECK_OK(h_get_index(a, 7, 1, DIM));
    CHECK_OK(h_get_index(b, 8, 1, DIM));
    CHECK_OK(omen_close(a));
    CHECK_OK(h_get_index(b, 9, 1, DIM));
    CHECK_OK(omen_close(b));
}

void test_second_writer_same_process(void) {
    char p[4096];
    omen_store *a = NULL, *b = NULL;
    double t0;
    omen_status st;
    h_sub(p, sizeof p, "store");
    CHECK_OK(make_store(p, 0));
    CHECK_OK(h_open(p, 0, &a));
    t0 = h_now();
    st = h_open(p, 0, &b);
    if (st == OMEN_OK) omen_close(b);
    CHECK_MSG(st == OMEN_ERR_LOCKED, "second writer in the same process: %s, want OMEN_ERR_LOCKED", omen_status_name(st));
    CHECK_MSG(omen_last_error()[0] != '\0', "LOCKED without a message");
    CHECK_MSG(h_now() - t0 < (g_valgrind ? 10.0 : 2.0), "OMEN_ERR_LOCKED took %.1f s (must be at once)", h_now() - t0);
    /* also with CREATE, SYNC_WRITES and through omen_recover */
    st = h_open(p, OMEN_OPEN_CREATE | OMEN_OPEN_SYNC_WRITES, &b);
    if (st == OMEN_OK) omen_close(b);
    CHECK_MSG(st == OMEN_ERR_LOCKED, "second writer (CREATE|SYNC_WRITES): %s, want OMEN_ERR_LOCKED", omen_status_name(st));
    st = omen_recover(p, NULL, &b, NULL);
    if (st == OMEN_OK) omen_close(b);
    CHECK_MSG(st == OMEN_ERR_LOCKED, "omen_recover while a writer holds the store: %s, want OMEN_ERR_LOCKED",
              omen_status_name(st));
    /* the first handle still works */
    CHECK_OK(h_put_range(a, 300, 1, 1, DIM));
    CHECK_OK(omen_close(a));
    /* the lock is released on close */
    CHECK_OK(h_open(p, 0, &b));
    CHECK_OK(h_get_index(b, 300, 1, DIM));
    CHECK_OK(omen_close(b));
}

/* Child: waits for the parent's go, tries to open for writing; exit codes:
 * 0 LOCKED at once, 1 other status, 2 too slow; second round must open. */
static int child_writer(const char *p, int go_fd, int done_fd) {
    char c;
    omen_store *s = NULL;
    omen_status st;
    double t0;
    if (read(go_fd, &c, 1) != 1) return 3;
    t0 = h_now();
    st = h_open(p, 0, &s);
    if (st == OMEN_OK) {
        omen_close(s);
        printf("    child: second writer got OMEN_OK\n");
        return 1;
    }
    if (st != OMEN_ERR_LOCKED) {
        printf("    child: second writer got %s (%s)\n", omen_status_name(st), h_last_error());
        return 1;
    }
    if (h_now() - t0 > (g_valgrind ? 10.0 : 2.0)) return 2;
    if (write(done_fd, "x", 1) != 1) return 3;
    /* after the parent closed: the store is free */
    if (read(go_fd, &c, 1) != 1) return 3;
    st = h_open(p, 0, &s);
    if (st != OMEN_OK) {
        printf("    child: open after the parent closed: %s (%s)\n", omen_status_name(st), h_last_error());
        return 4;
    }
    st = h_get_index(s, 5, 1, DIM);
    omen_close(s);
    return st == OMEN_OK ? 0 : 5;
}

void test_second_writer_other_process(void) {
    char p[4096];
    omen_store *a = NULL;
    int go[2], done[2], ws = 0;
    pid_t pid;
    char c;
    h_sub(p, sizeof p, "store");
    CHECK_OK(make_store(p, 0));
    CHECK(pipe(go) == 0 && pipe(done) == 0);
    fflush(stdout);
    /* Fork before this process touches the store, so the child starts clean. */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(60);
        close(go[1]);
        close(done[0]);
        _exit(child_writer(p, go[0], done[1]));
    }
    close(go[0]);
    close(done[1]);
    CHECK_OK(h_open(p, 0, &a));
    CHECK(write(go[1], "g", 1) == 1);
    if (read(done[0], &c, 1) != 1) {
        /* child ended early: collect its status below */
        omen_close(a);
        a = NULL;
    } else {
        /* the first writer is unaffected by the refused second one */
        CHECK_OK(h_put_range(a, 300, 1, 1, DIM));
        CHECK_OK(omen_close(a));
        a = NULL;
        CHECK(write(go[1], "g", 1) == 1);
    }
    close(go[1]);
    close(done[0]);
    while (waitpid(pid, &ws, 0) < 0) {
    }
    CHECK_MSG(WIFEXITED(ws), "child process died from signal %d", WIFSIGNALED(ws) ? WTERMSIG(ws) : -1);
    switch (WEXITSTATUS(ws)) {
    case 0: break;
    case 1: CHECK_MSG(0, "second writer in another process did not get OMEN_ERR_LOCKED"); break;
    case 2: CHECK_MSG(0, "OMEN_ERR_LOCKED in another process was not immediate"); break;
    case 4: CHECK_MSG(0, "the lock was not released by omen_close (child could not open afterwards)"); break;
    default: CHECK_MSG(0, "child writer failed with status %d", WEXITSTATUS(ws));
    }
}

void test_lock_released_when_writer_dies(void) {
    char p[4096];
    omen_store *s = NULL;
    pid_t pid;
    int ws = 0;
    h_sub(p, sizeof p, "store");
    CHECK_OK(make_store(p, 0));
    fflush(stdout);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (h_open(p, 0, &s) != OMEN_OK) _exit(1);
        kill(getpid(), SIGKILL);
        _exit(2);
    }
    while (waitpid(pid, &ws, 0) < 0) {
    }
    CHECK_MSG(WIFSIGNALED(ws), "child could not open the store");
    CHECK_OK(h_open(p, 0, &s));
    CHECK_OK(h_get_index(s, 5, 1, DIM));
    CHECK_OK(omen_close(s));
}

void test_no_fd_leak_on_open_close(void) {
    char p[4096];
    omen_store *s = NULL;
    int i, before, after;
    h_sub(p, sizeof p, "store");
    CHECK_OK(make_store(p, 0));
    /* warm up (lazy library state) */
    CHECK_OK(h_open(p, 0, &s));
    CHECK_OK(omen_close(s));
    before = h_count_fds();
    for (i = 0; i < 30; i++) {
        CHECK_OK(h_open(p, i % 2 ? OMEN_OPEN_READ_ONLY : 0, &s));
        CHECK_OK(omen_close(s));
        CHECK_ERR(OMEN_ERR_NOT_FOUND, h_open(g_dir, 0, &s));
    }
    after = h_count_fds();
    CHECK_MSG(before == after, "open file descriptors went from %d to %d over 30 open/close cycles", before, after);
}

/* Read-only opens share the store across processes too. */
void test_read_only_shared_across_processes(void) {
    char p[4096];
    omen_store *a = NULL;
    pid_t pid;
    int ws = 0;
    h_sub(p, sizeof p, "store");
    CHECK_OK(make_store(p, 0));
    CHECK_OK(h_open(p, OMEN_OPEN_READ_ONLY, &a));
    fflush(stdout);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        omen_store *b = NULL;
        omen_status st;
        alarm(60);
        /* the parent's handle was inherited but is not used here */
        st = h_open(p, OMEN_OPEN_READ_ONLY, &b);
        if (st != OMEN_OK) {
            printf("    child: read-only open while another process has it read-only: %s (%s)\n",
                   omen_status_name(st), h_last_error());
            _exit(1);
        }
        st = h_get_index(b, 17, 1, DIM);
        omen_close(b);
        _exit(st == OMEN_OK ? 0 : 2);
    }
    while (waitpid(pid, &ws, 0) < 0) {
    }
    CHECK_OK(h_get_index(a, 18, 1, DIM));
    CHECK_OK(omen_close(a));
    CHECK_MSG(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "second read-only process failed (status 0x%x)", ws);
}

/* The same, but the child is forked while this process holds the store (it
 * inherits the handle and the library's state, and must not use the handle). */
void test_second_writer_forked_after_open(void) {
    char p[4096];
    omen_store *a = NULL;
    pid_t pid;
    int ws = 0;
    h_sub(p, sizeof p, "store");
    CHECK_OK(make_store(p, 0));
    CHECK_OK(h_open(p, 0, &a));
    fflush(stdout);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        omen_store *b = NULL;
        omen_status st;
        double t0 = h_now();
        alarm(60);
        st = h_open(p, 0, &b);
        if (st == OMEN_OK) omen_close(b);
        if (st != OMEN_ERR_LOCKED) {
            printf("    child: writer open while the parent process holds the store: %s (%s)\n", omen_status_name(st),
                   h_last_error());
            _exit(1);
        }
        _exit(h_now() - t0 < (g_valgrind ? 10.0 : 2.0) ? 0 : 2);
    }
    while (waitpid(pid, &ws, 0) < 0) {
    }
    CHECK_OK(h_put_range(a, 300, 1, 1, DIM));
    CHECK_OK(omen_close(a));
    CHECK_MSG(WIFEXITED(ws), "child died from signal %d", WIFSIGNALED(ws) ? WTERMSIG(ws) : -1);
    CHECK_MSG(WEXITSTATUS(ws) != 1, "a child forked after the parent opened the store did not get OMEN_ERR_LOCKED");
    CHECK_MSG(WEXITSTATUS(ws) != 2, "OMEN_ERR_LOCKED was not immediate");
    CHECK(WEXITSTATUS(ws) == 0);
    /* and once closed here, a new writer gets in */
    CHECK_OK(h_open(p, 0, &a));
    CHECK_OK(omen_close(a));
}

/* omen_close_discard of a read-only handle only frees it, while a writer
 * keeps working; the writer's own discard frees the lock for the next. */
void test_close_discard_read_only_and_lock(void) {
    char p[4096];
    omen_store *w = NULL, *ro = NULL, *w2 = NULL;
    omen_stats st;
    uint8_t found = 0;
    h_sub(p, sizeof p, "store");
    CHECK_OK(make_store(p, 0));
    CHECK_OK(h_open(p, 0, &w));
    CHECK_OK(h_open(p, OMEN_OPEN_READ_ONLY, &ro));
    CHECK_OK(omen_contains(ro, (const uint8_t *)"v0000001", 8, &found));
    CHECK(found == 1);
    CHECK_OK(omen_close_discard(ro));
    CHECK_OK(h_put_range(w, 1000, 5, 1, DIM));
    CHECK_ERR(OMEN_ERR_LOCKED, h_open(p, 0, &w2));
    CHECK_OK(omen_close_discard(w));
    CHECK_OK(h_open(p, 0, &w2));
    CHECK_OK(h_stats(w2, &st));
    CHECK_MSG(st.live_vectors == 300, "live_vectors %llu, want 300", (unsigned long long)st.live_vectors);
    CHECK_OK(omen_close(w2));
}
