/* Kills at arbitrary moments: a child process creates a store or runs
 * rounds of writes and checkpoints; the parent SIGKILLs it after a varying
 * delay and checks what reopening gives back:
 *   - an interrupted creation leaves either no store or a valid empty one;
 *   - the store comes back at a checkpoint, never older than the last one
 *     whose omen_checkpoint returned, and never a mixture of two. */
#include "harness.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DIM 16
#define PER_ROUND 10
#define MAX_ROUNDS 400

static void sleep_us(long us) {
    struct timespec ts;
    ts.tv_sec = us / 1000000;
    ts.tv_nsec = (us % 1000000) * 1000;
    nanosleep(&ts, NULL);
}

void test_crash_during_create(void) {
    int attempt, attempts = g_valgrind ? 6 : 25;
    int no_store = 0, empty_store = 0;
    for (attempt = 0; attempt < attempts; attempt++) {
        char p[4096];
        pid_t pid;
        int ws;
        omen_store *s = NULL;
        omen_status st;
        h_path(p, sizeof p, "%s/s%d", g_dir, attempt);
        fflush(stdout);
        pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            if (h_create(p, DIM, OMEN_METRIC_L2, 0, &s) != OMEN_OK) _exit(1);
            pause(); /* wait for the kill */
            _exit(0);
        }
        sleep_us((long)attempt * (g_valgrind ? 40000 : 400));
        kill(pid, SIGKILL);
        while (waitpid(pid, &ws, 0) < 0) {
        }
        CHECK_MSG(!WIFEXITED(ws) || WEXITSTATUS(ws) == 0, "child's create failed (attempt %d)", attempt);
        st = h_open(p, 0, &s);
        if (st == OMEN_ERR_NOT_FOUND) {
            no_store++;
        } else {
            omen_stats sb;
            CHECK_MSG(st == OMEN_OK, "after a creation killed at %d: open without CREATE gives %s (%s), want OK or NOT_FOUND",
                      attempt, omen_status_name(st), h_last_error());
            CHECK_OK(h_stats(s, &sb));
            CHECK_MSG(sb.live_vectors == 0 && sb.checkpoint_seq == 1 && sb.dim == DIM,
                      "store from an interrupted creation: live %llu seq %llu dim %u", (unsigned long long)sb.live_vectors,
                      (unsigned long long)sb.checkpoint_seq, sb.dim);
            CHECK_OK(omen_close(s));
            empty_store++;
        }
        /* with CREATE it is always a usable store */
        CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
        CHECK_OK(h_put_range(s, 0, 3, 1, DIM));
        CHECK_OK(omen_close(s));
    }
    h_note("%d kills left no store, %d a valid empty store", no_store, empty_store);
}

/* The state after round r (0-based) of the writer below. */
typedef struct crash_model {
    int alive[MAX_ROUNDS * PER_ROUND];
    uint64_t version[MAX_ROUNDS * PER_ROUND];
} crash_model;

static void model_round(crash_model *m, int r, int one_batch) {
    int i;
    for (i = 0; i < PER_ROUND; i++) {
        m->alive[r * PER_ROUND + i] = 1;
        m->version[r * PER_ROUND + i] = 1;
    }
    if (r > 0) {
        m->version[r * PER_ROUND - 5] = (uint64_t)r + 1;  /* replaced */
        if (!one_batch) m->alive[r * PER_ROUND - 7] = 0; /* deleted */
    }
}

/* One round of writes, as the model describes it. With one_batch (for
 * SYNC_WRITES, where every batch is its own checkpoint) the round is a single
 * put batch: 10 new vectors and one replacement. Otherwise: the same as two
 * put batches, plus a delete. */
