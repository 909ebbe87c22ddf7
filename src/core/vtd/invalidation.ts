import type { Iotlb, IotlbBucket } from './caches';
import type { ContextLookup } from './context-lookup';

/**
 * The cache invalidations both invalidation interfaces perform (the queue's descriptors and the register-based
 * CCMD and IOTLB registers), by the granularity encodings they share: 1 global, 2 domain-selective,
 * 3 device-selective (context cache) or page-selective (IOTLB).
 */

/** Context-cache invalidation; returns the number of entries dropped. */
export function invalidateContextCache(lookup: ContextLookup, g: number, did: number, sid: number, fm: number): number {
  // FM masks the low 1, 2 or 3 bits of the function number (phantom functions).
  const mask = fm === 0 ? 0xffff : fm === 1 ? 0xfffb : fm === 2 ? 0xfff9 : 0xfff8;
  return lookup.dropContexts((e) => g === 1 || (g === 2 ? lookup.scalable || e.did === did : (e.sid & mask) === (sid & mask)));
}

/** The pages a page-selective invalidation covers: 2^AM pages from ADDR (in 4 KiB pages), IH = leaf entries only. */
export function psiRange(addrPage: number, am: number, ih: number): { base: number; size: number; leafOnly: boolean } {
  return { base: addrPage * 4096, size: 4096 * 2 ** am, leafOnly: ih === 1 };
}

/**
 * IOTLB invalidation (second-level and nested entries of a domain, or everything): also drops the
 * paging-structure caches, except the page-selective form with IH = 1.
 */
export function invalidateIotlb(iotlb: Iotlb, g: number, did: number, range: ReturnType<typeof psiRange> | undefined): { iotlb: number; pwc: number } {
  return iotlb.invalidate((b: IotlbBucket) => g === 1 || (b.did === did && b.mode !== 'fl'), g === 3 ? range : undefined);
}
