/* Helpers shared by the C ABI tests: failure reporting, random numbers, ID
 * batches, and file-system utilities (sizes, fingerprints, corruption). */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char g_dir[4096];
int g_failures;
int g_valgrind;

void h_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    g_failures++;
    fprintf(stdout, "    FAILED at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

void h_note(const char *fmt, ...) {
    va_list ap;
    fputs("    note: ", stdout);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

const char *h_last_error(void) {
    const char *e = omen_last_error();
    return e ? e : "(NULL!)";
}

void h_path(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "h_path: path too long\n");
        abort();
    }
}

double h_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void h_rng_seed(h_rng *r, uint64_t seed) {
    r->s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (r->s == 0) r->s = 1;
}

uint64_t h_rng_next(h_rng *r) {
    uint64_t x = r->s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

float h_rng_float(h_rng *r) {
    /* 24 random bits -> [-1, 1) exactly representable */
    uint32_t b = (uint32_t)(h_rng_next(r) >> 40);
    return (float)b / 8388608.0f - 1.0f;
}

void h_rng_fill(h_rng *r, float *v, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) v[i] = h_rng_float(r);
}

/* ---- ID batches ---------------------------------------------------------- */

static void *h_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return q;
}

void h_ids_init(h_ids *b) {
    memset(b, 0, sizeof *b);
    b->off_cap = 16;
    b->offsets = h_xrealloc(NULL, b->off_cap * sizeof(uint64_t));
    b->offsets[0] = 0;
    b->cap = 256;
    b->bytes = h_xrealloc(NULL, b->cap);
}

void h_ids_free(h_ids *b) {
    free(b->bytes);
    free(b->offsets);
    memset(b, 0, sizeof *b);
}

void h_ids_clear(h_ids *b) {
    b->n = 0;
    b->len = 0;
    b->offsets[0] = 0;
}

void h_ids_add(h_ids *b, const void *id, size_t len) {
    if (b->len + len > b->cap) {
        while (b->len + len > b->cap) b->cap *= 2;
        b->bytes = h_xrealloc(b->bytes, b->cap);
    }
    if (b->n + 2 > b->off_cap) {
        b->off_cap *= 2;
        b->offsets = h_xrealloc(b->offsets, b->off_cap * sizeof(uint64_t));
    }
    if (len) memcpy(b->bytes + b->len, id, len);
    b->len += len;
    b->n++;
    b->offsets[b->n] = (uint64_t)b->len;
}

void h_ids_addf(h_ids *b, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) abort();
    h_ids_add(b, buf, (size_t)n);
}

const uint8_t *h_ids_at(const h_ids *b, size_t i, size_t *len) {
    *len = (size_t)(b->offsets[i + 1] - b->offsets[i]);
    return b->bytes + b->offsets[i];
}

/* ---- options and stats --------------------------------------------------- */

omen_options h_opts(uint32_t flags, uint32_t dim, uint32_t metric) {
    omen_options o;
    memset(&o, 0, sizeof o);
    if (omen_options_init(&o, sizeof o) != OMEN_OK) abort();
    o.flags = flags;
    o.dim = dim;
    o.metric = metric;
    return o;
}

omen_options h_opts_flags(uint32_t flags) {
    return h_opts(flags, 0, OMEN_METRIC_L2);
}

omen_status h_stats(const omen_store *s, omen_stats *out) {
    memset(out, 0, sizeof *out);
    out->struct_size = (uint32_t)sizeof *out;
    return omen_store_stats(s, out);
}

/* ---- file system --------------------------------------------------------- */

static long long g_walk_total;
static uint64_t g_walk_fp;
static size_t g_walk_root_len;

static int walk_size(const char *p, const struct stat *st, int type, struct FTW *ftw) {
    (void)p;
    (void)ftw;
    if (type == FTW_F && S_ISREG(st->st_mode)) g_walk_total += (long long)st->st_size;
    return 0;
}

long long h_dir_bytes(const char *dir) {
    g_walk_total = 0;
    if (nftw(dir, walk_size, 16, FTW_PHYS) != 0) return -1;
    return g_walk_total;
}

/* Largest regular file below dir, found with readdir (recursing into subdirectories). */
static void largest_in(const char *dir, char *best, size_t cap, long long *best_size) {
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        if (lstat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            largest_in(path, best, cap, best_size);
        } else if (S_ISREG(st.st_mode) && (long long)st.st_size > *best_size) {
            *best_size = (long long)st.st_size;
            snprintf(best, cap, "%s", path);
        }
    }
    closedir(d);
}