static omen_status writer_round(omen_store *s, int r, int one_batch) {
    omen_status st;
    if (one_batch) {
        h_ids ids;
        float v[(PER_ROUND + 1) * DIM];
        int i;
        h_ids_init(&ids);
        for (i = 0; i < PER_ROUND; i++) {
            h_ids_add_index(&ids, (uint64_t)r * PER_ROUND + (uint64_t)i);
            h_vec((uint64_t)r * PER_ROUND + (uint64_t)i, 1, DIM, v + i * DIM);
        }
        if (r > 0) {
            h_ids_add_index(&ids, (uint64_t)r * PER_ROUND - 5);
            h_vec((uint64_t)r * PER_ROUND - 5, (uint64_t)r + 1, DIM, v + PER_ROUND * DIM);
        }
        st = omen_put_batch(s, ids.n, ids.bytes, ids.offsets, v);
        h_ids_free(&ids);
        return st;
    }
    st = h_put_range(s, (uint64_t)r * PER_ROUND, PER_ROUND, 1, DIM);
    if (st == OMEN_OK && r > 0) st = h_put_range(s, (uint64_t)r * PER_ROUND - 5, 1, (uint64_t)r + 1, DIM);
    if (st == OMEN_OK && r > 0) {
        h_ids ids;
        uint64_t d;
        h_ids_init(&ids);
        h_ids_add_index(&ids, (uint64_t)r * PER_ROUND - 7);
        st = omen_delete_batch(s, 1, ids.bytes, ids.offsets, &d);
        h_ids_free(&ids);
    }
    return st;
}

/* Child: rounds of writes, each followed by a checkpoint (or, with
 * SYNC_WRITES, each batch durable by itself); reports every completed round
 * on `fd` after its commit returned. */
static void crash_writer(const char *p, int fd, int sync_writes) {
    omen_store *s = NULL;
    int r;
    if (h_open(p, sync_writes ? OMEN_OPEN_SYNC_WRITES : 0, &s) != OMEN_OK) _exit(1);
    for (r = 0; r < MAX_ROUNDS; r++) {
        unsigned char b[2];
        if (writer_round(s, r, sync_writes) != OMEN_OK) _exit(2);
        if (!sync_writes && omen_checkpoint(s, NULL) != OMEN_OK) _exit(3);
        b[0] = (unsigned char)(r & 0xFF);
        b[1] = (unsigned char)(r >> 8);
        if (write(fd, b, 2) != 2) _exit(4);
    }
    pause();
    _exit(0);
}

