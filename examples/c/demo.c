/*
 * OmenDB through its C ABI, start to finish:
 *
 *   create a store in a temporary directory, put a few thousand random
 *   128-dimensional vectors with string IDs in one batch, read one back
 *   bit-exact, run an exact search and print the nearest IDs, delete a few,
 *   checkpoint, close, reopen, show the store's statistics, close.
 *
 * Build: make (against ../../include and ../../target/release), run: make run.
 * Exits non-zero if any step fails.
 */
#define _XOPEN_SOURCE 700

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "omendb.h"

#define DIM 128
#define COUNT 5000
#define TOP 5

/* Prints the failed step with the library's message and jumps to cleanup. */
#define TRY(call)                                                                         \
    do {                                                                                  \
        omen_status st_ = (call);                                                         \
        if (st_ != OMEN_OK) {                                                             \
            fprintf(stderr, "demo: %s failed: %s: %s\n", #call, omen_status_name(st_),    \
                    omen_last_error());                                                   \
            goto done;                                                                    \
        }                                                                                 \
    } while (0)

static uint64_t rng_state = 0x853c49e6748fea9bull;

static float random_float(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (float)((rng_state * 0x2545F4914F6CDD1Dull) >> 40) / 8388608.0f - 1.0f;
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

int main(void) {
    char tmp[] = "/tmp/omendb-demo-XXXXXX";
    char path[64];
    int ok = 0, created = 0;
    omen_store *store = NULL;
    omen_options opts;
    omen_stats stats;
    float *vectors = malloc((size_t)COUNT * DIM * sizeof(float));
    uint8_t *ids = malloc((size_t)COUNT * 16);
    uint64_t *offsets = malloc((COUNT + 1) * sizeof(uint64_t));
    float back[DIM], query[DIM];
    omen_hit hits[TOP];
    size_t nhits = 0, i;
    uint64_t deleted = 0, seq = 0;

    if (!vectors || !ids || !offsets || !mkdtemp(tmp)) {
        fprintf(stderr, "demo: out of memory or cannot create a temporary directory\n");
        goto done;
    }
    created = 1;
    snprintf(path, sizeof path, "%s/store", tmp);
    printf("OmenDB %s - C ABI demo\n\n", omen_version());

    /* 1. Create the store: 128 dimensions, squared Euclidean distance. */
    omen_options_default(&opts);
    opts.flags = OMEN_OPEN_CREATE;
    opts.dim = DIM;
    opts.metric = OMEN_METRIC_L2;
    TRY(omen_open(path, &opts, &store));
    printf("Created a %d-dimensional L2 store in %s\n", DIM, path);

    /* 2. One batch of COUNT vectors. IDs go in one byte buffer plus COUNT+1
     *    offsets (the Arrow layout); vectors are one row-major float buffer. */
    offsets[0] = 0;
    for (i = 0; i < COUNT; i++) {
        size_t j;
        int len = sprintf((char *)ids + offsets[i], "doc-%05zu", i);
        offsets[i + 1] = offsets[i] + (uint64_t)len;
        for (j = 0; j < DIM; j++) vectors[i * DIM + j] = random_float();
    }
    TRY(omen_put_batch(store, COUNT, ids, offsets, vectors));
    printf("Put %d vectors with IDs doc-00000 .. doc-%05d in one call\n", COUNT, COUNT - 1);

    /* 3. Read one back: the raw vector comes back bit for bit. */
    TRY(omen_get(store, (const uint8_t *)"doc-01234", 9, back, DIM));
    if (memcmp(back, vectors + 1234 * DIM, sizeof back) != 0) {
        fprintf(stderr, "demo: doc-01234 did not come back bit-exact\n");
        goto done;
    }
    printf("Got doc-01234 back: bit-exact (first values %.6f %.6f %.6f ...)\n", back[0], back[1], back[2]);

    /* 4. Exact search for a slightly moved copy of doc-00042. */
    {
        omen_search_params params;
        memset(&params, 0, sizeof params);
        params.struct_size = sizeof params;
        params.exact = 1;
        for (i = 0; i < DIM; i++) query[i] = vectors[42 * DIM + i] + 0.01f * random_float();
        TRY(omen_search(store, query, TOP, &params, hits, &nhits));
    }
    printf("\nTop %zu hits for a query near doc-00042 (exact scan):\n", nhits);
    for (i = 0; i < nhits; i++) {
        const uint8_t *id;
        size_t len;
        TRY(omen_key_id(store, hits[i].key, &id, &len)); /* points into the store: print, don't keep */
        printf("  %zu. %.*s  distance %.4f\n", i + 1, (int)len, (const char *)id, hits[i].distance);
    }
    if (nhits == 0) {
        fprintf(stderr, "demo: search returned nothing\n");
        goto done;
    }
    {
        const uint8_t *id;
        size_t len;
        TRY(omen_key_id(store, hits[0].key, &id, &len));
        if (len != 9 || memcmp(id, "doc-00042", 9) != 0) {
            fprintf(stderr, "demo: the nearest hit is not doc-00042\n");
            goto done;
        }
    }

    /* 5. Delete three IDs (one of them twice, and one that never existed). */
    {
        const uint8_t del_ids[] = "doc-00042doc-00007doc-00007doc-99999";
        const uint64_t del_off[] = {0, 9, 18, 27, 36};
        TRY(omen_delete_batch(store, 4, del_ids, del_off, &deleted));
        printf("\nDeleted doc-00042 and doc-00007 (plus a repeat and a missing ID): %llu deleted\n",
               (unsigned long long)deleted);
        if (omen_get(store, (const uint8_t *)"doc-00042", 9, back, DIM) != OMEN_ERR_NOT_FOUND) {
            fprintf(stderr, "demo: doc-00042 is still there after the delete\n");
            goto done;
        }
    }

    /* 6. Make it durable, close, reopen (no CREATE this time). */
    TRY(omen_checkpoint(store, &seq));
    printf("Checkpoint %llu is durable\n", (unsigned long long)seq);
    TRY(omen_close(store));
    store = NULL;
    printf("Closed the store\n");
    TRY(omen_open(path, NULL, &store)); /* NULL options: the store's own settings */
    printf("Reopened it\n");

    /* 7. What the store holds now. */
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    TRY(omen_store_stats(store, &stats));
    printf("\nStore statistics:\n");
    printf("  dimension        %u, metric %s\n", stats.dim,
           stats.metric == OMEN_METRIC_L2 ? "L2" : stats.metric == OMEN_METRIC_IP ? "IP" : "cosine");
    printf("  live vectors     %llu\n", (unsigned long long)stats.live_vectors);
    printf("  dead slots       %llu\n", (unsigned long long)stats.dead_slots);
    printf("  checkpoint       %llu\n", (unsigned long long)stats.checkpoint_seq);
    printf("  payload bytes    %llu\n", (unsigned long long)stats.payload_bytes);
    printf("  bytes on disk    %llu\n", (unsigned long long)stats.disk_bytes);
    printf("  heap bytes       %llu\n", (unsigned long long)stats.heap_bytes);
    if (stats.live_vectors != COUNT - deleted) {
        fprintf(stderr, "demo: expected %llu live vectors after reopening\n",
                (unsigned long long)(COUNT - deleted));
        goto done;
    }
    TRY(omen_get(store, (const uint8_t *)"doc-01234", 9, back, DIM));
    if (memcmp(back, vectors + 1234 * DIM, sizeof back) != 0) {
        fprintf(stderr, "demo: doc-01234 changed across close/reopen\n");
        goto done;
    }
    printf("  doc-01234 is still bit-exact after reopening\n");

    TRY(omen_close(store));
    store = NULL;
    printf("\nDone.\n");
    ok = 1;

done:
    if (store) omen_close(store);
    if (created) nftw(tmp, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(vectors);
    free(ids);
    free(offsets);
    return ok ? 0 : 1;
}
