/*
 * Native twin of bench/vtd-translate.bench.ts: the same VT-d translations, over the same tables in the same
 * simulated-memory layout (memory.h), in C compiled with -O2. It is the physical limit the model's hot path
 * is compared against ("*_vs_native" figures): what a translation costs when the work is exactly what the
 * hardware does and nothing else. Written from the VT-d specification and src/core/vtd/{walk,unit,caches}.ts.
 *
 * The set-up mirrors the JavaScript benchmark: a scalable-mode root table, context table, PASID directory
 * and PASID table at the bottom of the table region; 1 GiB of IOVA mapped as 4 KiB pages (IOVA x -> HPA
 * 0x1_0000_0000 + x) by a 4-level second-level table built page by page as IoPageTable.map builds it; for
 * nesting, a 4-level first-level table mapping IOVA x -> GPA 0x2_0000_0000 + x whose pages are identity
 * mapped by a 4-level second level that also maps GPA 0x2_0000_0000 + x -> HPA 0x3_0000_0000 + x.
 * 65,536 addresses from xorshift32 seeded with 7: page = next() % 262144, offset = next() & 0xff8.
 *
 * Figures (ns per translation, JSON lines on stdout; `reads` = 64-bit table reads per translation):
 *   native.sl4_walk                  the 4-level second-level walk alone (4 reads), through the chunk table
 *   native.sl4_walk_flat             the same walk over one flat array of table memory (no sparse memory
 *                                    could do this; it shows what the chunk lookup costs)
 *   native.sl4_translate_nocache     a whole caches-off translation, as unit.translate does it: root entry,
 *                                    scalable context entry, PASID directory and PASID entry read and
 *                                    checked (reserved bits, capabilities), then the walk
 *   native.nested_4over4_translate_nocache   the same for PGTT = 3: structures + 24 paging reads
 *   native.iotlb_hit                 a cached translation: context cache, PASID cache, IOTLB hash lookup by
 *                                    (DID/PASID bucket, page number), permission and staleness checks
 * Before timing it checks known translations and exits 1 if one is wrong. `vtd-translate sl|iotlb|nested`
 * measures one group of figures (the benchmark measures each right before its JavaScript counterpart).
 */
#include "measure.h"
#include "memory.h"

#define GIB 0x40000000ull
#define PAGES (GIB / PAGE_SIZE)
#define NADDR 65536u
#define SID 0x0010u
#define ADDR_MASK 0x000ffffffffff000ull /* bits 51:12 */
#define BITS(msb, lsb) ((~0ull >> (63 - (msb))) & ~((1ull << (lsb)) - 1))

/* Permission bits of a translation, as the model's Perm. */
enum { P_R = 1, P_W = 2, P_X = 4, P_U = 8 };

/* Second-level entry bits; first-level entry bits. */
enum { SL_R = 1, SL_W = 2, SL_PS = 0x80 };
enum { FL_P = 1, FL_RW = 2, FL_US = 4, FL_A = 0x20, FL_D = 0x40, FL_PS = 0x80 };
#define FL_XD (1ull << 63)

/* Reserved bits of the structures (VT-d spec chapter 9), per 64-bit word. */
static const uint64_t ROOT_RSV = BITS(11, 1) | BITS(63, 52);
static const uint64_t CTX_RSV[4] = {BITS(8, 5) | BITS(63, 52), BITS(63, 21), ~0ull, ~0ull};
static const uint64_t DIR_RSV = BITS(11, 2) | BITS(63, 52);
static const uint64_t PASID_RSV[8] = {BITS(11, 10) | BITS(63, 52), BITS(22, 16), BITS(11, 8) | BITS(63, 52), ~0ull, ~0ull, ~0ull, ~0ull, ~0ull};

/* Fault codes of a second-level walk by situation (scalable mode, and the two nested table cases). */
typedef struct sl_codes {
  uint8_t access, not_present_read, not_present_write, no_read, no_write, reserved, entry_beyond, beyond;
} sl_codes_t;
static const sl_codes_t SM_SL = {0x78, 0x79, 0x79, 0x86, 0x85, 0x7a, 0x84, 0x83};
static const sl_codes_t NESTED_TOP = {0x78, 0x75, 0x77, 0x75, 0x77, 0x7a, 0x84, 0x74};
static const sl_codes_t NESTED_TABLE = {0x78, 0x76, 0x77, 0x76, 0x77, 0x7a, 0x84, 0x74};

/* The unit's capabilities that the checks consult (the model's defaults for this platform). */
typedef struct unit {
  memory_t *mem;
  uint64_t root_table;
  int enabled;
  unsigned sagaw, mgaw, pss;
  int ecap_dt, ecap_pasid, ecap_prs, ecap_slads, ecap_ers, flts, slts, nest, pt, fl5lp;
  int large2m, large1g;
} unit_t;