static void crash_loop(int sync_writes, int use_recover) {
    int attempt, attempts = g_valgrind ? 3 : 12;
    crash_model *m = malloc(sizeof *m);
    int same = 0, later = 0, rounds = 0;
    for (attempt = 0; attempt < attempts; attempt++) {
        char p[4096];
        int fds[2], ws, last = -1, found_round = -1, r;
        unsigned char b[2];
        pid_t pid;
        omen_store *s = NULL;
        omen_stats st;
        omen_recovery rep;
        uint64_t i;
        h_path(p, sizeof p, "%s/s%d", g_dir, attempt);
        CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
        CHECK_OK(omen_close(s));
        CHECK(pipe(fds) == 0);
        fflush(stdout);
        pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            crash_writer(p, fds[1], sync_writes);
        }
        close(fds[1]);
        /* let it run a few rounds, then kill at a varying moment */
        while (last < 2 + attempt * 3 && read(fds[0], b, 2) == 2) last = b[0] | (b[1] << 8);
        sleep_us((long)(attempt * 37 % 11) * (g_valgrind ? 20000 : 300));
        kill(pid, SIGKILL);
        while (waitpid(pid, &ws, 0) < 0) {
        }
        while (read(fds[0], b, 2) == 2) last = b[0] | (b[1] << 8); /* rounds reported before the kill */
        close(fds[0]);
        CHECK_MSG(WIFSIGNALED(ws), "crash writer ended by itself (status %d) after round %d", WEXITSTATUS(ws), last);

        memset(&rep, 0, sizeof rep);
        rep.struct_size = sizeof rep;
        if (use_recover)
            CHECK_OK(omen_recover(p, NULL, &s, &rep));
        else
            CHECK_OK(h_open(p, 0, &s));
        /* which round did we get back? */
        for (r = MAX_ROUNDS - 1; r >= 0; r--) {
            omen_status g = h_get_index(s, (uint64_t)r * PER_ROUND + 1, 1, DIM);
            if (g == OMEN_OK) {
                found_round = r;
                break;
            }
            CHECK_MSG(g == OMEN_ERR_NOT_FOUND, "get after crash: %s", omen_status_name(g));
        }
        CHECK_MSG(found_round >= last, "attempt %d: round %d's commit had returned, but the store came back at round %d",
                  attempt, last, found_round);
        CHECK_MSG(found_round <= last + 1, "attempt %d: store came back at round %d, the writer reported only %d",
                  attempt, found_round, last);
        same += found_round == last;
        later += found_round == last + 1;
        rounds += found_round + 1;
        /* exactly the state after found_round, nothing of the next one */
        memset(m, 0, sizeof *m);
        for (r = 0; r <= found_round; r++) model_round(m, r, sync_writes);
        for (i = 0; i < (uint64_t)(found_round + 2) * PER_ROUND && i < MAX_ROUNDS * PER_ROUND; i++) {
            omen_status g = h_get_index(s, i, m->alive[i] ? m->version[i] : 1, DIM);
            CHECK_MSG(g == (m->alive[i] ? OMEN_OK : OMEN_ERR_NOT_FOUND),
                      "attempt %d, recovered at round %d: v%07llu gives %s, want %s (a mixture of two states?)", attempt,
                      found_round, (unsigned long long)i, omen_status_name(g),
                      m->alive[i] ? "its version of that round" : "NOT_FOUND");
        }
        CHECK_OK(h_stats(s, &st));
        {
            uint64_t want = 0;
            for (i = 0; i < MAX_ROUNDS * PER_ROUND; i++) want += (uint64_t)m->alive[i];
            CHECK_MSG(st.live_vectors == want, "recovered at round %d: live %llu, want %llu", found_round,
                      (unsigned long long)st.live_vectors, (unsigned long long)want);
            if (use_recover)
                CHECK_MSG(rep.live_vectors == want && rep.checkpoint_seq == st.checkpoint_seq,
                          "recovery report: live %llu seq %llu; stats: live %llu seq %llu",
                          (unsigned long long)rep.live_vectors, (unsigned long long)rep.checkpoint_seq,
                          (unsigned long long)want, (unsigned long long)st.checkpoint_seq);
        }
        /* and the store goes on working */
        CHECK_OK(writer_round(s, found_round + 1, sync_writes));
        CHECK_OK(omen_close(s));
    }
    h_note("%d kills: %d came back at the last reported commit, %d at the one in flight; %d rounds in all", attempts,
           same, later, rounds);
    free(m);
}

void test_crash_during_checkpoints(void) {
    crash_loop(0, 0);
}

void test_crash_during_checkpoints_recover(void) {
    crash_loop(0, 1);
}

void test_crash_during_sync_writes(void) {
    crash_loop(1, 0);
}

/* Reads the compacting child's next marker byte (see below); 0 at EOF. */
static char next_marker(int fd) {
    char c;
    return read(fd, &c, 1) == 1 ? c : 0;
}

/* Kill during compaction: the logical content never changes (the writer only
 * re-puts identical vectors and compacts), so whatever checkpoint comes back
 * must hold exactly the same vectors, and the interrupted compaction must
 * leave no garbage once the store has been opened and closed again.
 *
 * The child writes 'c' to a pipe just before each omen_compact and 'd' just
 * after it returns. The parent times the first compaction, then kills at a
 * fraction of that time after the next 'c'. A kill landed inside a compaction
 * when no 'd' follows that 'c' in the pipe; the test fails unless at least one
 * did, so it cannot pass without exercising what it is named for. */
