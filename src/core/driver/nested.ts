import type { AttachOptions } from './attach';
import type { DeviceInfo } from './device';
import type { Domain, IopfHandler, VtdS1 } from './domain';
import { fail, KernelError } from './errors';
import { type FlushOptions, linuxPsiAligned, psiFlushDescriptors, submitBatches } from './flush';
import type { KernelState } from './state';

/** Nested translation: user tables bound over a nest parent (seed 001) and the nested domain's cache invalidation. */
export class Nesting {
  constructor(private readonly k: KernelState) {}

  /**
   * iommu_bind_pgtable_pasid(parent, dev, addr, pasid): a nested domain for the user table, attached at
   * (RID, PASID). Binding creates a new reference to the parent: the attachment tree shows the PASID under
   * the parent domain, as the seed draws it.
   */
  bindPgtablePasid(parent: Domain, which: string | number | DeviceInfo, pgtblAddr: number, pasid: number, o: AttachOptions & { s1?: Partial<VtdS1>; iopfHandler?: IopfHandler } = {}): Domain {
    const nested = this.k.alloc.allocNestedDomain(parent, { sre: false, eafe: false, wpe: false, addrWidth: 48, ...o.s1, pgtblAddr }, { name: `${parent.name}-s1-${pasid}` });
    // The binder's fault handler (a VMM's): set before the attach, which enables IOPF for a domain that has one.
    if (o.iopfHandler) nested.iopfHandler = o.iopfHandler;
    try {
      this.k.attach.attachDevicePasid(nested, which, pasid, o);
    } catch (e) {
      this.k.alloc.freeDomain(nested);
      throw e;
    }
    return nested;
  }

  /** iommu_bind_pgtable(parent, dev, addr): the RID's translation becomes nested over the parent it is attached to. */
  bindPgtable(parent: Domain, which: string | number | DeviceInfo, pgtblAddr: number, o: AttachOptions & { s1?: Partial<VtdS1> } = {}): Domain {
    const dev = this.k.device(which);
    if (dev.ridDomain !== parent) fail('EINVAL', `${dev.name} is not attached to ${parent.name}`);
    const nested = this.k.alloc.allocNestedDomain(parent, { sre: false, eafe: false, wpe: false, addrWidth: 48, ...o.s1, pgtblAddr }, { name: `${parent.name}-s1-rid` });
    this.k.attach.attachDevice(nested, dev, o);
    return nested;
  }

  /**
   * intel_nested_cache_invalidate_user (HWPT_INVALIDATE, VTD_S1): entries {addr, npages, leaf}, each flushed
   * before the next is looked at. An unaligned address, or U64_MAX pages from a non-zero address, stops the
   * array (EINVAL); every other entry counts as handled and becomes cache_tag_flush_range(addr,
   * addr + (npages << 12) - 1, leaf) in the kernel's 64-bit arithmetic: U64_MAX pages from 0 is everything;
   * npages 0 makes the range end before it starts: from address 0 that end is ULONG_MAX (everything again),
   * elsewhere the kernel computes one page at `addr` (see linuxPsiAligned). `npages` is exact as a bigint; a
   * number of 2^64 or more means U64_MAX.
   */
  invalidateNested(nested: Domain, entries: readonly { addr: number; npages: number | bigint; leaf?: boolean }[], options: FlushOptions = {}): { handled: number; error?: KernelError } {
    if (nested.type !== 'nested') fail('EINVAL', `${nested.name} is not a nested domain`);
    const U64 = (1n << 64n) - 1n;
    let handled = 0;
    for (const e of entries) {
      const npages = typeof e.npages === 'bigint' ? e.npages & U64 : e.npages >= 2 ** 64 ? U64 : BigInt(e.npages);
      if (e.addr % 4096 !== 0 || (npages === U64 && e.addr !== 0)) return { handled, error: new KernelError('EINVAL', `invalidation entry ${handled}: address 0x${e.addr.toString(16)} is not page aligned, or U64_MAX pages start above 0`) };
      const start = BigInt(e.addr);
      const end = (start + ((npages << 12n) & U64) - 1n) & U64;
      const { addr, mask } = linuxPsiAligned(start, end);
      if (options.skipInvalidation !== true) submitBatches(psiFlushDescriptors(nested, addr, mask, e.leaf ?? false, options));
      handled++;
    }
    return { handled };
  }
}
