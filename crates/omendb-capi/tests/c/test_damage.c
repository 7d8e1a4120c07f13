/* "Any call may return OMEN_ERR_CORRUPT or OMEN_ERR_IO when the files under
 * it are damaged; none may crash." Damaged copies of a store, and writes
 * refused by the OS (RLIMIT_FSIZE), must give statuses, never a crash, and
 * never wrong data. */
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DIM 16
#define N 600

static int copy_file(const char *from, const char *to) {
    char buf[65536];
    ssize_t r;
    int in = open(from, O_RDONLY), out;
    if (in < 0) return -1;
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) {
        close(in);
        return -1;
    }
    while ((r = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)r) != r) r = -1;
    close(in);
    close(out);
    return r < 0 ? -1 : 0;
}

/* Copies the regular files of directory `from` (flat) into new directory `to`;
 * returns the number of files, names into names[] (up to 32). */
static int copy_store(const char *from, const char *to, char names[32][256]) {
    DIR *d = opendir(from);
    struct dirent *e;
    int n = 0;
    if (!d || mkdir(to, 0700) != 0) {
        if (d) closedir(d);
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        char a[4096], b[4096];
        struct stat sb;
        if (e->d_name[0] == '.') continue;
        h_path(a, sizeof a, "%s/%s", from, e->d_name);
        h_path(b, sizeof b, "%s/%s", to, e->d_name);
        if (stat(a, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (copy_file(a, b) != 0) {
            closedir(d);
            return -1;
        }
        if (n < 32) snprintf(names[n++], 256, "%s", e->d_name);
    }
    closedir(d);
    return n;
}

/* What the current iteration damaged, printed if the library crashes on it. */
static char g_damage[600];

static void on_crash(int sig) {
    static const char head[] = "    CRASHED on damage: ";
    if (write(1, head, sizeof head - 1) < 0 || write(1, g_damage, strlen(g_damage)) < 0 || write(1, "\n", 1) < 0) {
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void catch_crashes(void) {
    signal(SIGSEGV, on_crash);
    signal(SIGBUS, on_crash);
    signal(SIGABRT, on_crash);
    signal(SIGILL, on_crash);
    signal(SIGFPE, on_crash);
}

static int valid_status(omen_status st) {
    return (int)st >= 0 && (int)st <= 11;
}

/* Runs every call against a damaged store. Checks: only known statuses,
 * and every vector that comes back is exactly the one put. */
static void exercise(const char *p, const char *what) {
    omen_store *s = NULL;
    omen_status st;
    omen_recovery rep;
    int mode;
    for (mode = 0; mode < 3; mode++) {
        memset(&rep, 0, sizeof rep);
        rep.struct_size = sizeof rep;
        if (mode == 0)
            st = h_open(p, OMEN_OPEN_READ_ONLY, &s);
        else if (mode == 1)
            st = omen_recover(p, NULL, &s, &rep);
        else
            st = h_open(p, 0, &s);
        CHECK_MSG(valid_status(st), "%s: open mode %d returned %d", what, mode, (int)st);
        if (st != OMEN_OK) continue;
        {
            size_t i;
            omen_stats sb;
            float q[DIM];
            omen_hit hits[8];
            size_t count;
            for (i = 0; i < N; i += 3) {
                st = h_get_index(s, i, 1, DIM);
                CHECK_MSG(st == OMEN_OK || st == OMEN_ERR_NOT_FOUND || st == OMEN_ERR_CORRUPT || st == OMEN_ERR_IO,
                          "%s: get v%07zu gives %s (a wrong vector if INTERNAL)", what, i, omen_status_name(st));
            }
            st = h_stats(s, &sb);
            CHECK_MSG(valid_status(st), "%s: stats %d", what, (int)st);
            h_vec(7, 1, DIM, q);
            st = omen_search(s, q, 8, NULL, hits, &count);
            CHECK_MSG(valid_status(st), "%s: search %d", what, (int)st);
            if (st == OMEN_OK) {
                for (i = 0; i < count; i++) {
                    const uint8_t *id;
                    size_t len;
                    st = omen_key_id(s, hits[i].key, &id, &len);
                    CHECK_MSG(valid_status(st), "%s: key_id %d", what, (int)st);
                }
            }
            if (mode == 2) {
                st = h_put_range(s, N, 5, 1, DIM);
                CHECK_MSG(valid_status(st), "%s: put %d", what, (int)st);
                st = omen_checkpoint(s, NULL);
                CHECK_MSG(valid_status(st), "%s: checkpoint %d", what, (int)st);
                st = omen_compact(s);
                CHECK_MSG(valid_status(st), "%s: compact %d", what, (int)st);
            }
        }
        st = omen_close(s);
        CHECK_MSG(valid_status(st), "%s: close %d", what, (int)st);
    }
}

void test_damaged_files_never_crash(void) {
    char pristine[4096], names[32][256];
    omen_store *s = NULL;
    int nfiles, iter, iters = g_valgrind ? 12 : 120;
    h_rng r;
    h_ids ids;
    uint64_t d;
    size_t i;

    h_sub(pristine, sizeof pristine, "pristine");
    CHECK_OK(h_create(pristine, DIM, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_put_range(s, 0, N, 1, DIM));
    CHECK_OK(omen_checkpoint(s, NULL));
    h_ids_init(&ids);
    for (i = 0; i < N; i += 11) h_ids_add_index(&ids, i);
    CHECK_OK(omen_delete_batch(s, ids.n, ids.bytes, ids.offsets, &d));
    h_ids_free(&ids);
    CHECK_OK(h_put_range(s, 0, 50, 1, DIM)); /* same versions: dead slots, same data */
    CHECK_OK(omen_close(s));

    catch_crashes();
    h_rng_seed(&r, 4242);
    for (iter = 0; iter < iters; iter++) {
        char p[4096], file[4096], what[512];
        struct stat sb;
        int kind = (int)(h_rng_next(&r) % 5), victim;
        h_path(p, sizeof p, "%s/d%d", g_dir, iter);
        nfiles = copy_store(pristine, p, names);
        CHECK_MSG(nfiles > 0, "cannot copy the store");
        victim = (int)(h_rng_next(&r) % (uint64_t)nfiles);
        h_path(file, sizeof file, "%s/%s", p, names[victim]);
        CHECK(stat(file, &sb) == 0);
        if (kind <= 1 && sb.st_size > 0) { /* flip one byte */
            long long off = (long long)(h_rng_next(&r) % (uint64_t)sb.st_size);
            CHECK(h_flip_byte(file, off) == 0);
            snprintf(what, sizeof what, "byte %lld of %s flipped", off, names[victim]);
        } else if (kind == 2) { /* truncate */
            long long len = sb.st_size ? (long long)(h_rng_next(&r) % (uint64_t)sb.st_size) : 0;
            CHECK(truncate(file, (off_t)len) == 0);
            snprintf(what, sizeof what, "%s truncated to %lld of %lld bytes", names[victim], len, (long long)sb.st_size);
        } else if (kind == 3) { /* zero a 4 KiB page */
            char zero[4096];
            int fd = open(file, O_WRONLY);
            long long page = sb.st_size > 0 ? (long long)(h_rng_next(&r) % (uint64_t)((sb.st_size + 4095) / 4096)) : 0;
            memset(zero, 0, sizeof zero);
            CHECK(fd >= 0);
            CHECK(pwrite(fd, zero, sizeof zero, (off_t)(page * 4096)) == (ssize_t)sizeof zero);
            close(fd);
            snprintf(what, sizeof what, "page %lld of %s zeroed", page, names[victim]);
        } else { /* remove */
            CHECK(unlink(file) == 0);
            snprintf(what, sizeof what, "%s removed", names[victim]);
        }
        snprintf(g_damage, sizeof g_damage, "iteration %d: %s", iter, what);
        exercise(p, what);
        if (g_failures) return;
        h_rm_rf(p);
    }
}

/* The OS refuses to let the files grow (RLIMIT_FSIZE, like a full disk):
 * put/checkpoint fail with OMEN_ERR_IO, nothing half-applied, and the store
 * reopens at a checkpoint. Runs in a child so the limit stays there. */
void test_io_error_when_files_cannot_grow(void) {
    char p[4096];
    omen_store *s = NULL;
    pid_t pid;
    int ws;
    long long base;
    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_put_range(s, 0, 100, 1, DIM));
    CHECK_OK(omen_close(s));
    base = h_dir_bytes(p);
    fflush(stdout);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct rlimit rl;
        uint64_t round;
        omen_status st = OMEN_OK;
        signal(SIGXFSZ, SIG_IGN);
        if (h_open(p, 0, &s) != OMEN_OK) _exit(10);
        rl.rlim_cur = rl.rlim_max = (rlim_t)(base + (1 << 20));
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(11);
        for (round = 1; round < 200 && st == OMEN_OK; round++) {
            st = h_put_range(s, 100 + round * 1000, 1000, 1, DIM);
            if (st == OMEN_OK) st = omen_checkpoint(s, NULL);
        }
        if (st != OMEN_ERR_IO) {
            printf("    child: files grew past RLIMIT_FSIZE, or the error was %s (%s)\n", omen_status_name(st),
                   h_last_error());
            _exit(12);
        }
        if (omen_last_error()[0] == '\0') _exit(13);
        printf("    child: after %llu rounds: %s\n", (unsigned long long)round - 1, h_last_error());
        /* the failed round is not half-visible: either all of it or none */
        {
            uint64_t first = 100 + (round - 1) * 1000;
            omen_status a = h_get_index(s, first, 1, DIM), b = h_get_index(s, first + 999, 1, DIM);
            if (a != b) {
                printf("    child: first vector of the failed batch %s, last %s\n", omen_status_name(a),
                       omen_status_name(b));
                _exit(14);
            }
        }
        /* the rest still reads */
        if (h_get_index(s, 5, 1, DIM) != OMEN_OK) _exit(15);
        st = omen_close(s);
        printf("    child: omen_close with the limit in place: %s\n", omen_status_name(st));
        _exit(0);
    }
    while (waitpid(pid, &ws, 0) < 0) {
    }
    CHECK_MSG(WIFEXITED(ws), "the child crashed (signal %d) when the OS refused to grow a file",
              WIFSIGNALED(ws) ? WTERMSIG(ws) : -1);
    CHECK_MSG(WEXITSTATUS(ws) == 0, "child failed with status %d", WEXITSTATUS(ws));
    /* reopen without the limit: a consistent checkpoint */
    {
        omen_stats st;
        size_t i;
        omen_recovery rep;
        memset(&rep, 0, sizeof rep);
        rep.struct_size = sizeof rep;
        CHECK_OK(omen_recover(p, NULL, &s, &rep));
        CHECK_OK(h_stats(s, &st));
        CHECK_MSG(st.live_vectors >= 100 && (st.live_vectors - 100) % 1000 == 0,
                  "after the I/O errors the store holds %llu vectors: not a whole number of batches",
                  (unsigned long long)st.live_vectors);
        for (i = 0; i < 100; i++) CHECK_OK(h_get_index(s, i, 1, DIM));
        CHECK_OK(h_put_range(s, 100000, 10, 1, DIM));
        CHECK_OK(omen_close(s));
    }
}

/* Reads a whole file into a malloc'd buffer. */
static unsigned char *slurp(const char *path, long long *len) {
    struct stat sb;
    unsigned char *buf;
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        if (fd >= 0) close(fd);
        return NULL;
    }
    buf = malloc((size_t)sb.st_size + 1);
    *len = (long long)sb.st_size;
    if (buf && pread(fd, buf, (size_t)sb.st_size, 0) != (ssize_t)sb.st_size) {
        free(buf);
        buf = NULL;
    }
    close(fd);
    return buf;
}

/* "If that checkpoint's data is damaged, the answer is OMEN_ERR_CORRUPT, not
 * a silent fall-back to an older checkpoint." Found black-box: between two
 * closed states that differ by one small committed checkpoint, the commit
 * record is the region of a file whose size did not change but whose bytes
 * did. Damaging it must not make the store open at the older checkpoint. */
void test_damaged_last_commit_is_not_silently_skipped(void) {
    char p[4096], copy_dir[4096], names[32][256], names2[32][256];
    omen_store *s = NULL;
    int nfiles, i, found = 0;
    omen_status st;
    uint64_t seq_before = 0, seq_after = 0;
    omen_stats sb;

    h_sub(p, sizeof p, "store");
    CHECK_OK(h_create(p, DIM, OMEN_METRIC_L2, 0, &s));
    CHECK_OK(h_put_range(s, 0, 100, 1, DIM));
    CHECK_OK(omen_checkpoint(s, &seq_before));
    CHECK_OK(omen_close(s));
    h_sub(copy_dir, sizeof copy_dir, "before");
    nfiles = copy_store(p, copy_dir, names);
    CHECK(nfiles > 0);
    CHECK_OK(h_open(p, 0, &s));
    CHECK_OK(h_put_range(s, 100, 1, 1, DIM));
    CHECK_OK(omen_checkpoint(s, &seq_after));
    CHECK(seq_after > seq_before);
    CHECK_OK(omen_close(s));
    (void)names2;

    for (i = 0; i < nfiles && !found; i++) {
        char a[4096], b[4096];
        long long la = 0, lb = 0, first = -1, last = -1, k;
        unsigned char *x, *y;
        h_path(a, sizeof a, "%s/%s", copy_dir, names[i]);
        h_path(b, sizeof b, "%s/%s", p, names[i]);
        x = slurp(a, &la);
        y = slurp(b, &lb);
        if (x && y && la == lb && la > 0) {
            for (k = 0; k < la; k++)
                if (x[k] != y[k]) {
                    if (first < 0) first = k;
                    last = k;
                }
        }
        free(x);
        free(y);
        if (first >= 0) {
            /* The commit record is mirrored: damage to one copy (the middle of
             * the changed region), then to both (its first and last bytes).
             * Either way the store opens at the newest checkpoint with every
             * vector, or says OMEN_ERR_CORRUPT; never an older checkpoint. */
            long long offs[3] = {first + (last - first) / 2, first, last};
            int round;
            found = 1;
            for (round = 0; round < 2; round++) {
                char what[512];
                if (round == 0) {
                    CHECK(h_flip_byte(b, offs[0]) == 0);
                } else {
                    CHECK(h_flip_byte(b, offs[0]) == 0); /* undo */
                    CHECK(h_flip_byte(b, offs[1]) == 0);
                    CHECK(h_flip_byte(b, offs[2]) == 0);
                }
                snprintf(what, sizeof what, "%s of %.200s (commit record of checkpoint %llu, bytes %lld..%lld changed)",
                         round == 0 ? "one copy" : "both copies", names[i], (unsigned long long)seq_after, first, last);
                h_note("damaged %s", what);
                st = h_open(p, OMEN_OPEN_READ_ONLY, &s);
                if (st == OMEN_OK) {
                    CHECK_OK(h_stats(s, &sb));
                    EXPECT_MSG(sb.checkpoint_seq == seq_after && sb.live_vectors == 101,
                               "damaged %s: omen_open succeeded at checkpoint %llu with %llu vectors (the last "
                               "checkpoint was %llu with 101): a silent fall-back to an older checkpoint",
                               what, (unsigned long long)sb.checkpoint_seq, (unsigned long long)sb.live_vectors,
                               (unsigned long long)seq_after);
                    EXPECT_STATUS(OMEN_OK, h_get_index(s, 100, 1, DIM));
                    omen_close(s);
                } else {
                    EXPECT_MSG(st == OMEN_ERR_CORRUPT, "damaged %s: omen_open gives %s, want OK or OMEN_ERR_CORRUPT",
                               what, omen_status_name(st));
                }
                if (round == 1) {
                    EXPECT_MSG(st == OMEN_ERR_CORRUPT, "damaged %s: omen_open gives %s, want OMEN_ERR_CORRUPT", what,
                               omen_status_name(st));
                }
            }
        }
    }
    CHECK_MSG(found, "no file changed in place between the two checkpoints (cannot locate the commit record)");
}

/* The first file in directory `dir` whose name starts with `prefix`. */
static int find_file(const char *dir, const char *prefix, char *out, size_t cap) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;
    if (!d) return 0;
    while (!found && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            h_path(out, cap, "%s/%s", dir, e->d_name);
            found = 1;
        }
    }
    closedir(d);
    return found;
}

