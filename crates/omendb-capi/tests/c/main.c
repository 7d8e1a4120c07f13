/*
 * Test runner for the OmenDB C ABI tests.
 *
 *   ./omen_ctests                 run every test
 *   ./omen_ctests name1 name2     run only the named tests
 *   ./omen_ctests --list          list the test names
 *
 * Each test runs in a fresh temporary directory (mkdtemp under $TMPDIR or
 * /tmp, removed afterwards) and, unless OMEN_TEST_NOFORK=1, in a forked child
 * process so that a crash fails only that test. One line per test, then the
 * summary line "C tests: N passed, M failed". Exit status 1 on any failure.
 *
 * Environment:
 *   OMEN_TEST_NOFORK=1     run tests in this process (for debuggers)
 *   OMEN_TEST_SKIP_SLOW=1  skip tests marked slow (big stores, threads, forks)
 *   OMEN_TEST_VALGRIND=1   running under valgrind: tests shrink their sizes
 *   OMEN_TEST_TIMEOUT=sec  per-test time limit (default 900)
 *   OMEN_TEST_KEEP=1       keep the temporary directories
 */
#include "harness.h"
#include "tests.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define H_SLOW 1u

typedef struct h_test {
    const char *name;
    void (*fn)(void);
    unsigned flags;
} h_test;

#define H_DECLARE(name, flags) void test_##name(void);
OMEN_TESTS(H_DECLARE)

#define H_ENTRY(name, flags) {#name, test_##name, flags},
static const h_test g_tests[] = {OMEN_TESTS(H_ENTRY)};
#define N_TESTS (sizeof g_tests / sizeof g_tests[0])

static int g_skipped;
enum { EXIT_SKIPPED = 77 };

void h_skip(const char *reason) {
    g_skipped = 1;
    printf("    skipped: %s\n", reason);
    fflush(stdout);
}

static int env_flag(const char *name) {
    const char *v = getenv(name);
    return v && v[0] && strcmp(v, "0") != 0;
}

/* Runs one test; returns 0 pass, 1 fail, 2 skip. */
static int run_one(const h_test *t, int use_fork, unsigned timeout) {
    const char *tmp = getenv("TMPDIR");
    char tmpl[4096];
    int result;

    h_path(tmpl, sizeof tmpl, "%s/omen-ctest-%s-XXXXXX", (tmp && tmp[0]) ? tmp : "/tmp", t->name);
    if (!mkdtemp(tmpl)) {
        printf("    FAILED: mkdtemp(%s) failed\n", tmpl);
        return 1;
    }
    h_path(g_dir, sizeof g_dir, "%s", tmpl);
    g_failures = 0;
    g_skipped = 0;
    fflush(stdout);
    fflush(stderr);

    if (!use_fork) {
        t->fn();
        fflush(stdout);
        result = g_skipped ? 2 : (g_failures ? 1 : 0);
    } else {
        int wstatus = 0;
        pid_t pid = fork();
        if (pid < 0) {
            printf("    FAILED: fork failed\n");
            result = 1;
        } else if (pid == 0) {
            alarm(timeout);
            t->fn();
            fflush(stdout);
            exit(g_skipped ? EXIT_SKIPPED : (g_failures ? 1 : 0));
        } else {
            while (waitpid(pid, &wstatus, 0) < 0) {
            }
            if (WIFEXITED(wstatus)) {
                int code = WEXITSTATUS(wstatus);
                if (code == 0)
                    result = 0;
                else if (code == EXIT_SKIPPED)
                    result = 2;
                else {
                    if (code != 1) printf("    FAILED: test process exited with status %d\n", code);
                    result = 1;
                }
            } else if (WIFSIGNALED(wstatus)) {
                int sig = WTERMSIG(wstatus);
                printf("    FAILED: test process killed by signal %d (%s)\n", sig,
                       sig == SIGALRM ? "time limit exceeded" : strsignal(sig));
                result = 1;
            } else {
                result = 1;
            }
        }
    }
    if (env_flag("OMEN_TEST_KEEP"))
        printf("    kept %s\n", tmpl);
    else
        h_rm_rf(tmpl);
    return result;
}

int main(int argc, char **argv) {
    int use_fork = !env_flag("OMEN_TEST_NOFORK");
    int skip_slow = env_flag("OMEN_TEST_SKIP_SLOW");
    unsigned timeout = 900;
    int passed = 0, failed = 0, skipped = 0;
    size_t i;
    int a;
    const char *to = getenv("OMEN_TEST_TIMEOUT");

    g_valgrind = env_flag("OMEN_TEST_VALGRIND");
    if (to && atoi(to) > 0) timeout = (unsigned)atoi(to);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (i = 0; i < N_TESTS; i++) printf("%s%s\n", g_tests[i].name, (g_tests[i].flags & H_SLOW) ? " (slow)" : "");
        return 0;
    }
    for (a = 1; a < argc; a++) {
        int known = 0;
        for (i = 0; i < N_TESTS; i++) known |= strcmp(argv[a], g_tests[i].name) == 0;
        if (!known) {
            fprintf(stderr, "unknown test: %s (try --list)\n", argv[a]);
            return 2;
        }
    }

    for (i = 0; i < N_TESTS; i++) {
        const h_test *t = &g_tests[i];
        int r;
        double t0;
        if (argc > 1) {
            int wanted = 0;
            for (a = 1; a < argc; a++) wanted |= strcmp(argv[a], t->name) == 0;
            if (!wanted) continue;
        }
        if (skip_slow && (t->flags & H_SLOW) && argc == 1) {
            printf("SKIP %s (slow; OMEN_TEST_SKIP_SLOW is set)\n", t->name);
            skipped++;
            continue;
        }
        t0 = h_now();
        r = run_one(t, use_fork, timeout);
        printf("%s %s (%.2f s)\n", r == 0 ? "PASS" : r == 1 ? "FAIL" : "SKIP", t->name, h_now() - t0);
        if (r == 0)
            passed++;
        else if (r == 1)
            failed++;
        else
            skipped++;
    }
    if (skipped) printf("(%d skipped)\n", skipped);
    printf("C tests: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
