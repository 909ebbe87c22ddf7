/*
 * Measuring, as bench/lib.ts does it: a warm-up round, then the median of several timed rounds, in
 * nanoseconds per operation; the same xorshift32 generator as lib.ts `rng`, so the native twin draws the
 * same addresses as the JavaScript benchmark; one JSON line per figure on stdout.
 */
#ifndef IOMMU_BENCH_MEASURE_H
#define IOMMU_BENCH_MEASURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ROUNDS 11

/* Results feed this so the compiler cannot drop the measured work. */
static volatile uint64_t sink;

typedef struct rng {
  uint32_t x;
} rng_t;

static rng_t rng_seed(uint32_t seed) {
  rng_t r = {seed ? seed : 1};
  return r;
}

static inline uint32_t rng_next(rng_t *r) {
  uint32_t x = r->x;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  r->x = x;
  return x;
}

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* ns per operation of `round(ctx, ops)`: median of ROUNDS timed rounds after one warm-up round. */
static double ns_per_op(uint64_t (*round)(void *ctx, unsigned ops), void *ctx, unsigned ops) {
  double samples[ROUNDS];
  sink += round(ctx, ops);
  for (int r = 0; r < ROUNDS; r++) {
    double t = now_ns();
    sink += round(ctx, ops);
    samples[r] = (now_ns() - t) / ops;
  }
  qsort(samples, ROUNDS, sizeof samples[0], cmp_double);
  return samples[ROUNDS / 2];
}

static void print_figure(const char *name, double value, unsigned reads) {
  printf("{\"name\":\"%s\",\"value\":%.4g,\"unit\":\"ns/op\",\"reads\":%u}\n", name, value, reads);
  fflush(stdout);
}

static void check(int ok, const char *what) {
  if (ok) return;
  fprintf(stderr, "native bench self-check failed: %s\n", what);
  exit(1);
}

#endif
