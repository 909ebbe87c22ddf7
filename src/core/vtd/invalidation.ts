import type { Iotlb, IotlbBucket } from './caches';
import type { ContextLookup } from './context-lookup';

/**
 * The cache invalidations both invalidation interfaces perform (the queue's descriptors and the register-based
 * CCMD and IOTLB registers), by the granularity encodings they share: 1 global, 2 domain-selective,
 * 3 device-selective (context cache) or page-selective (IOTLB).
 */

/**
 * Context-cache invalidation; returns the number of entries dropped. Domain-selective takes the entries
 * tagged with the DID; device-selective the SID under the function mask (FM masks the low 1, 2 or 3 bits of
 * the function number, for phantom functions) and the DID: "the domain-id (programmed in the context-entry
 * for this device) must be provided in the DID field", and CAIG 11 reports a "device-selective invalidation
 * performed using the source-ID and domain-ID specified by software" (the CCMD register's definition). So
 * a not-present entry cached under caching mode, tagged DID 0, goes only with DID 0. In scalable mode
 * context entries hold no DID and the hardware ignores the field ("The Domain-ID field of the Context-cache
 * Invalidate Descriptor is ignored by hardware when operating in scalable mode", Linux 6.12 pasid.c).
 */
export function invalidateContextCache(lookup: ContextLookup, g: number, did: number, sid: number, fm: number): number {
  const mask = fm === 0 ? 0xffff : fm === 1 ? 0xfffb : fm === 2 ? 0xfff9 : 0xfff8;
  const anyDid = lookup.scalable;
  return lookup.dropContexts((e) => g === 1 || ((anyDid || e.did === did) && (g === 2 || (e.sid & mask) === (sid & mask))));
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
