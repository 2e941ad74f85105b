/*
 * The memory floor under "engine cost flat from 1 to 100k connections" (docs/benchmarks.md,
 * compare engine, "The memory floor"): what any implementation on this machine pays per frame
 * for finding a connection among N and touching its per-packet state, without the engine's
 * work. Per frame: hash a 36-byte IPv4/TCP flow key, probe an open-addressing table of 64-byte
 * slot rows (length, hash, key: as ConnTable's slab), load the connection pointer from a
 * parallel array, then read and write fields on three cache lines of a 360-byte connection
 * (CompareConn's per-packet lines). Frames come as the engine benchmark's chunks: 32 primaries
 * of 32 consecutive connections, then their 32 twins. "one by one" processes each frame in
 * turn; "batched" first hashes a chunk's keys and prefetches their slot rows, connection
 * pointers and connections' lines (what CompareEngine.pushPrimaryBatch does), then processes it.
 *
 *   gcc -O2 -o /tmp/lookup-floor bench/native/lookup-floor.c && /tmp/lookup-floor
 *
 * Connections are allocated in creation order, which is also the order the frames visit them, so
 * the hardware prefetchers can follow; SCATTER=1 places them in memory in a random order instead
 * (no prefetcher helps), the worst case for any layout.
 *
 * Not part of `npm run bench` (it needs a C compiler); a reference measurement only.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY 36
#define CONN_BYTES 360
#define CHUNK 32

typedef struct {
  uint8_t bytes[CONN_BYTES];
} conn_t;

typedef struct {
  uint16_t len;
  uint16_t pad;
  uint32_t hash;
  uint8_t key[KEY];
  uint8_t fill[64 - 8 - KEY];
} slot_t;

static uint32_t hash_key(const uint8_t *k) {
  uint32_t h = 2166136261u;
  for (int i = 0; i < KEY; i++) h = (h ^ k[i]) * 16777619u;
  return h ^ (h >> 15);
}

static void make_key(uint8_t *k, uint32_t id) {
  memset(k, 0, KEY);
  k[0] = 6;
  k[1] = 10; k[2] = 0; k[3] = (uint8_t)(id >> 16); k[4] = (uint8_t)(id >> 8);
  k[5] = 10; k[6] = 1; k[7] = 0; k[8] = 1;
  k[9] = (uint8_t)((40000 + id % 20000) >> 8); k[10] = (uint8_t)(40000 + id % 20000);
  k[11] = 0; k[12] = 80; k[13] = (uint8_t)id;
}

static slot_t *table;
static conn_t **conns;
static uint32_t mask;

static conn_t *find(const uint8_t *k, uint32_t h) {
  for (uint32_t i = h & mask;; i = (i + 1) & mask) {
    slot_t *s = &table[i];
    if (s->len == 0) return NULL;
    if (s->hash == h && memcmp(s->key, k, KEY) == 0) return conns[i];
  }
}

static volatile uint64_t sink;

static inline void touch(conn_t *c, uint32_t seq) {
  /* Three per-packet lines: read-modify-write a field on each. */
  uint32_t *a = (uint32_t *)(c->bytes + 24), *b = (uint32_t *)(c->bytes + 80), *d = (uint32_t *)(c->bytes + 136);
  *a += seq;
  *b ^= *a;
  *d += *b;
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double run(uint32_t n, uint64_t frames, int batched, uint8_t *keys) {
  uint32_t hashes[CHUNK];
  conn_t *hint[CHUNK];
  uint64_t done = 0;
  uint32_t next = 0;
  double t0 = now_ns();
  while (done < frames) {
    uint32_t base = next;
    for (int side = 0; side < 2; side++) {
      if (batched) {
        for (int j = 0; j < CHUNK; j++) hashes[j] = hash_key(keys + (size_t)((base + j) % n) * KEY);
        for (int j = 0; j < CHUNK; j++) {
          uint32_t i = hashes[j] & mask;
          __builtin_prefetch(&table[i]);
          hint[j] = conns[i];
        }
        for (int j = 0; j < CHUNK; j++) {
          if (hint[j] == NULL) continue;
          __builtin_prefetch(hint[j]->bytes + 24, 1);
          __builtin_prefetch(hint[j]->bytes + 80, 1);
          __builtin_prefetch(hint[j]->bytes + 136, 1);
        }
        for (int j = 0; j < CHUNK; j++) {
          conn_t *c = find(keys + (size_t)((base + j) % n) * KEY, hashes[j]);
          touch(c, (uint32_t)done + j);
        }
      } else {
        for (int j = 0; j < CHUNK; j++) {
          const uint8_t *k = keys + (size_t)((base + j) % n) * KEY;
          conn_t *c = find(k, hash_key(k));
          touch(c, (uint32_t)done + j);
        }
      }
      done += CHUNK;
    }
    next = (next + CHUNK) % n;
  }
  double t = now_ns() - t0;
  sink += done;
  return t / (double)done;
}

int main(int argc, char **argv) {
  uint64_t frames = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000000ull;
  const uint32_t sizes[] = {1, 1000, 100000};
  printf("connections  one by one ns/frame  batched ns/frame\n");
  for (int s = 0; s < 3; s++) {
    uint32_t n = sizes[s];
    uint32_t cap = 1;
    while (cap < 2 * n) cap <<= 1;
    if (cap < 1024) cap = 1024;
    mask = cap - 1;
    table = aligned_alloc(64, sizeof(slot_t) * cap);
    memset(table, 0, sizeof(slot_t) * cap);
    conns = calloc(cap, sizeof(conn_t *));
    uint8_t *keys = malloc((size_t)n * KEY);
    int scatter = getenv("SCATTER") != NULL;
    uint32_t *slot_of = malloc(sizeof(uint32_t) * n);
    for (uint32_t id = 0; id < n; id++) {
      uint8_t *k = keys + (size_t)id * KEY;
      make_key(k, id);
      uint32_t h = hash_key(k);
      uint32_t i = h & mask;
      while (table[i].len != 0) i = (i + 1) & mask;
      table[i].len = KEY;
      table[i].hash = h;
      memcpy(table[i].key, k, KEY);
      /* One allocation per connection, as a garbage-collected heap places them: in creation order. */
      if (!scatter) conns[i] = calloc(1, sizeof(conn_t));
      else slot_of[id] = i;
    }
    if (scatter) {
      /* Connections placed in memory in an order unrelated to the traffic's (SCATTER=1). */
      conn_t *pool = calloc(n, sizeof(conn_t));
      uint32_t *perm = malloc(sizeof(uint32_t) * n);
      for (uint32_t id = 0; id < n; id++) perm[id] = id;
      srand(42);
      for (uint32_t id = n - 1; id > 0; id--) {
        uint32_t j = (uint32_t)(((uint64_t)rand() * (id + 1)) / ((uint64_t)RAND_MAX + 1));
        uint32_t t = perm[id]; perm[id] = perm[j]; perm[j] = t;
      }
      for (uint32_t id = 0; id < n; id++) conns[slot_of[id]] = &pool[perm[id]];
    }
    double best1 = 1e18, best2 = 1e18;
    for (int r = 0; r < 5; r++) {
      double a = run(n, frames, 0, keys), b = run(n, frames, 1, keys);
      if (a < best1) best1 = a;
      if (b < best2) best2 = b;
    }
    printf("%11u  %19.1f  %16.1f\n", n, best1, best2);
  }
  return 0;
}
