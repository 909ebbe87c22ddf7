// Records the invalidation descriptors the hardware processed while `fn` ran, as compact strings in the
// intel_iommu:qi_submit tracepoint's vocabulary, so tests can compare whole streams.
import type { HwEvent } from '../../src/core/hw/events';
import type { Machine } from '../../src/core/hw/machine';
import { DESC_NAMES, DESC_TRACE_NAMES } from '../../src/core/vtd/descriptors';

const SHORT = new Map(Object.entries(DESC_NAMES).map(([t, name]) => [name, DESC_TRACE_NAMES[Number(t)]!]));
const hex = (v: number) => '0x' + v.toString(16);

export function describe(e: Extract<HwEvent, { type: 'invalidation' }>): string {
  const f = e.fields as Record<string, number>;
  const name = SHORT.get(e.descriptorType) ?? e.descriptorType;
  const addr = f.ADDR !== undefined ? (f.ADDR >= 2 ** 51 - 1 ? 'ALL' : hex(f.ADDR * 4096)) : '';
  switch (name) {
    case 'cc_inv':
      return `cc_inv G=${f.G} DID=${f.DID} SID=${hex(f.SID!)} FM=${f.FM}`;
    case 'iotlb_inv':
      return f.G === 3 ? `iotlb_inv G=3 DID=${f.DID} ADDR=${addr} AM=${f.AM} IH=${f.IH}` : `iotlb_inv G=${f.G} DID=${f.DID}`;
    case 'p_iotlb_inv':
      return f.G === 3 ? `p_iotlb_inv G=3 DID=${f.DID} PASID=${f.PASID} ADDR=${addr} AM=${f.AM} IH=${f.IH}` : `p_iotlb_inv G=${f.G} DID=${f.DID} PASID=${f.PASID}`;
    case 'pc_inv':
      return `pc_inv G=${f.G} DID=${f.DID} PASID=${f.PASID}`;
    case 'dev_tlb_inv':
      return `dev_tlb_inv SID=${hex(f.SID!)} QDEP=${f.QDEP} ADDR=${addr} S=${f.S}`;
    case 'p_dev_tlb_inv':
      return `p_dev_tlb_inv SID=${hex(f.SID!)} PASID=${f.PASID} QDEP=${f.QDEP} ADDR=${addr} S=${f.S}`;
    case 'iec_inv':
      return f.G === 0 ? 'iec_inv G=0' : `iec_inv G=1 IIDX=${f.IIDX} IM=${f.IM}`;
    case 'inv_wait':
      return `inv_wait SW=${f.SW} FN=${f.FN} PD=${f.PD}`;
    case 'page_grp_resp':
      return `page_grp_resp RID=${hex(f.RID!)} PP=${f.PP} PASID=${f.PASID} PRGI=${f.PRGI} LPIG=${f.LPIG} RC=${f.RC}`;
    default:
      return `${name} ${JSON.stringify(f)}`;
  }
}

export function descriptorsDuring(machine: Machine, fn: () => void, options: { waits?: boolean } = {}): string[] {
  const seen: string[] = [];
  const stop = machine.events.subscribe((e) => {
    if (e.type === 'invalidation') seen.push(describe(e));
  });
  try {
    fn();
  } finally {
    stop();
  }
  return options.waits ? seen : seen.filter((s) => !s.startsWith('inv_wait'));
}