typedef struct walk {
  uint64_t output;
  uint64_t size;
  unsigned perms;
  unsigned reads;
  unsigned fault;
} walk_t;

static inline int readable(const memory_t *m, uint64_t table) {
  /* The model: below 2^HAW and, only when memory has holes, outside them (this memory has none). */
  return table < m->limit && !m->has_holes;
}

static inline int fail(walk_t *w, unsigned code) {
  w->fault = code;
  return 0;
}

/* ---- walks ---- */

/* Second-level walk of page `vpn` from `table` (the model's Walker.secondLevel for a read or write). */
static int sl_walk(memory_t *m, const unit_t *u, uint64_t table, int levels, uint64_t vpn, unsigned offset, unsigned need, const sl_codes_t *codes, walk_t *w) {
  unsigned perms = P_R | P_W | P_X | P_U;
  for (int level = levels; level >= 1; level--) {
    uint64_t entry_addr = table + ((vpn >> (9 * (level - 1))) & 511) * 8;
    if (!readable(m, table)) return fail(w, codes->access);
    uint64_t e = mem_read64(m, entry_addr);
    w->reads++;
    if ((e & (SL_R | SL_W)) == 0) return fail(w, need & P_W ? codes->not_present_write : codes->not_present_read);
    uint64_t next = e & ADDR_MASK;
    int large = level > 1 && (e & SL_PS);
    if (next >= m->limit) return fail(w, codes->entry_beyond);
    if (large) {
      uint64_t align = PAGE_SIZE << (9 * (level - 1));
      if (level >= 4 || (level == 3 && !u->large1g) || (level == 2 && !u->large2m) || next % align) return fail(w, codes->reserved);
    }
    perms &= (unsigned)(e & 7) | P_U;
    if (level == 1 || large) {
      unsigned shift = 9 * (level - 1);
      unsigned missing = need & ~perms & (P_R | P_W | P_X);
      if (missing) return fail(w, missing & P_W ? codes->no_write : codes->no_read);
      w->size = PAGE_SIZE << shift;
      w->output = next + ((vpn & ((1ull << shift) - 1)) << 12) + offset;
      w->perms = perms;
      w->fault = 0;
      return 1;
    }
    table = next;
  }
  return fail(w, codes->reserved);
}

/* The same walk over one flat array holding the table region [base, base + bytes). */
static int sl_walk_flat(const uint64_t *flat, uint64_t base, uint64_t bytes, uint64_t limit, uint64_t table, int levels, uint64_t vpn, unsigned offset, unsigned need, walk_t *w) {
  unsigned perms = P_R | P_W | P_X | P_U;
  for (int level = levels; level >= 1; level--) {
    uint64_t entry_addr = table + ((vpn >> (9 * (level - 1))) & 511) * 8;
    uint64_t e = entry_addr - base < bytes ? flat[(entry_addr - base) >> 3] : 0;
    w->reads++;
    if ((e & (SL_R | SL_W)) == 0) return fail(w, SM_SL.not_present_read);
    uint64_t next = e & ADDR_MASK;
    if (next >= limit) return fail(w, SM_SL.entry_beyond);
    if (level > 1 && (e & SL_PS)) return fail(w, SM_SL.reserved); /* no large pages in this table */
    perms &= (unsigned)(e & 7) | P_U;
    if (level == 1) {
      if (need & ~perms & (P_R | P_W)) return fail(w, SM_SL.no_read);
      w->size = PAGE_SIZE;
      w->output = next + offset;
      w->perms = perms;
      w->fault = 0;
      return 1;
    }
    table = next;
  }
  return fail(w, SM_SL.reserved);
}

/* The second-level translation of a first-level table's guest-physical address (nested walks). */
static inline int nested_table(memory_t *m, const unit_t *u, uint64_t slptptr, unsigned sl_width, uint64_t gpa, int top, uint64_t *hpa, walk_t *w) {
  const sl_codes_t *codes = top ? &NESTED_TOP : &NESTED_TABLE;
  if (gpa >> sl_width) return fail(w, codes->beyond);
  walk_t t = {0};
  int ok = sl_walk(m, u, slptptr, 4, gpa >> 12, (unsigned)(gpa & 0xfff), P_R, codes, &t);
  w->reads += t.reads;
  if (!ok) return fail(w, t.fault);
  *hpa = t.output;
  return 1;
}

/*
 * Nested 4-level first level over a 4-level second level (the model's nestedWalk with Walker.firstLevel),
 * for a user-mode request without execute: each first-level table pointer and the output are translated.
 */
