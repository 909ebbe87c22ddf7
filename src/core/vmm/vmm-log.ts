/**
 * What the VMM layer did, step by step: every trap, replay, bind, PASID lookup and forwarded request, with
 * the side that did it. The seeds argue about exactly this (who looks up which PASID, in which direction,
 * on which path), so each step names it rather than leaving it to be inferred from table writes.
 */

import type { LookupSide, PasidLookup } from './pasid-trace';

/** Who acted: the guest kernel, the VMM (QEMU), the host IOMMU driver, the device model (VDCM), the CPU, the device. */
export type Side = LookupSide | 'device';

export interface VmmStep {
  readonly seq: number;
  readonly vm: string;
  readonly side: Side;
  /** e.g. `trap-descriptor`, `replay-map`, `bind-gpasid`, `iommufd-hwpt-alloc`, `inject-page-request`. */
  readonly action: string;
  readonly detail: string;
  /** The PASID on this hop, per namespace, when the step carries one. */
  readonly pasid?: { readonly guest?: number; readonly host?: number; readonly wire?: number };
  readonly lookup?: PasidLookup;
  /** Which interface ran, where there are several (seed-era bind vs iommufd nesting; invalidation choice a or b). */
  readonly path?: string;
}

/**
 * The steps, newest last. A long simulation keeps the last `limit` (100,000 by default): older ones are dropped
 * in batches and counted, so memory stays bounded however long a VM runs.
 */
export class VmmLog {
  readonly steps: VmmStep[] = [];
  /** Steps dropped from the front because the log reached its limit. */
  dropped = 0;
  private seq = 0;

  constructor(private readonly limit = 100_000) {}

  add(step: Omit<VmmStep, 'seq'>): VmmStep {
    const s = { seq: ++this.seq, ...step };
    this.steps.push(s);
    if (this.steps.length >= 2 * this.limit) {
      const n = this.steps.length - this.limit;
      this.steps.splice(0, n);
      this.dropped += n;
    }
    return s;
  }

  /** Steps after `seq` (for a caller that wants what one operation did). */
  since(seq: number): VmmStep[] {
    return this.steps.filter((s) => s.seq > seq);
  }

  get last(): number {
    return this.seq;
  }
}
