/*
 * A tiny test harness for the OmenDB C ABI tests. No external framework.
 *
 * Every test is a `void test_<name>(void)` function listed in tests.h. The
 * runner (main.c) gives each test a fresh temporary directory (g_dir) and, by
 * default, runs it in a forked child so that a crash in the library fails one
 * test instead of the whole run.
 *
 * Inside a test, the CHECK* macros record a failure and return from the test
 * function. The test functions therefore keep their resources in a way that a
 * failing early return only leaks memory in an already failing test.
 */
#ifndef OMEN_HARNESS_H
#define OMEN_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "omendb.h"

/* The current test's fresh, empty temporary directory (no trailing slash). */
extern char g_dir[4096];
/* Number of failed checks in the current test. */
extern int g_failures;
/* 1 when running under valgrind (OMEN_TEST_VALGRIND=1): tests use smaller sizes. */
extern int g_valgrind;

void h_fail(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void h_note(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Marks the current test as skipped (with a reason); the test should return. */
void h_skip(const char *reason);

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            h_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond);           \
            return;                                                          \
        }                                                                    \
    } while (0)

#define CHECK_MSG(cond, ...)                                                 \
    do {                                                                     \
        if (!(cond)) {                                                       \
            h_fail(__FILE__, __LINE__, __VA_ARGS__);                         \
            return;                                                          \
        }                                                                    \
    } while (0)

/* Like CHECK_MSG but the test goes on (to report several problems at once). */
#define EXPECT_MSG(cond, ...)                                                \
    do {                                                                     \
        if (!(cond)) {                                                       \
            h_fail(__FILE__, __LINE__, __VA_ARGS__);                         \
        }                                                                    \
    } while (0)

/* Evaluates `call` once; fails (and returns) unless it returns `want`.
 * Prints both status names and omen_last_error() on failure. */
#define CHECK_STATUS(want, call)                                             \
    do {                                                                     \
        omen_status h_got_ = (call);                                         \
        if ((int)h_got_ != (int)(want)) {                                    \
            h_fail(__FILE__, __LINE__, "%s: expected %s, got %s (last error: \"%s\")", \
                   #call, omen_status_name((int32_t)(want)),                 \
                   omen_status_name((int32_t)h_got_), h_last_error());       \
            return;                                                          \
        }                                                                    \
    } while (0)

#define CHECK_OK(call) CHECK_STATUS(OMEN_OK, call)

/* Non-returning variants: record the failure and go on with the test. */
#define EXPECT_STATUS(want, call)                                            \
    do {                                                                     \
        omen_status h_got_ = (call);                                         \
        if ((int)h_got_ != (int)(want)) {                                    \
            h_fail(__FILE__, __LINE__, "%s: expected %s, got %s (last error: \"%s\")", \
                   #call, omen_status_name((int32_t)(want)),                 \
                   omen_status_name((int32_t)h_got_), h_last_error());       \
        } else if ((int)h_got_ != OMEN_OK &&                                 \
                   (omen_last_error() == NULL || omen_last_error()[0] == '\0')) { \
            h_fail(__FILE__, __LINE__, "%s returned %s but omen_last_error() is empty", \
                   #call, omen_status_name((int32_t)h_got_));                \
        }                                                                    \
    } while (0)

/* Same as CHECK_STATUS, and additionally requires a non-empty omen_last_error(). */
#define CHECK_ERR(want, call)                                                \
    do {                                                                     \
        CHECK_STATUS(want, call);                                            \
        CHECK_MSG(omen_last_error() != NULL && omen_last_error()[0] != '\0', \
                  "%s returned %s but omen_last_error() is empty", #call,    \
                  omen_status_name((int32_t)(want)));                        \
    } while (0)

/* omen_last_error() made safe for printing (never crashes the harness). */
const char *h_last_error(void);

/* ---- helpers (harness.c) ---------------------------------------------- */

/* snprintf into a buffer, aborting on truncation. */
void h_path(char *buf, size_t cap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Monotonic time in seconds. */
double h_now(void);

/* Deterministic xorshift random numbers. */
typedef struct h_rng {
    uint64_t s;
} h_rng;
void h_rng_seed(h_rng *r, uint64_t seed);
uint64_t h_rng_next(h_rng *r);
/* Uniform float in [-1, 1). */
float h_rng_float(h_rng *r);
void h_rng_fill(h_rng *r, float *v, size_t n);

/* A batch of IDs in the Arrow layout the C ABI takes. */
typedef struct h_ids {
    size_t n;
    uint8_t *bytes;
    size_t len;        /* bytes used */
    size_t cap;
    uint64_t *offsets; /* n + 1 */
    size_t off_cap;
} h_ids;
void h_ids_init(h_ids *b);
void h_ids_free(h_ids *b);
void h_ids_clear(h_ids *b);
void h_ids_add(h_ids *b, const void *id, size_t len);
void h_ids_addf(h_ids *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* ID i of the batch. */
const uint8_t *h_ids_at(const h_ids *b, size_t i, size_t *len);

/* g_dir + "/" + name */
void h_sub(char *buf, size_t cap, const char *name);

/* Deterministic test vector for (index, version): dim floats in [-1, 1). */
void h_vec(uint64_t index, uint64_t version, uint32_t dim, float *out);
/* Appends ID "v<index>" (zero-padded to 7 digits) to b. */
void h_ids_add_index(h_ids *b, uint64_t index);
/* Puts indices [first, first+n) with h_vec(i, version) in one batch. */
omen_status h_put_range(omen_store *s, uint64_t first, size_t n, uint64_t version, uint32_t dim);
/* Checks that ID "v<index>" holds exactly h_vec(index, version); returns the
 * omen_get status, or OMEN_ERR_INTERNAL (with a failure recorded) on a mismatch. */
omen_status h_get_index(const omen_store *s, uint64_t index, uint64_t version, uint32_t dim);
/* Creates (OMEN_OPEN_CREATE | extra_flags) a store at path. */
omen_status h_create(const char *path, uint32_t dim, uint32_t metric, uint32_t extra_flags, omen_store **out);
/* Opens an existing store with default options + flags. */
omen_status h_open(const char *path, uint32_t flags, omen_store **out);

/* Options for a fresh store: defaults + CREATE + dim + metric. */
omen_options h_opts(uint32_t flags, uint32_t dim, uint32_t metric);
/* Options initialised by omen_options_init (the whole struct), flags only. */
omen_options h_opts_flags(uint32_t flags);
/* Zeroed stats with struct_size set, filled by omen_store_stats; returns status. */
omen_status h_stats(const omen_store *s, omen_stats *out);

/* Total apparent size (st_size) of all regular files below dir; -1 on error. */
long long h_dir_bytes(const char *dir);
/* Path of the largest regular file below dir (into buf); 0 on success. */
int h_largest_file(const char *dir, char *buf, size_t cap, long long *size);
/* Flips every bit of the byte at `offset` in file `path`; 0 on success. */
int h_flip_byte(const char *path, long long offset);
/* A fingerprint (names, sizes and contents) of all files below dir. */
uint64_t h_dir_fingerprint(const char *dir);
/* Removes dir and everything below it. */
void h_rm_rf(const char *dir);
/* Number of open file descriptors of this process (/proc/self/fd), -1 if unknown. */
int h_count_fds(void);

/* Bit-exact float buffer comparison. */
int h_same_bits(const float *a, const float *b, size_t n);

#endif