static int nested_walk(memory_t *m, const unit_t *u, uint64_t flptptr, uint64_t slptptr, unsigned sl_width, uint64_t vpn, unsigned offset, unsigned need, walk_t *w) {
  unsigned perms = P_R | P_W | P_X | P_U;
  uint64_t table = flptptr;
  uint64_t gpa = 0, fl_size = 0;
  for (int level = 4; level >= 1; level--) {
    uint64_t hpa;
    if (!nested_table(m, u, slptptr, sl_width, table, level == 4, &hpa, w)) return 0;
    table = hpa;
    uint64_t entry_addr = table + ((vpn >> (9 * (level - 1))) & 511) * 8;
    if (!readable(m, table)) return fail(w, level == 4 ? 0x73 : 0x70);
    uint64_t e = mem_read64(m, entry_addr);
    w->reads++;
    if (!(e & FL_P)) return fail(w, 0x71);
    uint64_t next = e & ADDR_MASK;
    int large = level > 1 && (e & FL_PS);
    if (large) {
      uint64_t align = PAGE_SIZE << (9 * (level - 1));
      if (level >= 4 || (level == 3 && !u->large1g) || (next % align) - (next % 0x2000)) return fail(w, 0x72);
    }
    if (!(e & FL_RW)) perms &= ~(unsigned)P_W;
    if (!(e & FL_US)) perms &= ~(unsigned)P_U;
    if (e & FL_XD) perms &= ~(unsigned)P_X;
    /* The tables carry A (and D on writable leaves), as Linux writes them: no A/D update to make. */
    if (!(e & FL_A)) return fail(w, 0x90);
    if (level == 1 || large) {
      unsigned shift = 9 * (level - 1);
      fl_size = PAGE_SIZE << shift;
      if (!(perms & P_U)) return fail(w, 0x81);
      if ((need & P_W) && !(perms & P_W)) return fail(w, 0x85);
      gpa = (next & ~(fl_size - 1)) + ((vpn & ((1ull << shift) - 1)) << 12) + offset;
      break;
    }
    table = next;
  }
  if (gpa >> sl_width) return fail(w, 0x79);
  unsigned fl_perms = perms;
  if (!sl_walk(m, u, slptptr, 4, gpa >> 12, (unsigned)(gpa & 0xfff), need, &SM_SL, w)) return 0;
  if (fl_size < w->size) w->size = fl_size;
  w->perms = fl_perms & (w->perms | P_U);
  return 1;
}

/* ---- context and PASID entries ---- */

typedef struct context {
  int valid;
  uint64_t verified_at;
  uint64_t words[4];
  uint64_t pasid_dir;
  unsigned pdts, rid_pasid;
  int paside;
  /* The PASID-cache entry this context last resolved. */
  unsigned last_pasid;
  struct pasid_entry *last_pe;
} context_t;

typedef struct iotlb_bucket iotlb_bucket_t;

typedef struct pasid_entry {
  int valid;
  uint64_t verified_at;
  uint64_t words[8];
  unsigned pasid, pgtt, did, aw, flpm;
  uint64_t slptptr, flptptr;
  iotlb_bucket_t *bucket;
} pasid_entry_t;

/* The root and scalable-mode context entry of `sid`, read and checked; returns 0 or the fault reason. */
static unsigned load_context(memory_t *m, const unit_t *u, unsigned sid, context_t *c, walk_t *w) {
  unsigned bus = sid >> 8, devfn = sid & 0xff;
  if (!readable(m, u->root_table)) return 0x38;
  uint64_t root_addr = u->root_table + bus * 16;
  uint64_t root[2];
  mem_read_entry(m, root_addr, root, 2);
  w->reads++;
  uint64_t half = root[devfn >= 0x80];
  if (!(half & 1)) return 0x39;
  if ((root[0] | root[1]) & ROOT_RSV) return 0x3a;
  uint64_t ctp = half & ADDR_MASK;
  if (!readable(m, ctp)) return 0x40;
  uint64_t ctx_addr = ctp + (devfn & 0x7f) * 32;
  mem_read_entry(m, ctx_addr, c->words, 4);
  uint64_t bad = 0;
  for (int i = 0; i < 4; i++) bad |= c->words[i] & CTX_RSV[i];
  w->reads++;
  uint64_t q0 = c->words[0];
  if (!(q0 & 1)) return 0x41;
  if (bad) return 0x42;
  if (((q0 & 4) && !u->ecap_dt) || ((q0 & 8) && !u->ecap_pasid) || ((q0 & 16) && !u->ecap_prs)) return 0x42;
  c->pdts = (q0 >> 9) & 7;
  if (u->ecap_pasid && c->pdts + 13 > u->pss + 1) return 0x43;
  c->paside = (q0 & 8) != 0;
  c->pasid_dir = q0 & ADDR_MASK;
  c->rid_pasid = c->words[1] & 0xfffff;
  c->valid = 1;
  c->verified_at = m->write_count;
  c->last_pe = NULL;
  return 0;
}