void test_crash_during_compaction(void) {
    /* Under valgrind 2 attempts once missed every compaction (CI rehearsal
     * of 2026-12-07 on a loaded host): 6 are cheap (a few tenths of a second
     * each) and make that much rarer. */
    int attempt, attempts = g_valgrind ? 6 : 8;
    const size_t n = g_valgrind ? 2000 : 20000;
    int mid = 0;
    for (attempt = 0; attempt < attempts; attempt++) {
        char p[4096];
        omen_store *s = NULL;
        pid_t pid;
        int ws, fds[2];
        char c;
        double t0, took;
        omen_stats st;
        size_t i;
        long long files;
        h_path(p, sizeof p, "%s/s%d", g_dir, attempt);
        CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
        CHECK_OK(h_put_range(s, 0, n, 1, DIM));
        CHECK_OK(h_put_range(s, 0, n / 2, 1, DIM)); /* dead slots, same data */
        CHECK_OK(omen_close(s));
        CHECK(pipe(fds) == 0);
        fflush(stdout);
        pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            if (h_open(p, 0, &s) != OMEN_OK) _exit(1);
            for (;;) {
                if (write(fds[1], "c", 1) != 1) _exit(2);
                if (omen_compact(s) != OMEN_OK) _exit(3);
                if (write(fds[1], "d", 1) != 1) _exit(2);
                if (h_put_range(s, 0, n / 4, 1, DIM) != OMEN_OK) _exit(4);
                if (omen_checkpoint(s, NULL) != OMEN_OK) _exit(5);
            }
        }
        close(fds[1]);
        /* time one whole compaction, then aim the kill into the next one */
        c = next_marker(fds[0]);
        t0 = h_now();
        if (c == 'c') c = next_marker(fds[0]);
        took = h_now() - t0;
        if (c == 'd') c = next_marker(fds[0]);
        if (c != 'c') {
            kill(pid, SIGKILL);
            while (waitpid(pid, &ws, 0) < 0) {
            }
            CHECK_MSG(0, "compacting child stopped before its second compaction (marker '%c', status %d)", c ? c : '0',
                      WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
        }
        /* spread over the compaction: 1/(attempts+1) .. attempts/(attempts+1) of it */
        sleep_us((long)(took * 1e6 * (attempt + 1) / (attempts + 1)));
        kill(pid, SIGKILL);
        while (waitpid(pid, &ws, 0) < 0) {
        }
        CHECK_MSG(WIFSIGNALED(ws), "compacting child ended by itself with status %d", WEXITSTATUS(ws));
        c = 'c';
        {
            char more;
            while ((more = next_marker(fds[0])) != 0) c = more;
        }
        close(fds[0]);
        mid += c == 'c'; /* the last marker says omen_compact had not returned */
        CHECK_OK(h_open(p, 0, &s));
        CHECK_OK(h_stats(s, &st));
        CHECK_MSG(st.live_vectors == n, "after a kill during compaction: live %llu, want %zu",
                  (unsigned long long)st.live_vectors, n);
        for (i = 0; i < n; i += (g_valgrind ? 7 : 1)) {
            omen_status g = h_get_index(s, i, 1, DIM);
            CHECK_MSG(g == OMEN_OK, "after a kill during compaction (attempt %d): v%07zu gives %s", attempt, i,
                      omen_status_name(g));
        }
        CHECK_OK(omen_compact(s));
        CHECK_OK(h_stats(s, &st));
        CHECK_OK(omen_close(s));
        files = h_dir_bytes(p);
        {
            /* the same content written once, for comparison */
            char ref[4096];
            long long ref_bytes;
            h_path(ref, sizeof ref, "%s/ref%d", g_dir, attempt);
            CHECK_OK(h_create(ref, DIM, OMEN_METRIC_L2, 0, &s));
            CHECK_OK(h_put_range(s, 0, n, 1, DIM));
            CHECK_OK(omen_close(s));
            ref_bytes = h_dir_bytes(ref);
            h_rm_rf(ref);
            CHECK_MSG((double)files <= (double)ref_bytes * 1.01 + 65536.0,
                      "after a kill during compaction, reopen, compact and close: %lld bytes on disk; the same vectors "
                      "put once take %lld (leftovers of the interrupted compaction?)",
                      files, ref_bytes);
        }
    }
    h_note("%d of %d kills landed inside omen_compact", mid, attempts);
    CHECK_MSG(mid > 0, "none of %d kills landed inside omen_compact: the test did not test a kill during compaction",
              attempts);
}
