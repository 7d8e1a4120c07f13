/* C baseline for scripts/hosts/bench.sh: the same measurements as the host
 * benches, called directly through the PLT, so host overhead = host - C.
 * Usage: bench_baseline <empty-dir> [N] */
#include "omendb.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DIM 768
#define BATCH 1000
#define RUNS 5

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}
static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double median(double *xs) { qsort(xs, RUNS, sizeof *xs, cmp); return xs[RUNS / 2]; }
static void check(omen_status st, const char *what) {
  if (st != OMEN_OK) {
    fprintf(stderr, "%s: %s: %s\n", what, omen_status_name(st), omen_last_error());
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s <empty-dir> [N]\n", argv[0]); return 2; }
  long n = argc > 2 ? atol(argv[2]) : 100000;
  char path[4096];
  omen_options o;
  omen_options_default(&o);
  o.flags = OMEN_OPEN_CREATE;
  o.dim = DIM;
  omen_store *s;
  snprintf(path, sizeof path, "%s/get", argv[1]);
  check(omen_open(path, &o, &s), "open");
  static float v[DIM], out[DIM];
  for (int i = 0; i < DIM; i++) v[i] = 0.5f;
  uint64_t offs1[2] = {0, 7};
  check(omen_put_batch(s, 1, (const uint8_t *)"present", offs1, v), "put");
  double per[RUNS];
  for (int r = 0; r < RUNS; r++) {
    double t0 = now_ns();
    for (long i = 0; i < n; i++) check(omen_get(s, (const uint8_t *)"present", 7, out, DIM), "get");
    per[r] = (now_ns() - t0) / n;
  }
  double get_ns = median(per);
  for (int r = 0; r < RUNS; r++) {
    double t0 = now_ns();
    for (long i = 0; i < n; i++) { const char *volatile p = omen_version(); (void)p; }
    per[r] = (now_ns() - t0) / n;
  }
  double noop_ns = median(per);
  check(omen_close(s), "close");

  long calls = n / 1000 < 1 ? 1 : n / 1000;
  float *vecs = malloc(sizeof(float) * BATCH * DIM);
  for (long i = 0; i < (long)BATCH * DIM; i++) vecs[i] = (float)(i % 1000) * 0.001f;
  char *ids = malloc((size_t)BATCH * 32);
  uint64_t *offs = malloc(sizeof(uint64_t) * (BATCH + 1));
  for (int r = 0; r < RUNS; r++) {
    snprintf(path, sizeof path, "%s/put%d", argv[1], r);
    check(omen_open(path, &o, &s), "open put");
    double total = 0;
    for (long b = 0; b < calls; b++) {
      /* pack outside the timed region: C callers usually hold IDs packed */
      size_t len = 0;
      offs[0] = 0;
      for (int i = 0; i < BATCH; i++) {
        len += (size_t)sprintf(ids + len, "b%ld-%d", b, i);
        offs[i + 1] = len;
      }
      double t0 = now_ns();
      check(omen_put_batch(s, BATCH, (const uint8_t *)ids, offs, vecs), "put_batch");
      total += now_ns() - t0;
    }
    per[r] = total / calls;
    check(omen_close(s), "close put");
  }
  double put_ns = median(per);
  printf("host=c version=%s N=%ld runs=%d (median)\n", omen_version(), n, RUNS);
  printf("  get, omen_get (prealloc)             : %8.0f ns/call\n", get_ns);
  printf("  omen_version (bare call)             : %8.0f ns/call\n", noop_ns);
  printf("  put_batch 1000x768, omen_put_batch   : %8.0f ns/call = %.0f vectors/s\n", put_ns,
         BATCH * 1e9 / put_ns);
  return 0;
}