/* The PASID directory and PASID entry of `pasid` under context `c`, read and checked. */
static unsigned load_pasid(memory_t *m, const unit_t *u, const context_t *c, unsigned pasid, pasid_entry_t *p, walk_t *w) {
  if (!readable(m, c->pasid_dir)) return 0x50;
  uint64_t dir = mem_read64(m, c->pasid_dir + (pasid / 64) * 8);
  w->reads++;
  if (!(dir & 1)) return 0x51;
  if (dir & DIR_RSV) return 0x52;
  uint64_t tbl = dir & ADDR_MASK;
  if (!readable(m, tbl)) return 0x58;
  uint64_t entry_addr = tbl + (pasid & 63) * 64;
  mem_read_entry(m, entry_addr, p->words, 8);
  uint64_t bad = 0;
  for (int i = 0; i < 8; i++) bad |= p->words[i] & PASID_RSV[i];
  w->reads++;
  uint64_t q0 = p->words[0], q2 = p->words[2];
  if (!(q0 & 1)) return 0x59;
  if (bad) return 0x5a;
  p->pgtt = (q0 >> 6) & 7;
  p->aw = (q0 >> 2) & 7;
  p->flpm = (q2 >> 2) & 3;
  int supported = p->pgtt == 1 ? u->flts : p->pgtt == 2 ? u->slts : p->pgtt == 3 ? u->nest : p->pgtt == 4 ? u->pt : 0;
  if (!supported) return 0x5b;
  if ((p->pgtt == 2 || p->pgtt == 3) && (p->aw < 1 || p->aw > 3 || !((u->sagaw >> p->aw) & 1))) return 0x5b;
  if ((p->pgtt == 1 || p->pgtt == 3) && (p->flpm > 1 || (p->flpm == 1 && !u->fl5lp))) return 0x5b;
  if ((q0 & 0x200) && !u->ecap_slads) return 0x5a;
  if (((q0 & 0x20) || (q2 & 2)) && !u->ecap_ers) return 0x5a;
  p->pasid = pasid;
  p->did = p->words[1] & 0xffff;
  p->slptptr = q0 & ADDR_MASK;
  p->flptptr = q2 & ADDR_MASK;
  p->valid = 1;
  p->verified_at = m->write_count;
  p->bucket = NULL;
  return 0;
}

typedef struct request {
  unsigned sid;
  int has_pasid;
  unsigned pasid;
  uint64_t addr;
  int write;
} request_t;

static inline int sl_width(const unit_t *u, unsigned aw) {
  unsigned width = 30 + 9 * aw;
  return width < u->mgaw + 1 ? (int)width : (int)u->mgaw + 1;
}

static inline int interrupt_window(uint64_t out) {
  return out >= 0xfee00000ull && out <= 0xfeefffffull;
}

/* A caches-off translation (the model's run() with caching off): structures, then the walk. */
static int translate_nocache(memory_t *m, const unit_t *u, const request_t *q, walk_t *w) {
  w->reads = 0;
  if (!u->enabled) {
    w->output = q->addr;
    return 1;
  }
  context_t c;
  unsigned f = load_context(m, u, q->sid, &c, w);
  if (f) return fail(w, f);
  if (q->has_pasid && !c.paside) return fail(w, 0x45);
  unsigned pasid = q->has_pasid ? q->pasid : c.rid_pasid;
  if (pasid >= 1u << (c.pdts + 13)) return fail(w, q->has_pasid ? 0x46 : 0x48);
  pasid_entry_t p;
  f = load_pasid(m, u, &c, pasid, &p, w);
  if (f) return fail(w, f);
  unsigned need = q->write ? P_W : P_R;
  unsigned width = sl_width(u, p.aw);
  int ok;
  if (p.pgtt == 2) {
    if (q->addr >> width) return fail(w, 0x83);
    if (!readable(m, p.slptptr)) return fail(w, 0x7b);
    ok = sl_walk(m, u, p.slptptr, (int)p.aw + 2, (q->addr >> 12) & 0xffffffffffull, (unsigned)(q->addr & 0xfff), need, &SM_SL, w);
  } else if (p.pgtt == 3) {
    uint64_t top = q->addr >> 47;
    if (top != 0 && top != 0x1ffff) return fail(w, 0x80);
    if (!readable(m, p.slptptr)) return fail(w, 0x7b);
    ok = nested_walk(m, u, p.flptptr, p.slptptr, width, (q->addr >> 12) & 0xfffffffffull, (unsigned)(q->addr & 0xfff), need, w);
  } else {
    return fail(w, 0x5b); /* first-level only and pass-through are not benchmarked */
  }
  if (ok && interrupt_window(w->output)) return fail(w, 0x87);
  return ok;
}

