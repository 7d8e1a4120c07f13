/* The write floor of this machine's disk and kernel, for put + checkpoint:
 * bytes written into a fresh file with pwrite in 256 KiB blocks, writeback
 * started behind every 3 MiB (sync_file_range, as put_batch does), then one
 * fdatasync. With 1 thread, then with 2 threads writing the two halves of
 * the file side by side. Nothing is checked, hashed or indexed: this is what
 * put_batch + checkpoint would take if all its own work were free.
 *   cc -O2 -pthread crates/omendb-bench/scripts/write_floor.c -o write_floor
 *   ./write_floor DIR [N] [DIM] [ROUNDS] [MODE]   (the bytes of N x DIM floats; default 100000 768 5)
 * MODE: pwrite (default); files = pwrite, but at 2 threads each thread
 * writes its half into a file of its own (no inode shared between them);
 * mmap = memcpy into a shared mapping of the file (sized first with
 * ftruncate), which takes no inode lock; mmap-huge = the same with
 * madvise(MADV_HUGEPAGE) on the mapping.
 * Prints one JSON line: median seconds of write and write+sync per thread count. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

#define BLOCK (256u << 10)
#define BEHIND (3u << 20)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

enum mode { PWRITE, FILES, MMAP, MMAP_HUGE };

struct part {
    int fd;
    char *map; /* the file's mapping, or NULL to pwrite */
    const char *src;
    size_t off, len;
    size_t file_base; /* subtracted from off for the file offset (FILES: off) */
    int failed;
};

static void *write_part(void *arg) {
    struct part *p = arg;
    for (size_t o = 0; o < p->len; o += BLOCK) {
        size_t n = p->len - o < BLOCK ? p->len - o : BLOCK;
        size_t at = p->off - p->file_base + o;
        if (p->map)
            memcpy(p->map + at, p->src + p->off + o, n);
        else if (pwrite(p->fd, p->src + p->off + o, n, at) != (ssize_t)n)
            p->failed = 1;
        if ((o + n) % BEHIND == 0) sync_file_range(p->fd, at + n - BEHIND, BEHIND, SYNC_FILE_RANGE_WRITE);
    }
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: write_floor DIR [N] [DIM] [ROUNDS] [pwrite|files|mmap|mmap-huge]\n");
        return 2;
    }
    size_t n = argc > 2 ? strtoull(argv[2], 0, 10) : 100000, dim = argc > 3 ? strtoull(argv[3], 0, 10) : 768;
    size_t bytes = n * dim * sizeof(float);
    int rounds = argc > 4 ? atoi(argv[4]) : 5;
    if (rounds < 1) rounds = 1;
    const char *mode_name = argc > 5 ? argv[5] : "pwrite";
    enum mode mode = !strcmp(mode_name, "mmap")        ? MMAP
                     : !strcmp(mode_name, "mmap-huge") ? MMAP_HUGE
                     : !strcmp(mode_name, "files")     ? FILES
                                                       : PWRITE;
    if (mode == PWRITE && strcmp(mode_name, "pwrite")) {
        fprintf(stderr, "unknown mode %s\n", mode_name);
        return 2;
    }
    char *src = malloc(bytes);
    for (size_t i = 0; i < bytes; i++) src[i] = (char)(i * 7 + (i >> 12));
    char path[4096], path2[4096];
    snprintf(path, sizeof path, "%s/write_floor.dat", argv[1]);
    snprintf(path2, sizeof path2, "%s/write_floor.2.dat", argv[1]);
    double write_s[2][64], total_s[2][64];
    if (rounds > 64) rounds = 64;
    for (int r = 0; r < rounds; r++) {
        for (int threads = 1; threads <= 2; threads++) {
            unlink(path);
            unlink(path2);
            double t = now();
            int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644), fd2 = -1;
            if (fd < 0) {
                perror(path);
                return 1;
            }
            if (mode == FILES && threads == 2 && (fd2 = open(path2, O_RDWR | O_CREAT | O_TRUNC, 0644)) < 0) {
                perror(path2);
                return 1;
            }
            char *map = NULL;
            if (mode == MMAP || mode == MMAP_HUGE) {
                map = ftruncate(fd, bytes) == 0 ? mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
                if (map == MAP_FAILED) {
                    perror("map");
                    return 1;
                }
                if (mode == MMAP_HUGE) madvise(map, bytes, MADV_HUGEPAGE);
            }
            pthread_t tid[2];
            struct part parts[2];
            size_t half = bytes / threads / BEHIND * BEHIND;
            for (int k = 0; k < threads; k++) {
                size_t off = half * k, len = k == threads - 1 ? bytes - off : half;
                int own_file = k == 1 && fd2 >= 0; /* FILES: the second half goes to its own file */
                parts[k] = (struct part){own_file ? fd2 : fd, map, src, off, len, own_file ? off : 0, 0};
                pthread_create(&tid[k], NULL, write_part, &parts[k]);
            }
            for (int k = 0; k < threads; k++) pthread_join(tid[k], NULL);
            write_s[threads - 1][r] = now() - t;
            if (fdatasync(fd) != 0 || (fd2 >= 0 && fdatasync(fd2) != 0) || parts[0].failed ||
                (threads == 2 && parts[1].failed)) {
                perror("write");
                return 1;
            }
            total_s[threads - 1][r] = now() - t;
            if (map) munmap(map, bytes);
            close(fd);
            if (fd2 >= 0) close(fd2);
        }
    }
    unlink(path);
    unlink(path2);
    for (int k = 0; k < 2; k++) {
        qsort(write_s[k], rounds, sizeof(double), cmp);
        qsort(total_s[k], rounds, sizeof(double), cmp);
    }
    printf("{\"mode\":\"%s\",\"bytes\":%zu,\"rounds\":%d,\"write_s_1t\":%.4f,\"write_sync_s_1t\":%.4f,\"write_s_2t\":%.4f,"
           "\"write_sync_s_2t\":%.4f,\"gb_per_s_1t\":%.2f,\"gb_per_s_2t\":%.2f}\n",
           mode_name, bytes, rounds, write_s[0][rounds / 2], total_s[0][rounds / 2], write_s[1][rounds / 2], total_s[1][rounds / 2],
           bytes / total_s[0][rounds / 2] / 1e9, bytes / total_s[1][rounds / 2] / 1e9);
    free(src);
    return 0;
}