static void count_progress(void *user, uint64_t done, uint64_t total) {
    (void)done;
    (void)total;
    ++*(uint64_t *)user;
}

/* How many of the first 100 stored vectors (of N) find themselves first. */
static size_t self_hits(omen_store *s) {
    float v[DIM];
    omen_hit hit;
    size_t i, n, found = 0;
    for (i = 0; i < 100; i++) {
        h_vec(i * (N / 100), 1, DIM, v);
        if (omen_search(s, v, 1, NULL, &hit, &n) != OMEN_OK || n != 1) return (size_t)-1;
        found += hit.distance == 0.0f;
    }
    return found;
}

/* A damaged search index (here the IVF store's codebooks file, then a code
 * record) in a store that keeps its raw vectors: omen_recover says
 * OMEN_ERR_CORRUPT (the vectors intact), omen_open opens it without the
 * index, omen_index_status and omen_stats.index_status report
 * it (the message names the file), every vector reads back, searches are
 * exact, omen_compact is refused; omen_rebuild_index brings the index back. */
void test_damaged_index_is_reported_and_rebuilt(void) {
    char pristine[4096], names[32][256];
    omen_store *s = NULL;
    omen_options o = h_opts(OMEN_OPEN_CREATE | OMEN_OPEN_IVF, DIM, OMEN_METRIC_L2);
    int round;
    o.pq_m = 8;
    o.pq_bits = 4;
    h_sub(pristine, sizeof pristine, "pristine");
    CHECK_OK(omen_open(pristine, &o, &s));
    CHECK_OK(h_put_range(s, 0, N, 1, DIM));
    CHECK_OK(omen_train_pq(s, NULL, NULL));
    CHECK_OK(omen_index_status(s));
    CHECK_OK(omen_close(s));

    for (round = 0; round < 2; round++) {
        const char *prefix = round == 0 ? "codebooks." : "codes.";
        char p[4096], file[4096];
        omen_stats st;
        omen_recovery rep;
        size_t i;
        uint64_t calls = 0;
        h_path(p, sizeof p, "%s/%s", g_dir, round == 0 ? "codebooks" : "codes");
        CHECK(copy_store(pristine, p, names) > 0);
        CHECK(find_file(p, prefix, file, sizeof file));
        CHECK(h_flip_byte(file, 4096 + 40) == 0);

        /* omen_recover verifies everything: OMEN_ERR_CORRUPT, saying the vectors are intact. */
        memset(&rep, 0, sizeof rep);
        rep.struct_size = sizeof rep;
        EXPECT_STATUS(OMEN_ERR_CORRUPT, omen_recover(p, NULL, &s, &rep));
        EXPECT_MSG(strstr(omen_last_error(), prefix) && strstr(omen_last_error(), "every vector"),
                   "omen_recover: %s", omen_last_error());

        CHECK_OK(h_open(p, 0, &s));
        EXPECT_STATUS(OMEN_ERR_CORRUPT, omen_index_status(s));
        EXPECT_MSG(strstr(omen_last_error(), prefix) != NULL, "the message names no %s file: %s", prefix,
                   omen_last_error());
        CHECK_OK(h_stats(s, &st));
        EXPECT_MSG(st.index_status == OMEN_ERR_CORRUPT && st.pq_trained == 0 && st.ivf_lists == 0 && st.calibration_queries == 0 &&
                       st.ivf_stages == 0 && st.ivf_list_code_bytes == 0,
                   "stats: index_status %u pq_trained %u ivf_lists %u", st.index_status, st.pq_trained, st.ivf_lists);
        for (i = 0; i < N; i += 7) EXPECT_STATUS(OMEN_OK, h_get_index(s, i, 1, DIM));
        EXPECT_MSG(self_hits(s) == 100, "an exact search finds %zu of 100 vectors first", self_hits(s));
        EXPECT_STATUS(OMEN_ERR_CORRUPT, omen_compact(s));

        CHECK_OK(omen_rebuild_index(s, count_progress, &calls));
        EXPECT_MSG(calls > 0, "no progress call");
        CHECK_OK(omen_index_status(s));
        CHECK_OK(h_stats(s, &st));
        EXPECT_MSG(st.index_status == 0 && st.pq_trained == 1 && st.ivf_lists > 0, "after the rebuild: index_status %u "
                   "pq_trained %u ivf_lists %u", st.index_status, st.pq_trained, st.ivf_lists);
        EXPECT_MSG(self_hits(s) >= 90, "the rebuilt index finds %zu of 100 vectors first", self_hits(s));
        CHECK_OK(omen_close(s));
        CHECK_OK(h_open(p, 0, &s));
        CHECK_OK(omen_index_status(s));
        for (i = 0; i < N; i += 7) EXPECT_STATUS(OMEN_OK, h_get_index(s, i, 1, DIM));
        CHECK_OK(omen_close(s));
    }
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_index_status(NULL));
    EXPECT_STATUS(OMEN_ERR_INVALID_ARGUMENT, omen_rebuild_index(NULL, NULL, NULL));
}