/* ---- IOTLB ---- */

/* One cached translation; entries sit in the bucket's open-addressed table, keyed by page number. */
typedef struct tlb_entry {
  uint64_t vpn; /* UINT64_MAX: empty slot */
  uint64_t output;
  uint64_t verified_at;
  uint8_t size_shift; /* log2 of the page size */
  uint8_t perms;
  uint8_t fault;
  uint8_t levels;
  uint8_t valid;
} tlb_entry_t; /* 32 bytes */

typedef struct tlb_table {
  tlb_entry_t *slots;
  size_t cap;
  size_t count;
} tlb_table_t;

/*
 * All entries with one tag: (DID) for second-level translations, (DID, PASID) for first-level and nested
 * ones, as the hardware tags them; 4 KiB, 2 MiB and 1 GiB leaves in separate tables, as the model keeps them.
 */
struct iotlb_bucket {
  uint64_t tag;
  tlb_table_t small, mid, big;
};

typedef struct iotlb {
  iotlb_bucket_t *buckets[16];
  unsigned nbuckets;
} iotlb_t;

/* (mode, DID, PASID or -1) as one number, as Iotlb.tag: mode * 2^37 + DID * 2^21 + PASID + 1. */
static uint64_t iotlb_tag(unsigned mode, unsigned did, int pasid) {
  return (uint64_t)mode * (1ull << 37) + (uint64_t)did * (1ull << 21) + (uint64_t)(pasid + 1);
}

static iotlb_bucket_t *iotlb_bucket(iotlb_t *t, unsigned did, unsigned pasid, unsigned mode) {
  int tag_pasid = mode == 1 || mode == 2 ? (int)pasid : -1;
  uint64_t tag = iotlb_tag(mode, did, tag_pasid);
  for (unsigned i = 0; i < t->nbuckets; i++)
    if (t->buckets[i]->tag == tag) return t->buckets[i];
  check(t->nbuckets < 16, "too many IOTLB buckets");
  iotlb_bucket_t *b = xcalloc(1, sizeof *b);
  b->tag = tag;
  t->buckets[t->nbuckets++] = b;
  return b;
}

static inline size_t vpn_slot(uint64_t vpn, size_t cap) {
  return (size_t)((vpn * 0x9e3779b97f4a7c15ull) >> 32) & (cap - 1);
}

static void tlb_table_init(tlb_table_t *t, size_t cap) {
  t->cap = cap;
  t->count = 0;
  t->slots = xcalloc(cap, sizeof *t->slots);
  for (size_t i = 0; i < cap; i++) t->slots[i].vpn = UINT64_MAX;
}

static inline tlb_entry_t *tlb_find(const tlb_table_t *t, uint64_t vpn) {
  if (t->count == 0) return NULL;
  for (size_t i = vpn_slot(vpn, t->cap);; i = (i + 1) & (t->cap - 1)) {
    tlb_entry_t *e = &t->slots[i];
    if (e->vpn == vpn) return e;
    if (e->vpn == UINT64_MAX) return NULL;
  }
}

static void tlb_insert(tlb_table_t *t, const tlb_entry_t *e) {
  check(2 * (t->count + 1) <= t->cap, "IOTLB table full");
  size_t i = vpn_slot(e->vpn, t->cap);
  while (t->slots[i].vpn != UINT64_MAX && t->slots[i].vpn != e->vpn) i = (i + 1) & (t->cap - 1);
  if (t->slots[i].vpn == UINT64_MAX) t->count++;
  t->slots[i] = *e;
}

static inline tlb_entry_t *lookup_tlb(const iotlb_bucket_t *b, uint64_t vpn) {
  tlb_entry_t *e = tlb_find(&b->small, vpn);
  if (e) return e;
  if (b->mid.count) {
    e = tlb_find(&b->mid, vpn >> 9);
    if (e) return e;
  }
  if (b->big.count) return tlb_find(&b->big, vpn >> 18);
  return NULL;
}

typedef struct cached_unit {
  const unit_t *u;
  memory_t *m;
  context_t *ctx_cache[65536];
  pasid_entry_t *pasid_pool;
  unsigned pasid_used;
  iotlb_t iotlb;
} cached_unit_t;

/*
 * A translation with caches on, second-level PASID entries only (what the IOTLB benchmark uses): context
 * cache by SID, PASID cache through the context's last-used entry, IOTLB by bucket and page number; a miss
 * walks and fills. Cached entries are trusted while memory's write count has not moved (the model re-verifies
 * them against memory when it has; this benchmark writes nothing after the fill).
 */
