/*
 * Sparse simulated physical memory laid out the way src/core/hw/memory.ts keeps it, so that a native walk
 * pays for the same structure the model's walk does: 4 KiB pages of 1024 32-bit words, found through
 * 16 MiB chunks (4096 page pointers each) held in a hash table keyed by chunk number, with a one-entry
 * cache of the last chunk used; pages are carved out of 1 MiB slabs (256 pages), zero until written;
 * table pages come from a bump allocator starting at 0x1000_0000. No snapshots, observers or holes: the
 * benchmarks use none (the walk still tests the "has holes" flag, as the model does).
 *
 * A 64-bit entry at byte address A is read as one little-endian 8-byte load from the page holding A.
 */
#ifndef IOMMU_BENCH_MEMORY_H
#define IOMMU_BENCH_MEMORY_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_SIZE 4096u
#define CHUNK_PAGES 4096u
#define SLAB_PAGES 256u
#define NO_CHUNK UINT64_MAX

typedef struct chunk {
  uint32_t *pages[CHUNK_PAGES];
} chunk_t;

typedef struct memory {
  /* Open-addressed hash table: chunk number -> chunk (the model's Map<number, Chunk>). */
  uint64_t *ids;
  chunk_t **chunks;
  size_t cap;
  size_t count;
  /* The one-entry chunk cache. */
  uint64_t last_id;
  chunk_t *last;
  uint32_t *slab;
  unsigned slab_used;
  uint64_t next_table;
  /* 2^host address width: no memory at or above it. */
  uint64_t limit;
  int has_holes;
  /* Incremented on every write; caches compare it to decide whether to re-verify an entry. */
  uint64_t write_count;
  size_t populated;
} memory_t;

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (!p) {
    fprintf(stderr, "native bench: out of memory\n");
    exit(2);
  }
  return p;
}

static void mem_init(memory_t *m, unsigned haw) {
  memset(m, 0, sizeof *m);
  m->cap = 64;
  m->ids = xcalloc(m->cap, sizeof *m->ids);
  m->chunks = xcalloc(m->cap, sizeof *m->chunks);
  for (size_t i = 0; i < m->cap; i++) m->ids[i] = NO_CHUNK;
  m->last_id = NO_CHUNK;
  m->slab_used = SLAB_PAGES;
  m->next_table = 0x10000000u;
  m->limit = 1ull << haw;
}

static inline size_t chunk_slot(uint64_t id, size_t cap) {
  return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 40) & (cap - 1);
}

static chunk_t *chunk_find(const memory_t *m, uint64_t id) {
  for (size_t i = chunk_slot(id, m->cap);; i = (i + 1) & (m->cap - 1)) {
    if (m->ids[i] == id) return m->chunks[i];
    if (m->ids[i] == NO_CHUNK) return NULL;
  }
}

static void chunk_insert(memory_t *m, uint64_t id, chunk_t *c) {
  if (2 * (m->count + 1) > m->cap) {
    size_t old_cap = m->cap;
    uint64_t *old_ids = m->ids;
    chunk_t **old_chunks = m->chunks;
    m->cap *= 2;
    m->ids = xcalloc(m->cap, sizeof *m->ids);
    m->chunks = xcalloc(m->cap, sizeof *m->chunks);
    for (size_t i = 0; i < m->cap; i++) m->ids[i] = NO_CHUNK;
    m->count = 0;
    for (size_t i = 0; i < old_cap; i++)
      if (old_ids[i] != NO_CHUNK) chunk_insert(m, old_ids[i], old_chunks[i]);
    free(old_ids);
    free(old_chunks);
  }
  size_t i = chunk_slot(id, m->cap);
  while (m->ids[i] != NO_CHUNK) i = (i + 1) & (m->cap - 1);
  m->ids[i] = id;
  m->chunks[i] = c;
  m->count++;
}

/* The chunk holding page `pfn`, through the one-entry cache (which a miss that finds nothing leaves alone). */
static inline chunk_t *chunk_for(memory_t *m, uint64_t pfn, int create) {
  uint64_t id = pfn / CHUNK_PAGES;
  if (id == m->last_id) return m->last;
  chunk_t *c = chunk_find(m, id);
  if (!c) {
    if (!create) return NULL;
    c = xcalloc(1, sizeof *c);
    chunk_insert(m, id, c);
  }
  m->last_id = id;
  m->last = c;
  return c;
}

/* The page holding `addr`, or NULL when nothing was ever written there (it reads as zeros). */
static inline const uint32_t *mem_page_for_read(memory_t *m, uint64_t addr) {
  uint64_t pfn = addr >> 12;
  chunk_t *c = chunk_for(m, pfn, 0);
  return c ? c->pages[pfn & (CHUNK_PAGES - 1)] : NULL;
}

static inline uint64_t mem_read64(memory_t *m, uint64_t addr) {
  const uint32_t *p = mem_page_for_read(m, addr);
  if (!p) return 0;
  uint64_t v;
  memcpy(&v, (const char *)p + (addr & 0xff8), 8);
  return v;
}

/* An entry of `qwords` 64-bit words, aligned to its size, so it never crosses a page: one page lookup. */
static inline void mem_read_entry(memory_t *m, uint64_t addr, uint64_t *out, unsigned qwords) {
  const uint32_t *p = mem_page_for_read(m, addr);
  if (p) memcpy(out, (const char *)p + (addr & 0xff8), 8 * qwords);
  else memset(out, 0, 8 * qwords);
}

static uint32_t *mem_page_for_write(memory_t *m, uint64_t addr) {
  uint64_t pfn = addr >> 12;
  chunk_t *c = chunk_for(m, pfn, 1);
  uint32_t **slot = &c->pages[pfn & (CHUNK_PAGES - 1)];
  if (!*slot) {
    if (m->slab_used == SLAB_PAGES) {
      m->slab = xcalloc(SLAB_PAGES, PAGE_SIZE);
      m->slab_used = 0;
    }
    *slot = m->slab + (size_t)m->slab_used++ * (PAGE_SIZE / 4);
    m->populated++;
  }
  return *slot;
}

static void mem_write64(memory_t *m, uint64_t addr, uint64_t v) {
  uint32_t *p = mem_page_for_write(m, addr);
  memcpy((char *)p + (addr & 0xff8), &v, 8);
  m->write_count++;
}

/* A table page: the next page of the table region. It stays unpopulated (zero) until written. */
static uint64_t mem_alloc_page(memory_t *m) {
  uint64_t a = m->next_table;
  m->next_table += PAGE_SIZE;
  return a;
}

#endif
