/* The installed-library smoke test: built with nothing but
 *   cc app.c $(pkg-config --cflags --libs omendb)
 * (or statically against libomendb.a), it creates a store, puts a batch,
 * reads it back, searches, checkpoints, closes, reopens and checks again. */
#include <omendb.h>

#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                                   \
    do {                                                                              \
        omen_status st_ = (call);                                                     \
        if (st_ != OMEN_OK) {                                                         \
            fprintf(stderr, "%s failed: %s: %s\n", #call, omen_status_name(st_),      \
                    omen_last_error());                                               \
            return 1;                                                                 \
        }                                                                             \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s STORE_DIR\n", argv[0]);
        return 2;
    }
    omen_options opts;
    omen_options_default(&opts);
    opts.flags = OMEN_OPEN_CREATE;
    opts.dim = 4;

    omen_store *store = NULL;
    CHECK(omen_open(argv[1], &opts, &store));
    const char ids[] = "catdogcow";
    const uint64_t offsets[] = {0, 3, 6, 9};
    const float vectors[] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
    CHECK(omen_put_batch(store, 3, (const uint8_t *)ids, offsets, vectors));
    uint64_t seq = 0;
    CHECK(omen_checkpoint(store, &seq));

    const float query[] = {0.1f, 0.9f, 0, 0};
    omen_hit hits[3];
    size_t found = 0;
    CHECK(omen_search(store, query, 3, NULL, hits, &found));
    const uint8_t *id = NULL;
    size_t len = 0;
    CHECK(omen_key_id(store, hits[0].key, &id, &len));
    if (found != 3 || len != 3 || memcmp(id, "dog", 3) != 0) {
        fprintf(stderr, "search: expected dog first among 3 hits\n");
        return 1;
    }
    CHECK(omen_close(store));

    store = NULL;
    CHECK(omen_open(argv[1], NULL, &store));
    float out[4];
    CHECK(omen_get(store, (const uint8_t *)"cow", 3, out, 4));
    if (memcmp(out, vectors + 8, sizeof out) != 0) {
        fprintf(stderr, "get: cow came back different\n");
        return 1;
    }
    omen_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    CHECK(omen_store_stats(store, &stats));
    CHECK(omen_close(store));
    if (stats.live_vectors != 3) {
        fprintf(stderr, "stats: %llu live vectors, expected 3\n", (unsigned long long)stats.live_vectors);
        return 1;
    }
    printf("ok: omendb %s, checkpoint %llu, %llu vectors\n", omen_version(), (unsigned long long)seq,
           (unsigned long long)stats.live_vectors);
    return 0;
}