static int translate_cached(cached_unit_t *cu, const request_t *q, walk_t *w) {
  memory_t *m = cu->m;
  const unit_t *u = cu->u;
  w->reads = 0;
  context_t *c = cu->ctx_cache[q->sid];
  if (!c || !c->valid || c->verified_at != m->write_count) {
    if (!c) c = cu->ctx_cache[q->sid] = xcalloc(1, sizeof *c);
    unsigned f = load_context(m, u, q->sid, c, w);
    if (f) return fail(w, f);
  }
  if (q->has_pasid && !c->paside) return fail(w, 0x45);
  unsigned pasid = q->has_pasid ? q->pasid : c->rid_pasid;
  if (pasid >= 1u << (c->pdts + 13)) return fail(w, q->has_pasid ? 0x46 : 0x48);
  pasid_entry_t *p = c->last_pe && c->last_pasid == pasid ? c->last_pe : NULL;
  if (!p || !p->valid || p->verified_at != m->write_count) {
    check(cu->pasid_used < 16, "PASID cache full");
    p = &cu->pasid_pool[cu->pasid_used++];
    unsigned f = load_pasid(m, u, c, pasid, p, w);
    if (f) return fail(w, f);
    c->last_pasid = pasid;
    c->last_pe = p;
  }
  check(p->pgtt == 2, "the IOTLB benchmark translates second-level PASID entries");
  if (q->addr >> sl_width(u, p->aw)) return fail(w, 0x83);
  if (!p->bucket) p->bucket = iotlb_bucket(&cu->iotlb, p->did, p->pasid, 0);
  iotlb_bucket_t *b = p->bucket;
  uint64_t vpn = (q->addr >> 12) & 0xffffffffffull;
  unsigned offset = (unsigned)(q->addr & 0xfff);
  unsigned need = q->write ? P_W : P_R;
  tlb_entry_t *e = lookup_tlb(b, vpn);
  if (e && e->valid && (e->fault || (e->perms & need) == need) && e->verified_at == m->write_count) {
    if (e->fault) return fail(w, e->fault);
    uint64_t out = e->output + ((vpn & ((1ull << (e->size_shift - 12)) - 1)) << 12) + offset;
    if (interrupt_window(out)) return fail(w, 0x87);
    w->output = out;
    w->size = 1ull << e->size_shift;
    w->perms = e->perms;
    w->fault = 0;
    return 1;
  }
  if (!readable(m, p->slptptr)) return fail(w, 0x7b);
  if (!sl_walk(m, u, p->slptptr, (int)p->aw + 2, vpn, offset, need, &SM_SL, w)) return 0;
  uint8_t shift = w->size == PAGE_SIZE ? 12 : w->size == 0x200000 ? 21 : 30;
  tlb_entry_t fill = {vpn >> (shift - 12), w->output - offset - ((vpn & ((1ull << (shift - 12)) - 1)) << 12), m->write_count, shift, (uint8_t)w->perms, 0, (uint8_t)w->reads, 1};
  tlb_insert(w->size == PAGE_SIZE ? &b->small : w->size == 0x200000 ? &b->mid : &b->big, &fill);
  return 1;
}

/* ---- building the tables ---- */

/* Maps [iova, iova + size) -> [pa, ...) as 4 KiB pages, creating tables top-down as IoPageTable.map does. */
static void map_4k(memory_t *m, uint64_t root, int first_level, uint64_t iova, uint64_t pa, uint64_t size) {
  uint64_t non_leaf = first_level ? FL_P | FL_RW | FL_US | FL_A : SL_R | SL_W;
  uint64_t leaf = first_level ? FL_P | FL_RW | FL_US | FL_A | FL_D : SL_R | SL_W;
  for (uint64_t off = 0; off < size; off += PAGE_SIZE) {
    uint64_t vpn = (iova + off) >> 12;
    uint64_t table = root;
    for (int level = 4; level > 1; level--) {
      uint64_t entry = table + ((vpn >> (9 * (level - 1))) & 511) * 8;
      uint64_t e = mem_read64(m, entry);
      if (!(e & 1) && !(e & 2)) {
        uint64_t next = mem_alloc_page(m);
        mem_write64(m, entry, next | non_leaf);
        table = next;
      } else {
        table = e & ADDR_MASK;
      }
    }
    mem_write64(m, table + (vpn & 511) * 8, (pa + off) | leaf);
  }
}

typedef struct platform {
  memory_t mem;
  unit_t unit;
  uint64_t pasid_table;
} platform_t;