int h_largest_file(const char *dir, char *buf, size_t cap, long long *size) {
    buf[0] = '\0';
    *size = -1;
    largest_in(dir, buf, cap, size);
    return buf[0] ? 0 : -1;
}

int h_flip_byte(const char *path, long long offset) {
    unsigned char c;
    int fd = open(path, O_RDWR);
    if (fd < 0) return -1;
    if (pread(fd, &c, 1, (off_t)offset) != 1) {
        close(fd);
        return -1;
    }
    c ^= 0xFFu;
    if (pwrite(fd, &c, 1, (off_t)offset) != 1) {
        close(fd);
        return -1;
    }
    fsync(fd);
    close(fd);
    return 0;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= c[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

static int walk_fp(const char *p, const struct stat *st, int type, struct FTW *ftw) {
    (void)ftw;
    /* nftw visits entries in directory order; sum per-file hashes so the
     * fingerprint does not depend on that order. */
    uint64_t h = 0xcbf29ce484222325ull;
    const char *rel = p + g_walk_root_len;
    h = fnv(h, rel, strlen(rel));
    h = fnv(h, &type, sizeof type);
    if (type == FTW_F && S_ISREG(st->st_mode)) {
        unsigned char buf[65536];
        ssize_t r;
        long long size = (long long)st->st_size;
        int fd = open(p, O_RDONLY);
        h = fnv(h, &size, sizeof size);
        if (fd >= 0) {
            while ((r = read(fd, buf, sizeof buf)) > 0) h = fnv(h, buf, (size_t)r);
            close(fd);
        }
    }
    g_walk_fp += h;
    return 0;
}

uint64_t h_dir_fingerprint(const char *dir) {
    g_walk_fp = 0;
    g_walk_root_len = strlen(dir);
    nftw(dir, walk_fp, 16, FTW_PHYS);
    return g_walk_fp;
}

static int walk_rm(const char *p, const struct stat *st, int type, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    if (type == FTW_DP || type == FTW_D)
        rmdir(p);
    else
        unlink(p);
    return 0;
}

void h_rm_rf(const char *dir) {
    nftw(dir, walk_rm, 16, FTW_DEPTH | FTW_PHYS);
}

int h_count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the DIR's own descriptor */
}

int h_same_bits(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0;
}

/* ---- store fixtures ------------------------------------------------------ */

void h_sub(char *buf, size_t cap, const char *name) {
    h_path(buf, cap, "%s/%s", g_dir, name);
}

void h_vec(uint64_t index, uint64_t version, uint32_t dim, float *out) {
    h_rng r;
    h_rng_seed(&r, index * 1000003ull + version * 7919ull + dim);
    h_rng_fill(&r, out, dim);
}

void h_ids_add_index(h_ids *b, uint64_t index) {
    h_ids_addf(b, "v%07llu", (unsigned long long)index);
}

omen_status h_put_range(omen_store *s, uint64_t first, size_t n, uint64_t version, uint32_t dim) {
    h_ids ids;
    float *v = malloc((n ? n : 1) * dim * sizeof(float));
    size_t i;
    omen_status st;
    if (!v) abort();
    h_ids_init(&ids);
    for (i = 0; i < n; i++) {
        h_ids_add_index(&ids, first + i);
        h_vec(first + i, version, dim, v + i * dim);
    }
    st = omen_put_batch(s, n, ids.bytes, ids.offsets, v);
    h_ids_free(&ids);
    free(v);
    return st;
}

omen_status h_get_index(const omen_store *s, uint64_t index, uint64_t version, uint32_t dim) {
    char id[32];
    float want[4096], got[4096];
    omen_status st;
    int n = snprintf(id, sizeof id, "v%07llu", (unsigned long long)index);
    if (dim > 4096) abort();
    h_vec(index, version, dim, want);
    memset(got, 0, sizeof got);
    st = omen_get(s, (const uint8_t *)id, (size_t)n, got, dim);
    if (st == OMEN_OK && !h_same_bits(want, got, dim)) {
        h_fail(__FILE__, __LINE__, "omen_get(%s) returned a vector that is not version %llu as put",
               id, (unsigned long long)version);
        return OMEN_ERR_INTERNAL;
    }
    return st;
}

omen_status h_create(const char *path, uint32_t dim, uint32_t metric, uint32_t extra_flags, omen_store **out) {
    omen_options o = h_opts(OMEN_OPEN_CREATE | extra_flags, dim, metric);
    return omen_open(path, &o, out);
}

omen_status h_open(const char *path, uint32_t flags, omen_store **out) {
    omen_options o = h_opts_flags(flags);
    return omen_open(path, &o, out);
}
