import { DescType } from '../vtd/descriptors';
import type { VtdDescriptorEvent } from '../vtd/traps';
import { qemuInvDescType, type QemuTraceEvent } from './qemu-trace';
import type { VmDevice } from './vm';

/**
 * What QEMU traces when its vIOMMU processes a guest invalidation descriptor: `vtd_inv_desc` with the raw
 * words (vtd_process_inv_desc), then the handler's own event by type and granularity. `devices` are the
 * VM's devices the descriptor names (a device-selective context invalidation traces each one it matches).
 * `later`: also what QEMU after 7.2 traces (PASID-cache events, p-iotlb), see qemu-trace.ts.
 */
export function qemuDescriptorEvents(d: VtdDescriptorEvent, devices: readonly VmDevice[], later: boolean): QemuTraceEvent[] {
  const out: QemuTraceEvent[] = [];
  const type = qemuInvDescType(d.qwords[0]!.lo, { later });
  if (type) out.push({ event: 'vtd_inv_desc', type, hi: d.qwords[1]!, lo: d.qwords[0]! });
  const f = d.fields;
  if (d.type === DescType.CONTEXT_CACHE) {
    if (f.G === 1) out.push({ event: 'vtd_inv_desc_cc_global' });
    else if (f.G === 2) out.push({ event: 'vtd_inv_desc_cc_domain', domain: f.DID! });
    else if (f.G === 3) {
      out.push({ event: 'vtd_inv_desc_cc_devices', sid: f.SID!, fmask: f.FM! });
      for (const dev of devices) out.push({ event: 'vtd_inv_desc_cc_device', bus: dev.address.bus, dev: dev.address.device, fn: dev.address.fn });
    }
  } else if (d.type === DescType.IOTLB) {
    if (f.G === 1) out.push({ event: 'vtd_inv_desc_iotlb_global' });
    else if (f.G === 2) out.push({ event: 'vtd_inv_desc_iotlb_domain', domain: f.DID! });
    else if (f.G === 3) out.push({ event: 'vtd_inv_desc_iotlb_pages', domain: f.DID!, addr: f.ADDR! * 4096, mask: f.AM! });
  } else if (d.type === DescType.PASID_CACHE && later) {
    if (f.G === 3) out.push({ event: 'vtd_inv_desc_pasid_cache_gsi' });
    else if (f.G === 0) out.push({ event: 'vtd_inv_desc_pasid_cache_dsi', domain: f.DID! });
    else if (f.G === 1) out.push({ event: 'vtd_inv_desc_pasid_cache_psi', domain: f.DID!, pasid: f.PASID! });
  }
  return out;
}