/* Root, context, PASID directory and PASID table for SID 00:02.0, as the JS benchmark's platform(). */
static void platform_init(platform_t *p) {
  memory_t *m = &p->mem;
  mem_init(m, 46);
  unit_t *u = &p->unit;
  memset(u, 0, sizeof *u);
  u->mem = m;
  u->enabled = 1;
  u->sagaw = 1u << 2;
  u->mgaw = 47;
  u->pss = 19;
  u->ecap_pasid = u->flts = u->slts = u->nest = u->pt = 1;
  u->large2m = 1;
  uint64_t root = mem_alloc_page(m), ctx = mem_alloc_page(m), dir = mem_alloc_page(m);
  p->pasid_table = mem_alloc_page(m);
  u->root_table = root;
  mem_write64(m, root + (SID >> 8) * 16, ctx | 1);                                 /* LP, LCTP */
  mem_write64(m, ctx + ((SID & 0xff) & 0x7f) * 32, dir | (7u << 9) | 8 | 1);      /* P, PASIDE, PDTS 7 */
  mem_write64(m, dir, p->pasid_table | 1);                                        /* P */
}

/* A PASID entry: P, AW, PGTT, SLPTPTR; DID; FLPTPTR. */
static void write_pasid_entry(memory_t *m, uint64_t table, unsigned pasid, unsigned pgtt, unsigned did, uint64_t slptptr, uint64_t flptptr) {
  uint64_t a = table + pasid * 64;
  mem_write64(m, a, slptptr | ((uint64_t)pgtt << 6) | (2u << 2) | 1);
  mem_write64(m, a + 8, did);
  mem_write64(m, a + 16, flptptr);
}

/* ---- measured rounds ---- */

typedef struct bench {
  platform_t *p;
  cached_unit_t *cu;
  request_t reqs[NADDR];
  uint64_t root;
  const uint64_t *flat;
  uint64_t flat_base, flat_bytes;
} bench_t;

static uint64_t round_walk(void *ctx, unsigned ops) {
  bench_t *b = ctx;
  uint64_t acc = 0;
  for (unsigned i = 0; i < ops; i++) {
    const request_t *q = &b->reqs[i & (NADDR - 1)];
    walk_t w = {0};
    sl_walk(&b->p->mem, &b->p->unit, b->root, 4, q->addr >> 12, (unsigned)(q->addr & 0xfff), P_R, &SM_SL, &w);
    acc += w.output;
  }
  return acc;
}

static uint64_t round_walk_flat(void *ctx, unsigned ops) {
  bench_t *b = ctx;
  uint64_t acc = 0;
  for (unsigned i = 0; i < ops; i++) {
    const request_t *q = &b->reqs[i & (NADDR - 1)];
    walk_t w = {0};
    sl_walk_flat(b->flat, b->flat_base, b->flat_bytes, b->p->mem.limit, b->root, 4, q->addr >> 12, (unsigned)(q->addr & 0xfff), P_R, &w);
    acc += w.output;
  }
  return acc;
}

static uint64_t round_translate(void *ctx, unsigned ops) {
  bench_t *b = ctx;
  uint64_t acc = 0;
  for (unsigned i = 0; i < ops; i++) {
    walk_t w;
    translate_nocache(&b->p->mem, &b->p->unit, &b->reqs[i & (NADDR - 1)], &w);
    acc += w.output + w.reads;
  }
  return acc;
}

static uint64_t round_cached(void *ctx, unsigned ops) {
  bench_t *b = ctx;
  uint64_t acc = 0;
  for (unsigned i = 0; i < ops; i++) {
    walk_t w;
    translate_cached(b->cu, &b->reqs[i & (NADDR - 1)], &w);
    acc += w.output + w.reads;
  }
  return acc;
}

/* The 65,536 addresses of the JS benchmark's addresses(): rng(7), page then offset. */
static void addresses(request_t *reqs, unsigned pasid) {
  rng_t r = rng_seed(7);
  for (unsigned i = 0; i < NADDR; i++) {
    uint64_t page = rng_next(&r) % PAGES;
    uint64_t off = rng_next(&r) & 0xff8;
    reqs[i] = (request_t){SID, pasid != 0, pasid, page * PAGE_SIZE + off, 0};
  }
}

/* With an argument (sl, iotlb or nested) only that group of figures is measured, so a benchmark can measure
 * each right before its JavaScript counterpart, under the same machine load; without one, all of them. */
static const char *group;

static int want(const char *g) {
  return group == NULL || strcmp(group, g) == 0;
}

int main(int argc, char **argv) {
  static bench_t b;
  group = argc >= 2 ? argv[1] : NULL;
  if (argc > 2 || (group && strcmp(group, "sl") && strcmp(group, "iotlb") && strcmp(group, "nested"))) {
    fprintf(stderr, "usage: vtd-translate [sl|iotlb|nested]\n");
    return 2;
  }

  /* Second level: IOVA x -> 0x1_0000_0000 + x. */
  if (want("sl") || want("iotlb")) {
    static platform_t p;
    platform_init(&p);
    b.p = &p;
    b.root = mem_alloc_page(&p.mem);
    map_4k(&p.mem, b.root, 0, 0, 0x100000000ull, GIB);
    write_pasid_entry(&p.mem, p.pasid_table, 0, 2, 1, b.root, 0);
    addresses(b.reqs, 0);
    check(b.reqs[0].addr < GIB && (b.reqs[0].addr & 0xfff) % 8 == 0, "addresses inside the first GiB, 8-byte aligned");

    for (unsigned i = 0; i < 4; i++) {
      const request_t *q = &b.reqs[i * 9973];
      walk_t w = {0};
      check(sl_walk(&p.mem, &p.unit, b.root, 4, q->addr >> 12, q->addr & 0xfff, P_R, &SM_SL, &w) && w.output == 0x100000000ull + q->addr && w.reads == 4, "second-level walk output");
      check(translate_nocache(&p.mem, &p.unit, q, &w) && w.output == 0x100000000ull + q->addr && w.reads == 8, "caches-off translation output and reads");
    }
    walk_t w = {0};
    request_t beyond = {SID, 0, 0, GIB + 0x123000, 0};
    check(!translate_nocache(&p.mem, &p.unit, &beyond, &w) && w.fault == 0x79, "an unmapped page faults 0x79");

    /* The flat twin: all table memory from the root table to the last table page, in one array. */
    uint64_t base = p.unit.root_table, bytes = p.mem.next_table - base;
    uint64_t *flat = xcalloc(bytes / 8, 8);
    for (uint64_t a = base; a < base + bytes; a += 8) flat[(a - base) / 8] = mem_read64(&p.mem, a);
    b.flat = flat;
    b.flat_base = base;
    b.flat_bytes = bytes;
    w = (walk_t){0};
    check(sl_walk_flat(flat, base, bytes, p.mem.limit, b.root, 4, b.reqs[5].addr >> 12, b.reqs[5].addr & 0xfff, P_R, &w) && w.output == 0x100000000ull + b.reqs[5].addr, "flat walk output");

    if (want("sl")) {
      print_figure("native.sl4_walk", ns_per_op(round_walk, &b, 1u << 18), 4);
      print_figure("native.sl4_walk_flat", ns_per_op(round_walk_flat, &b, 1u << 18), 4);
      print_figure("native.sl4_translate_nocache", ns_per_op(round_translate, &b, 1u << 17), 8);
    }

    /* IOTLB: the same domain with caches on, filled by translating every address once. */
    if (want("iotlb")) {
      static cached_unit_t cu;
      cu.u = &p.unit;
      cu.m = &p.mem;
      cu.pasid_pool = xcalloc(16, sizeof *cu.pasid_pool);
      iotlb_bucket_t *bk = iotlb_bucket(&cu.iotlb, 1, 0, 0);
      tlb_table_init(&bk->small, 2 * NADDR); /* room for every address at load <= 1/2 */
      tlb_table_init(&bk->mid, 16);
      tlb_table_init(&bk->big, 16);
      b.cu = &cu;
      for (unsigned i = 0; i < NADDR; i++) translate_cached(&cu, &b.reqs[i], &w);
      for (unsigned i = 0; i < 4; i++) {
        const request_t *q = &b.reqs[i * 9973 + 1];
        check(translate_cached(&cu, q, &w) && w.reads == 0 && w.output == 0x100000000ull + q->addr, "IOTLB hit output");
      }
      print_figure("native.iotlb_hit", ns_per_op(round_cached, &b, 1u << 20), 0);
    }
  }

  /* Nested: first level IOVA x -> GPA 0x2_0000_0000 + x; second level identity over the first-level tables and
   * GPA 0x2_0000_0000 + x -> HPA 0x3_0000_0000 + x. */
  if (want("nested")) {
    static platform_t p;
    platform_init(&p);
    uint64_t s2 = mem_alloc_page(&p.mem);
    uint64_t s1 = mem_alloc_page(&p.mem);
    map_4k(&p.mem, s1, 1, 0, 0x200000000ull, GIB);
    uint64_t s1_end = p.mem.next_table;
    for (uint64_t t = s1; t < s1_end; t += PAGE_SIZE) map_4k(&p.mem, s2, 0, t, t, PAGE_SIZE);
    map_4k(&p.mem, s2, 0, 0x200000000ull, 0x300000000ull, GIB);
    write_pasid_entry(&p.mem, p.pasid_table, 1, 3, 2, s2, s1);
    b.p = &p;
    addresses(b.reqs, 1);
    for (unsigned i = 0; i < 4; i++) {
      const request_t *q = &b.reqs[i * 9973];
      walk_t w;
      check(translate_nocache(&p.mem, &p.unit, q, &w) && w.output == 0x300000000ull + q->addr && w.reads == 28, "nested translation output and reads (4 structures + 24)");
    }
    print_figure("native.nested_4over4_translate_nocache", ns_per_op(round_translate, &b, 1u << 16), 28);
  }
  return 0;
}
