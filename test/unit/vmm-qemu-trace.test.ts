import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { U64 } from '../../src/core/u64';
import { DescType, encodeDescriptor } from '../../src/core/vtd/descriptors';
import { qemu72FaultPasid, qemuFaultRecord } from '../../src/core/vmm/qemu-faults';
import {
  QEMU_TRACE_EVENTS,
  type QemuTraceEvent,
  type QemuTraceEventName,
  formatQemuTrace,
  formatQemuTraceLine,
  inQemu72,
  qemuInvDescType,
  qemuTraceDeclaration,
} from '../../src/core/vmm/qemu-trace';
import { decodeLogText } from '../../src/readers/log-decoder';
import type { LogEvent } from '../../src/readers/log-event';

// Ground truth: QEMU 7.2's hw/i386/trace-events (quoted below, the source of every format), and the real trace
// of QEMU 7.2.22 in test/fixtures/real-vm/custom612-legacy (its MANIFEST.txt: `-trace enable=vtd_*,file=...`,
// no `-msg timestamp=on`, so no pid@time prefix), with the dmesg and debugfs of the same run for the values.

const root = join(__dirname, '../../..');
const run = join(root, 'test/fixtures/real-vm/custom612-legacy');
const read = (name: string) => readFileSync(join(run, name), 'utf8');
const TRACE = read('qemu-vtd-trace.no-ir-storm.log');
const traceLines = TRACE.split('\n');
const traceLine = (n: number) => traceLines[n - 1]!;

/** Every vtd_* line of QEMU 7.2's hw/i386/trace-events, as the file writes it. */
const TRACE_EVENTS_7_2 = [
  'vtd_inv_desc(const char *type, uint64_t hi, uint64_t lo) "invalidate desc type %s high 0x%"PRIx64" low 0x%"PRIx64',
  'vtd_inv_desc_cc_domain(uint16_t domain) "context invalidate domain 0x%"PRIx16',
  'vtd_inv_desc_cc_global(void) "context invalidate globally"',
  'vtd_inv_desc_cc_device(uint8_t bus, uint8_t dev, uint8_t fn) "context invalidate device %02"PRIx8":%02"PRIx8".%02"PRIx8',
  'vtd_inv_desc_cc_devices(uint16_t sid, uint16_t fmask) "context invalidate devices sid 0x%"PRIx16" fmask 0x%"PRIx16',
  'vtd_inv_desc_iotlb_global(void) "iotlb invalidate global"',
  'vtd_inv_desc_iotlb_domain(uint16_t domain) "iotlb invalidate whole domain 0x%"PRIx16',
  'vtd_inv_desc_iotlb_pages(uint16_t domain, uint64_t addr, uint8_t mask) "iotlb invalidate domain 0x%"PRIx16" addr 0x%"PRIx64" mask 0x%"PRIx8',
  'vtd_inv_desc_iotlb_pasid_pages(uint16_t domain, uint64_t addr, uint8_t mask, uint32_t pasid) "iotlb invalidate domain 0x%"PRIx16" addr 0x%"PRIx64" mask 0x%"PRIx8" pasid 0x%"PRIx32',
  'vtd_inv_desc_iotlb_pasid(uint16_t domain, uint32_t pasid) "iotlb invalidate domain 0x%"PRIx16" pasid 0x%"PRIx32',
  'vtd_inv_desc_wait_sw(uint64_t addr, uint32_t data) "wait invalidate status write addr 0x%"PRIx64" data 0x%"PRIx32',
  'vtd_inv_desc_wait_irq(const char *msg) "%s"',
  'vtd_inv_desc_wait_write_fail(uint64_t hi, uint64_t lo) "write fail for wait desc hi 0x%"PRIx64" lo 0x%"PRIx64',
  'vtd_inv_desc_iec(uint32_t granularity, uint32_t index, uint32_t mask) "granularity 0x%"PRIx32" index 0x%"PRIx32" mask 0x%"PRIx32',
  'vtd_inv_qi_enable(bool enable) "enabled %d"',
  'vtd_inv_qi_setup(uint64_t addr, int size) "addr 0x%"PRIx64" size %d"',
  'vtd_inv_qi_head(uint16_t head) "read head %d"',
  'vtd_inv_qi_tail(uint16_t head) "write tail %d"',
  'vtd_inv_qi_fetch(void) ""',
  'vtd_context_cache_reset(void) ""',
  'vtd_re_not_present(uint8_t bus) "Root entry bus %"PRIu8" not present"',
  'vtd_ce_not_present(uint8_t bus, uint8_t devfn) "Context entry bus %"PRIu8" devfn %"PRIu8" not present"',
  'vtd_iotlb_page_hit(uint16_t sid, uint64_t addr, uint64_t slpte, uint16_t domain) "IOTLB page hit sid 0x%"PRIx16" iova 0x%"PRIx64" slpte 0x%"PRIx64" domain 0x%"PRIx16',
  'vtd_iotlb_page_update(uint16_t sid, uint64_t addr, uint64_t slpte, uint16_t domain) "IOTLB page update sid 0x%"PRIx16" iova 0x%"PRIx64" slpte 0x%"PRIx64" domain 0x%"PRIx16',
  'vtd_iotlb_cc_hit(uint8_t bus, uint8_t devfn, uint64_t high, uint64_t low, uint32_t gen) "IOTLB context hit bus 0x%"PRIx8" devfn 0x%"PRIx8" high 0x%"PRIx64" low 0x%"PRIx64" gen %"PRIu32',
  'vtd_iotlb_cc_update(uint8_t bus, uint8_t devfn, uint64_t high, uint64_t low, uint32_t gen1, uint32_t gen2) "IOTLB context update bus 0x%"PRIx8" devfn 0x%"PRIx8" high 0x%"PRIx64" low 0x%"PRIx64" gen %"PRIu32" -> gen %"PRIu32',
  'vtd_iotlb_reset(const char *reason) "IOTLB reset (reason: %s)"',
  'vtd_fault_disabled(void) "Fault processing disabled for context entry"',
  'vtd_replay_ce_valid(const char *mode, uint8_t bus, uint8_t dev, uint8_t fn, uint16_t domain, uint64_t hi, uint64_t lo) "%s: replay valid context device %02"PRIx8":%02"PRIx8".%02"PRIx8" domain 0x%"PRIx16" hi 0x%"PRIx64" lo 0x%"PRIx64',
  'vtd_replay_ce_invalid(uint8_t bus, uint8_t dev, uint8_t fn) "replay invalid context device %02"PRIx8":%02"PRIx8".%02"PRIx8',
  'vtd_page_walk_level(uint64_t addr, uint32_t level, uint64_t start, uint64_t end) "walk (base=0x%"PRIx64", level=%"PRIu32") iova range 0x%"PRIx64" - 0x%"PRIx64',
  'vtd_page_walk_one(uint16_t domain, uint64_t iova, uint64_t gpa, uint64_t mask, int perm) "domain 0x%"PRIx16" iova 0x%"PRIx64" -> gpa 0x%"PRIx64" mask 0x%"PRIx64" perm %d"',
  'vtd_page_walk_one_skip_map(uint64_t iova, uint64_t mask, uint64_t translated) "iova 0x%"PRIx64" mask 0x%"PRIx64" translated 0x%"PRIx64',
  'vtd_page_walk_one_skip_unmap(uint64_t iova, uint64_t mask) "iova 0x%"PRIx64" mask 0x%"PRIx64',
  'vtd_page_walk_skip_read(uint64_t iova, uint64_t next) "Page walk skip iova 0x%"PRIx64" - 0x%"PRIx64" due to unable to read"',
  'vtd_page_walk_skip_reserve(uint64_t iova, uint64_t next) "Page walk skip iova 0x%"PRIx64" - 0x%"PRIx64" due to rsrv set"',
  'vtd_switch_address_space(uint8_t bus, uint8_t slot, uint8_t fn, bool on) "Device %02x:%02x.%x switching address space (iommu enabled=%d)"',
  'vtd_as_unmap_whole(uint8_t bus, uint8_t slot, uint8_t fn, uint64_t iova, uint64_t size) "Device %02x:%02x.%x start 0x%"PRIx64" size 0x%"PRIx64',
  'vtd_translate_pt(uint16_t sid, uint64_t addr) "source id 0x%"PRIx16", iova 0x%"PRIx64',
  'vtd_pt_enable_fast_path(uint16_t sid, bool success) "sid 0x%"PRIx16" %d"',
  'vtd_irq_generate(uint64_t addr, uint64_t data) "addr 0x%"PRIx64" data 0x%"PRIx64',
  'vtd_reg_read(uint64_t addr, uint64_t size) "addr 0x%"PRIx64" size 0x%"PRIx64',
  'vtd_reg_write(uint64_t addr, uint64_t size, uint64_t val) "addr 0x%"PRIx64" size 0x%"PRIx64" value 0x%"PRIx64',
  'vtd_reg_dmar_root(uint64_t addr, bool scalable) "addr 0x%"PRIx64" scalable %d"',
  'vtd_reg_ir_root(uint64_t addr, uint32_t size) "addr 0x%"PRIx64" size 0x%"PRIx32',
  'vtd_reg_write_gcmd(uint32_t status, uint32_t val) "status 0x%"PRIx32" value 0x%"PRIx32',
  'vtd_reg_write_fectl(uint32_t value) "value 0x%"PRIx32',
  'vtd_reg_write_iectl(uint32_t value) "value 0x%"PRIx32',
  'vtd_reg_ics_clear_ip(void) ""',
  'vtd_dmar_translate(uint8_t bus, uint8_t slot, uint8_t func, uint64_t iova, uint64_t gpa, uint64_t mask) "dev %02x:%02x.%02x iova 0x%"PRIx64" -> gpa 0x%"PRIx64" mask 0x%"PRIx64',
  'vtd_dmar_enable(bool en) "enable %d"',
  'vtd_dmar_fault(uint16_t sid, int fault, uint64_t addr, bool is_write) "sid 0x%"PRIx16" fault %d addr 0x%"PRIx64" write %d"',
  'vtd_ir_enable(bool en) "enable %d"',
  'vtd_ir_irte_get(int index, uint64_t lo, uint64_t hi) "index %d low 0x%"PRIx64" high 0x%"PRIx64',
  'vtd_ir_remap(int index, int tri, int vec, int deliver, uint32_t dest, int dest_mode) "index %d trigger %d vector %d deliver %d dest 0x%"PRIx32" mode %d"',
  'vtd_ir_remap_type(const char *type) "%s"',
  'vtd_ir_remap_msi(uint64_t addr, uint64_t data, uint64_t addr2, uint64_t data2) "(addr 0x%"PRIx64", data 0x%"PRIx64") -> (addr 0x%"PRIx64", data 0x%"PRIx64")"',
  'vtd_ir_remap_msi_req(uint64_t addr, uint64_t data) "addr 0x%"PRIx64" data 0x%"PRIx64',
  'vtd_fsts_ppf(bool set) "FSTS PPF bit set to %d"',
  'vtd_fsts_clear_ip(void) ""',
  'vtd_frr_new(int index, uint64_t hi, uint64_t lo) "index %d high 0x%"PRIx64" low 0x%"PRIx64',
  'vtd_warn_invalid_qi_tail(uint16_t tail) "tail 0x%"PRIx16',
  'vtd_warn_ir_vector(uint16_t sid, int index, int vec, int target) "sid 0x%"PRIx16" index %d vec %d (should be: %d)"',
  'vtd_warn_ir_trigger(uint16_t sid, int index, int trig, int target) "sid 0x%"PRIx16" index %d trigger %d (should be: %d)"',
];

/** The lines the PASID-cache series adds to hw/i386/trace-events (its patches on qemu-devel; none is in 7.2). */
const TRACE_EVENTS_LATER = [
  'vtd_pasid_cache_reset(void) ""',
  'vtd_inv_desc_pasid_cache_gsi(void) ""',
  'vtd_inv_desc_pasid_cache_dsi(uint16_t domain) "Domain selective PC invalidation domain 0x%"PRIx16',
  'vtd_inv_desc_pasid_cache_psi(uint16_t domain, uint32_t pasid) "PASID selective PC invalidation domain 0x%"PRIx16" pasid 0x%"PRIx32',
  'vtd_pasid_cache_devsi(uint8_t bus, uint8_t dev, uint8_t fn) "Dev selective PC invalidation dev: %02"PRIx8":%02"PRIx8".%02"PRIx8',
];

const nameOf = (declaration: string) => declaration.slice(0, declaration.indexOf('('));

/** A register of debugfs' iommu_regset at a stage of the run (`NAME \t0xOFF\t\t0x<16 hex>`). */
function reg(stage: string, name: string): { offset: number; value: U64 } {
  const m = new RegExp(`^${name}\\s+\\t0x([0-9a-f]+)\\t\\t0x([0-9a-f]{16})$`, 'm').exec(read(`debugfs-${stage}/intel/iommu_regset`));
  assert.ok(m, `${name} in iommu_regset`);
  return { offset: parseInt(m[1]!, 16), value: U64.fromHex(m[2]!)! };
}

/** A device's context entry (hi, lo) in dmar_translation_struct at a stage. */
function contextEntry(stage: string, bdf: string): { hi: U64; lo: U64 } {
  const row = read(`debugfs-${stage}/intel/dmar_translation_struct`).split('\n').find((l) => l.startsWith(bdf + '\t'));
  assert.ok(row, `${bdf} in dmar_translation_struct`);
  const [hi, lo] = row.split('\t')[2]!.split(':');
  return { hi: U64.fromHex(hi!)!, lo: U64.fromHex(lo!)! };
}

/** The leaf entry of an IOVA pfn in a device's domain_translation_struct (last column). */
function leaf(stage: string, device: string, pfn: number): U64 {
  const want = '0x' + pfn.toString(16).padStart(13, '0') + ' |';
  const row = read(`debugfs-${stage}/intel/${device}/domain_translation_struct`).split('\n').find((l) => l.startsWith(want));
  assert.ok(row, `pfn 0x${pfn.toString(16)} in ${device}'s domain_translation_struct`);
  return U64.fromHex(row.split('\t').at(-1)!)!;
}

/** Descriptor words (qw0, qw1) of the model's encoder: QEMU traces hi = qw1, lo = qw0. */
function desc(type: number, fields: Record<string, number>): { hi: U64; lo: U64 } {
  const w = encodeDescriptor(type, fields, 2);
  return { lo: new U64(w[1]!, w[0]!), hi: new U64(w[3]!, w[2]!) };
}

const EDU = { bus: 0, dev: 1, fn: 0, sid: 0x0008, devfn: 0x08 }; // 00:01.0 (lspci-vvv.txt: the edu device)
const VBLK = { bus: 1, dev: 0, fn: 0, sid: 0x0100, devfn: 0x00 }; // 01:00.0 (the virtio-blk with ATS)
const ctxEdu = contextEntry('boot', '00:01.0');
const ctxEduVfio = contextEntry('vfio-mapped', '00:01.0');
const ctxVblk = contextEntry('boot', '01:00.0');
// Domain ids: context entry hi bits 23:8 (0x302 -> 3, 0x602 -> 6).
const didEdu = ctxEdu.hi.field(23, 8);
const didVblk = ctxVblk.hi.field(23, 8);

/**
 * Lines of the real trace and the event that means them, its values taken from elsewhere in the run
 * (debugfs, dmesg, lspci) or from what the kernel writes (named beside each).
 */
const REAL: { line: number; event: QemuTraceEvent; why: string }[] = [
  { line: 1, event: { event: 'vtd_context_cache_reset' }, why: 'the device reset of the unit' },
  { line: 4, event: { event: 'vtd_switch_address_space', bus: EDU.bus, slot: EDU.dev, fn: EDU.fn, on: false }, why: 'edu, before translation is enabled' },
  { line: 286, event: { event: 'vtd_switch_address_space', bus: EDU.bus, slot: EDU.dev, fn: EDU.fn, on: true }, why: 'edu, after GCMD.TE' },
  { line: 17, event: { event: 'vtd_reg_read', addr: reg('boot', 'CAP').offset, size: 8 }, why: 'the driver reads CAP, a 64-bit register' },
  { line: 26, event: { event: 'vtd_inv_qi_tail', head: 0 }, why: 'IQT written 0 before QI is enabled' },
  { line: 27, event: { event: 'vtd_reg_write', addr: reg('boot', 'IQA').offset, size: 8, val: reg('boot', 'IQA').value }, why: 'IQA as iommu_regset shows it' },
  { line: 29, event: { event: 'vtd_reg_write_gcmd', status: 0, val: 1 << 26 }, why: 'GCMD.QIE (bit 26) with nothing enabled yet' },
  { line: 30, event: { event: 'vtd_inv_qi_enable', enable: true }, why: 'QI on' },
  // IQA.QS = 0: one 4 KiB page of 16-byte descriptors.
  { line: 31, event: { event: 'vtd_inv_qi_setup', addr: reg('boot', 'IQA').value.toNumber() & ~0xfff, size: 4096 / 16 }, why: 'the queue, from IQA' },
  // IRTA.S = 0xf: 2^(S+1) entries.
  { line: 37, event: { event: 'vtd_reg_ir_root', addr: reg('boot', 'IRTA').value.toNumber() & ~0xfff, size: 2 ** ((reg('boot', 'IRTA').value.lo & 0xf) + 1) }, why: 'IRTA as iommu_regset shows it' },
  { line: 41, event: { event: 'vtd_inv_qi_fetch' }, why: 'a tail write with QI enabled' },
  { line: 42, event: { event: 'vtd_inv_qi_head', head: 0 }, why: 'the first descriptor' },
  { line: 43, event: { event: 'vtd_inv_desc', type: 'iec', ...desc(DescType.IEC, { G: 0 }) }, why: 'a global interrupt-entry-cache invalidation' },
  { line: 44, event: { event: 'vtd_inv_desc_iec', granularity: 0, index: 0, mask: 0 }, why: 'the same, decoded' },
  // qi_submit_sync's wait descriptor: status write (SW) of QI_DONE (2) to the status slot.
  { line: 46, event: { event: 'vtd_inv_desc', type: 'wait', ...desc(DescType.WAIT, { SW: 1, STATUS: 2, ADDR: 0x104b804 }) }, why: 'the wait descriptor (invalidation_queue row 1 of debugfs has the same words)' },
  { line: 47, event: { event: 'vtd_inv_desc_wait_sw', addr: 0x104b804, data: 2 }, why: 'its status write' },
  { line: 50, event: { event: 'vtd_ir_enable', en: true }, why: 'GCMD.IRE' },
  { line: 92, event: { event: 'vtd_reg_dmar_root', addr: reg('boot', 'RTADDR').value, scalable: false }, why: 'RTADDR, legacy mode (sm_off)' },
  { line: 106, event: { event: 'vtd_inv_desc', type: 'context-cache', ...desc(DescType.CONTEXT_CACHE, { G: 1 }) }, why: 'a global context-cache invalidation' },
  { line: 107, event: { event: 'vtd_inv_desc_cc_global' }, why: 'the same, decoded' },
  { line: 122, event: { event: 'vtd_inv_desc', type: 'iotlb', ...desc(DescType.IOTLB, { G: 1, DR: 1, DW: 1 }) }, why: 'a global IOTLB invalidation (drain reads and writes)' },
  { line: 123, event: { event: 'vtd_inv_desc_iotlb_global' }, why: 'the same, decoded' },
  { line: 134, event: { event: 'vtd_reg_write_fectl', value: 0 }, why: 'fault events unmasked' },
  { line: 161, event: { event: 'vtd_inv_desc_cc_devices', sid: EDU.sid, fmask: 0 }, why: 'a device-selective context invalidation of edu' },
  { line: 162, event: { event: 'vtd_inv_desc_cc_device', bus: EDU.bus, dev: EDU.dev, fn: EDU.fn }, why: 'the address space it reaches' },
  { line: 172, event: { event: 'vtd_inv_desc_iotlb_domain', domain: didEdu }, why: 'a domain-selective IOTLB flush of edu\'s domain' },
  { line: 278, event: { event: 'vtd_dmar_enable', en: true }, why: 'GCMD.TE' },
  { line: 378, event: { event: 'vtd_iotlb_cc_update', bus: VBLK.bus, devfn: VBLK.devfn, high: ctxVblk.hi, low: ctxVblk.lo, gen1: 0, gen2: 1 }, why: 'virtio-blk\'s context entry (dmar_translation_struct) cached' },
  // The virtio ring at IOVA 0xfffff000: debugfs' leaf for pfn 0xfffff; QEMU keeps the request's low bits in the iova.
  { line: 379, event: { event: 'vtd_iotlb_page_update', sid: VBLK.sid, addr: 0xfffff002, slpte: leaf('boot', '0000:01:00.0', 0xfffff), domain: didVblk }, why: 'a 4 KiB IOTLB fill' },
  { line: 380, event: { event: 'vtd_dmar_translate', bus: VBLK.bus, slot: VBLK.dev, func: VBLK.fn, iova: 0xfffff000, gpa: leaf('boot', '0000:01:00.0', 0xfffff).toNumber() & ~0xfff, mask: 0xfff }, why: 'the translation' },
  { line: 381, event: { event: 'vtd_iotlb_page_hit', sid: VBLK.sid, addr: 0xfffff002, slpte: leaf('boot', '0000:01:00.0', 0xfffff), domain: didVblk }, why: 'the next access hits' },
  { line: 421, event: { event: 'vtd_inv_desc_iotlb_pages', domain: didVblk, addr: 0xffffa000, mask: 0 }, why: 'a page-selective flush (strict mode unmap)' },
  { line: 429, event: { event: 'vtd_iotlb_cc_hit', bus: VBLK.bus, devfn: VBLK.devfn, high: ctxVblk.hi, low: ctxVblk.lo, gen: 1 }, why: 'the context cache hit' },
  { line: 464, event: { event: 'vtd_inv_desc', type: 'iotlb', ...desc(DescType.IOTLB, { G: 3, DR: 1, DW: 1, DID: didVblk, ADDR: 0xffffa000, IH: 1, AM: 0 }) }, why: 'that flush\'s descriptor (IH: leaf only)' },
  { line: 467, event: { event: 'vtd_inv_desc', type: 'device', ...desc(DescType.DEVICE_TLB, { SID: VBLK.sid, ADDR: 0xffffa000 }) }, why: 'and its device-TLB invalidation (ATS)' },
  { line: 1345, event: { event: 'vtd_fsts_ppf', set: true }, why: 'a fault recorded' },
  { line: 1346, event: { event: 'vtd_irq_generate', addr: reg('boot', 'FEADDR').value, data: reg('boot', 'FEDATA').value }, why: 'the fault event, to FEADDR/FEDATA' },
  { line: 1342, event: { event: 'vtd_iotlb_cc_update', bus: EDU.bus, devfn: EDU.devfn, high: ctxEdu.hi, low: ctxEdu.lo, gen1: 0, gen2: 1 }, why: 'edu\'s context entry cached before its first DMA' },
  { line: 1478, event: { event: 'vtd_fsts_ppf', set: false }, why: 'the driver cleared the fault' },
  { line: 2191, event: { event: 'vtd_inv_desc', type: 'context-cache', ...desc(DescType.CONTEXT_CACHE, { G: 3, DID: didEdu, SID: EDU.sid, FM: 0 }) }, why: 'edu detached for VFIO: device-selective context flush' },
  { line: 2194, event: { event: 'vtd_ce_not_present', bus: EDU.bus, devfn: EDU.devfn }, why: 'its context entry cleared' },
  { line: 2922, event: { event: 'vtd_iotlb_cc_update', bus: EDU.bus, devfn: EDU.devfn, high: ctxEduVfio.hi, low: ctxEduVfio.lo, gen1: 0, gen2: 1 }, why: 'edu\'s VFIO context entry' },
  { line: 2926, event: { event: 'vtd_iotlb_page_update', sid: EDU.sid, addr: 0x101000, slpte: leaf('vfio-mapped', '0000:00:01.0', 0x101), domain: didEdu }, why: 'the DMA to the VFIO mapping at 0x101000' },
  { line: 2927, event: { event: 'vtd_dmar_translate', bus: EDU.bus, slot: EDU.dev, func: EDU.fn, iova: 0x101000, gpa: leaf('vfio-mapped', '0000:00:01.0', 0x101).toNumber() & ~0xfff, mask: 0xfff }, why: 'its translation' },
  { line: 3956, event: { event: 'vtd_dmar_enable', en: false }, why: 'translation off at shutdown' },
];

/** `[DMA Read NO_PASID] Request device [00:01.0] fault addr 0x1234000 [fault reason 0x06]` lines of a dmesg. */
function dmesgFaults(name: string): { write: boolean; bus: number; dev: number; fn: number; addr: number; reason: number }[] {
  const re = /DMAR: \[DMA (Read|Write) NO_PASID\] Request device \[([0-9a-f]{2}):([0-9a-f]{2})\.(\d)\] fault addr 0x([0-9a-f]+) \[fault reason 0x([0-9a-f]{2})\]/g;
  return [...read(name).matchAll(re)].map((m) => ({ write: m[1] === 'Write', bus: parseInt(m[2]!, 16), dev: parseInt(m[3]!, 16), fn: Number(m[4]), addr: parseInt(m[5]!, 16), reason: parseInt(m[6]!, 16) }));
}

describe('vmm: QEMU vtd_* trace events', () => {
  it('declares every vtd_* event of QEMU 7.2\'s trace-events as the file does, then the later ones', () => {
    const names = Object.keys(QEMU_TRACE_EVENTS) as QemuTraceEventName[];
    assert.deepEqual(names.filter(inQemu72), TRACE_EVENTS_7_2.map(nameOf));
    assert.deepEqual(names.filter((n) => !inQemu72(n)), TRACE_EVENTS_LATER.map(nameOf));
    for (const line of [...TRACE_EVENTS_7_2, ...TRACE_EVENTS_LATER]) assert.equal(qemuTraceDeclaration(nameOf(line) as QemuTraceEventName), line);
  });

  it('renders the real trace\'s lines byte for byte, for every event type it holds', () => {
    for (const { line, event, why } of REAL) assert.equal(formatQemuTraceLine(event), traceLine(line), `line ${line} (${why})`);
    const inTrace = new Set(traceLines.filter((l) => l !== '').map((l) => l.slice(0, l.indexOf(' '))));
    const covered = new Set(REAL.map((r) => r.event.event as string));
    // The faults and their records are checked against dmesg below.
    covered.add('vtd_dmar_fault').add('vtd_frr_new');
    assert.deepEqual([...inTrace].filter((n) => !covered.has(n)), []);
    // `awk '{print $1}' | sort -u` of the file: 34 event names.
    assert.equal(inTrace.size, 34);
  });

  it('renders each fault dmesg reports as the two lines QEMU traced for it, in the order of the run', () => {
    const faults = dmesgFaults('dmesg-final.txt');
    assert.equal(faults.length, 4);
    const records = traceLines.map((l, i) => [l, i] as const).filter(([l]) => l.startsWith('vtd_frr_new '));
    assert.equal(records.length, faults.length, 'one record per fault the kernel printed');
    faults.forEach((f, i) => {
      const sid = (f.bus << 8) | (f.dev << 3) | f.fn;
      // The first faulting access of each DMA: the page address the kernel printed (the edu DMA starts on it).
      const fault = formatQemuTraceLine({ event: 'vtd_dmar_fault', sid, fault: f.reason, addr: f.addr, is_write: f.write });
      // Legacy mode, a request without PASID, a page-walk fault: QEMU records PCI_NO_PASID (PV 0xffff, PP 0).
      const record = qemuFaultRecord({ sid, addr: f.addr, fault: f.reason, isWrite: f.write, ...qemu72FaultPasid('walk', false, null) });
      // QEMU 7.2 has one fault recording register (DMAR_FRCD_REG_NR 1): every record is index 0.
      const frr = formatQemuTraceLine({ event: 'vtd_frr_new', index: 0, ...record });
      const [, at] = records[i]!;
      assert.deepEqual([traceLines[at - 1], traceLines[at]], [fault, frr], `fault ${i + 1} at 0x${f.addr.toString(16)}`);
    });
  });

  /**
   * Events the real trace does not hold, against their format strings (the declaration quoted beside each
   * is the source of the expected text), and what the reader makes of each line.
   */
  const FORMATTED: { event: QemuTraceEvent; format: string; line: string }[] = [
    { event: { event: 'vtd_inv_desc_cc_domain', domain: 3 }, format: '"context invalidate domain 0x%"PRIx16', line: 'vtd_inv_desc_cc_domain context invalidate domain 0x3' },
    { event: { event: 'vtd_inv_desc_iotlb_pasid_pages', domain: 1, addr: 0x7f000, mask: 2, pasid: 5 }, format: '"iotlb invalidate domain 0x%"PRIx16" addr 0x%"PRIx64" mask 0x%"PRIx8" pasid 0x%"PRIx32', line: 'vtd_inv_desc_iotlb_pasid_pages iotlb invalidate domain 0x1 addr 0x7f000 mask 0x2 pasid 0x5' },
    { event: { event: 'vtd_inv_desc_iotlb_pasid', domain: 1, pasid: 0xfffff }, format: '"iotlb invalidate domain 0x%"PRIx16" pasid 0x%"PRIx32', line: 'vtd_inv_desc_iotlb_pasid iotlb invalidate domain 0x1 pasid 0xfffff' },
    { event: { event: 'vtd_inv_desc_wait_irq', msg: 'IM in IECTL_REG is set, new event not generated' }, format: '"%s"', line: 'vtd_inv_desc_wait_irq IM in IECTL_REG is set, new event not generated' },
    { event: { event: 'vtd_inv_desc_wait_write_fail', hi: 0x104b804, lo: new U64(2, 0x25) }, format: '"write fail for wait desc hi 0x%"PRIx64" lo 0x%"PRIx64', line: 'vtd_inv_desc_wait_write_fail write fail for wait desc hi 0x104b804 lo 0x200000025' },
    { event: { event: 'vtd_re_not_present', bus: 2 }, format: '"Root entry bus %"PRIu8" not present"', line: 'vtd_re_not_present Root entry bus 2 not present' },
    { event: { event: 'vtd_iotlb_reset', reason: 'iotlb exceeds size limit' }, format: '"IOTLB reset (reason: %s)"', line: 'vtd_iotlb_reset IOTLB reset (reason: iotlb exceeds size limit)' },
    { event: { event: 'vtd_fault_disabled' }, format: '"Fault processing disabled for context entry"', line: 'vtd_fault_disabled Fault processing disabled for context entry' },
    { event: { event: 'vtd_replay_ce_valid', mode: 'legacy mode', bus: 0, dev: 1, fn: 0, domain: 3, hi: 0x302, lo: 0x1b40001 }, format: '"%s: replay valid context device %02"PRIx8":%02"PRIx8".%02"PRIx8" domain 0x%"PRIx16" hi 0x%"PRIx64" lo 0x%"PRIx64', line: 'vtd_replay_ce_valid legacy mode: replay valid context device 00:01.00 domain 0x3 hi 0x302 lo 0x1b40001' },
    { event: { event: 'vtd_replay_ce_invalid', bus: 0x1f, dev: 0x1f, fn: 7 }, format: '"replay invalid context device %02"PRIx8":%02"PRIx8".%02"PRIx8', line: 'vtd_replay_ce_invalid replay invalid context device 1f:1f.07' },
    { event: { event: 'vtd_page_walk_level', addr: 0x1b50000, level: 4, start: 0, end: 2 ** 48 }, format: '"walk (base=0x%"PRIx64", level=%"PRIu32") iova range 0x%"PRIx64" - 0x%"PRIx64', line: 'vtd_page_walk_level walk (base=0x1b50000, level=4) iova range 0x0 - 0x1000000000000' },
    { event: { event: 'vtd_page_walk_one', domain: 3, iova: 0x100000, gpa: 0x3aec0000, mask: 0xfff, perm: 3 }, format: '"domain 0x%"PRIx16" iova 0x%"PRIx64" -> gpa 0x%"PRIx64" mask 0x%"PRIx64" perm %d"', line: 'vtd_page_walk_one domain 0x3 iova 0x100000 -> gpa 0x3aec0000 mask 0xfff perm 3' },
    { event: { event: 'vtd_page_walk_one_skip_map', iova: 0x100000, mask: 0xfff, translated: 0x3aec0000 }, format: '"iova 0x%"PRIx64" mask 0x%"PRIx64" translated 0x%"PRIx64', line: 'vtd_page_walk_one_skip_map iova 0x100000 mask 0xfff translated 0x3aec0000' },
    { event: { event: 'vtd_page_walk_one_skip_unmap', iova: 0x300000, mask: 0x1fffff }, format: '"iova 0x%"PRIx64" mask 0x%"PRIx64', line: 'vtd_page_walk_one_skip_unmap iova 0x300000 mask 0x1fffff' },
    { event: { event: 'vtd_page_walk_skip_read', iova: 0x40000000, next: 0x80000000 }, format: '"Page walk skip iova 0x%"PRIx64" - 0x%"PRIx64" due to unable to read"', line: 'vtd_page_walk_skip_read Page walk skip iova 0x40000000 - 0x80000000 due to unable to read' },
    { event: { event: 'vtd_page_walk_skip_reserve', iova: 0x40000000, next: 0x80000000 }, format: '"Page walk skip iova 0x%"PRIx64" - 0x%"PRIx64" due to rsrv set"', line: 'vtd_page_walk_skip_reserve Page walk skip iova 0x40000000 - 0x80000000 due to rsrv set' },
    { event: { event: 'vtd_as_unmap_whole', bus: 0, slot: 1, fn: 0, iova: 0, size: 2 ** 48 }, format: '"Device %02x:%02x.%x start 0x%"PRIx64" size 0x%"PRIx64', line: 'vtd_as_unmap_whole Device 00:01.0 start 0x0 size 0x1000000000000' },
    { event: { event: 'vtd_translate_pt', sid: 0xfa, addr: 0x7000 }, format: '"source id 0x%"PRIx16", iova 0x%"PRIx64', line: 'vtd_translate_pt source id 0xfa, iova 0x7000' },
    { event: { event: 'vtd_pt_enable_fast_path', sid: 0xfa, success: true }, format: '"sid 0x%"PRIx16" %d"', line: 'vtd_pt_enable_fast_path sid 0xfa 1' },
    { event: { event: 'vtd_reg_write_iectl', value: 0x8000_0000 }, format: '"value 0x%"PRIx32', line: 'vtd_reg_write_iectl value 0x80000000' },
    { event: { event: 'vtd_reg_ics_clear_ip' }, format: '""', line: 'vtd_reg_ics_clear_ip ' },
    { event: { event: 'vtd_ir_irte_get', index: 2, lo: new U64(0x21, 0x0000_000d), hi: 0x400f8 }, format: '"index %d low 0x%"PRIx64" high 0x%"PRIx64', line: 'vtd_ir_irte_get index 2 low 0x210000000d high 0x400f8' },
    { event: { event: 'vtd_ir_remap', index: 2, tri: 0, vec: 33, deliver: 0, dest: 0, dest_mode: 0 }, format: '"index %d trigger %d vector %d deliver %d dest 0x%"PRIx32" mode %d"', line: 'vtd_ir_remap index 2 trigger 0 vector 33 deliver 0 dest 0x0 mode 0' },
    { event: { event: 'vtd_ir_remap_type', type: 'IOAPIC' }, format: '"%s"', line: 'vtd_ir_remap_type IOAPIC' },
    { event: { event: 'vtd_ir_remap_msi', addr: 0xfee00010, data: 0, addr2: 0xfee00000, data2: 0x21 }, format: '"(addr 0x%"PRIx64", data 0x%"PRIx64") -> (addr 0x%"PRIx64", data 0x%"PRIx64")"', line: 'vtd_ir_remap_msi (addr 0xfee00010, data 0x0) -> (addr 0xfee00000, data 0x21)' },
    { event: { event: 'vtd_ir_remap_msi_req', addr: 0xfee00010, data: 0 }, format: '"addr 0x%"PRIx64" data 0x%"PRIx64', line: 'vtd_ir_remap_msi_req addr 0xfee00010 data 0x0' },
    { event: { event: 'vtd_fsts_clear_ip' }, format: '""', line: 'vtd_fsts_clear_ip ' },
    { event: { event: 'vtd_warn_invalid_qi_tail', tail: 0x100 }, format: '"tail 0x%"PRIx16', line: 'vtd_warn_invalid_qi_tail tail 0x100' },
    { event: { event: 'vtd_warn_ir_vector', sid: 0xf0ff, index: 0, vec: 48, target: -1 }, format: '"sid 0x%"PRIx16" index %d vec %d (should be: %d)"', line: 'vtd_warn_ir_vector sid 0xf0ff index 0 vec 48 (should be: -1)' },
    { event: { event: 'vtd_warn_ir_trigger', sid: 0xf0ff, index: 0, trig: 1, target: 0 }, format: '"sid 0x%"PRIx16" index %d trigger %d (should be: %d)"', line: 'vtd_warn_ir_trigger sid 0xf0ff index 0 trigger 1 (should be: 0)' },
    { event: { event: 'vtd_pasid_cache_reset' }, format: '""', line: 'vtd_pasid_cache_reset ' },
    { event: { event: 'vtd_inv_desc_pasid_cache_gsi' }, format: '""', line: 'vtd_inv_desc_pasid_cache_gsi ' },
    { event: { event: 'vtd_inv_desc_pasid_cache_dsi', domain: 0x10 }, format: '"Domain selective PC invalidation domain 0x%"PRIx16', line: 'vtd_inv_desc_pasid_cache_dsi Domain selective PC invalidation domain 0x10' },
    { event: { event: 'vtd_inv_desc_pasid_cache_psi', domain: 0x10, pasid: 0x2a }, format: '"PASID selective PC invalidation domain 0x%"PRIx16" pasid 0x%"PRIx32', line: 'vtd_inv_desc_pasid_cache_psi PASID selective PC invalidation domain 0x10 pasid 0x2a' },
    { event: { event: 'vtd_pasid_cache_devsi', bus: 0, dev: 1, fn: 0 }, format: '"Dev selective PC invalidation dev: %02"PRIx8":%02"PRIx8".%02"PRIx8', line: 'vtd_pasid_cache_devsi Dev selective PC invalidation dev: 00:01.00' },
  ];

  it('renders the events the real trace lacks as their format strings say', () => {
    for (const { event, format, line } of FORMATTED) {
      assert.equal(QEMU_TRACE_EVENTS[event.event].format, format, event.event);
      assert.equal(formatQemuTraceLine(event), line);
    }
    const all = new Set([...REAL.map((r) => r.event.event as string), 'vtd_dmar_fault', 'vtd_frr_new', ...FORMATTED.map((f) => f.event.event as string)]);
    assert.deepEqual(Object.keys(QEMU_TRACE_EVENTS).filter((n) => !all.has(n)), [], 'every event is rendered by some test');
  });

  it('prints the pid@sec.usec prefix of -msg timestamp=on, usec in six digits, and a whole trace with a newline per line', () => {
    const fetch = { event: 'vtd_inv_qi_fetch' } as const;
    assert.equal(formatQemuTraceLine(fetch, { pid: 4242, sec: 1_700_000_000, usec: 2001 }), '4242@1700000000.002001:vtd_inv_qi_fetch ');
    assert.equal(formatQemuTrace([{ event: fetch }, { event: { event: 'vtd_inv_qi_head', head: 65535 } }]), 'vtd_inv_qi_fetch \nvtd_inv_qi_head read head 65535\n');
    assert.throws(() => formatQemuTraceLine(fetch, { pid: 1, sec: 1, usec: 1_000_000 }), /bad trace stamp/);
  });

  it('prints 64-bit words whole and refuses values the C argument cannot hold, naming the event and argument', () => {
    assert.equal(formatQemuTraceLine({ event: 'vtd_reg_write', addr: 0xb0, size: 8, val: new U64(0xffff_ffff, 0xffff_ffff) }), 'vtd_reg_write addr 0xb0 size 0x8 value 0xffffffffffffffff');
    assert.throws(() => formatQemuTraceLine({ event: 'vtd_inv_desc_cc_device', bus: 256, dev: 0, fn: 0 }), /vtd_inv_desc_cc_device: bus \(uint8_t\) cannot be 256/);
    assert.throws(() => formatQemuTraceLine({ event: 'vtd_dmar_fault', sid: 8, fault: 6, addr: -1, is_write: false }), /vtd_dmar_fault: addr \(uint64_t\)/);
    assert.throws(() => formatQemuTraceLine({ event: 'vtd_dmar_enable', en: 1 as unknown as boolean }), /vtd_dmar_enable: en \(bool\)/);
    assert.throws(() => formatQemuTraceLine({ event: 'vtd_frr_new', index: 2 ** 31, hi: 0, lo: 0 }), /index \(int\)/);
  });

  it('names the vtd_inv_desc type QEMU 7.2 traces per descriptor type, and none for PASID-cache and PASID-IOTLB descriptors', () => {
    // Low dwords of real descriptors: 0x11 (context-cache), 0xd2 (iotlb), 0x3 (device), 0x4 (iec), 0x25 (wait).
    assert.deepEqual([0x11, 0xd2, 0x3, 0x4, 0x25].map((lo) => qemuInvDescType(lo)), ['context-cache', 'iotlb', 'device', 'iec', 'wait']);
    assert.deepEqual([0x6, 0x7].map((lo) => qemuInvDescType(lo)), [null, null]);
    assert.deepEqual([0x6, 0x7].map((lo) => qemuInvDescType(lo, { later: true })), ['p-iotlb', 'pasid-cache']);
    // QEMU masks the type with 0xf: a PASID-based device-TLB descriptor (type 0x8) is unknown to it.
    assert.equal(qemuInvDescType(0x8), null);
  });

  describe('read back by the QEMU trace reader', () => {
    const decode = (line: string): LogEvent => {
      const { events } = decodeLogText(line + '\n');
      assert.equal(events.length, 1, line);
      assert.equal(events[0]!.format, 'qemu-trace', line);
      return events[0]!;
    };
    type Meaning = { kind?: string; device?: string | null; address?: string | null; pasid?: number | null; reason?: number | null; access?: string | null; details?: Record<string, unknown> };

    /** What each line means, written from the event's arguments (not from the reader's output). */
    const MEANING: [QemuTraceEvent | number, Meaning][] = [
      [1346, { kind: 'interrupt', device: null, address: null }],
      [4, { kind: 'attach', device: '0000:00:01.0' }],
      [27, { kind: 'register', address: null, details: { addr: '0x90', size: 8, value: '0x10c5000' } }],
      [43, { kind: 'invalidation', device: null, address: null }],
      [47, { kind: 'invalidation', address: null, details: { addr: '0x104b804', data: 2 } }],
      [161, { kind: 'invalidation', device: '0000:00:01.0', details: { sid: 8 } }],
      [162, { kind: 'invalidation', device: '0000:00:01.0' }],
      [172, { kind: 'invalidation', details: { domain: 3 } }],
      [379, { kind: 'translation', device: '0000:01:00.0', address: '0xfffff002', details: { slpte: '0x196c003', domain: 6 } }],
      [380, { kind: 'translation', device: '0000:01:00.0', address: '0xfffff000', details: { gpa: '0x196c000' } }],
      [421, { kind: 'invalidation', address: '0xffffa000', details: { domain: 6, mask: 0 } }],
      [429, { kind: 'translation', device: '0000:01:00.0', details: { high: '0x602', low: '0x190e005', gen: 1 } }],
      [467, { kind: 'invalidation', device: '0000:01:00.0', address: '0xffffa000' }],
      [2194, { kind: 'translation', device: '0000:00:01.0' }],
      [{ event: 'vtd_inv_desc_iotlb_pasid_pages', domain: 1, addr: 0x7f000, mask: 2, pasid: 5 }, { kind: 'invalidation', address: '0x7f000', pasid: 5, details: { domain: 1, mask: 2 } }],
      [{ event: 'vtd_inv_desc_iotlb_pasid', domain: 1, pasid: 0xfffff }, { kind: 'invalidation', pasid: 0xfffff, details: { domain: 1 } }],
      [{ event: 'vtd_inv_desc', type: 'p-iotlb', ...desc(DescType.PASID_IOTLB, { G: 3, DID: 1, PASID: 5, ADDR: 0x7f000, AM: 0 }) }, { kind: 'invalidation', address: '0x7f000', pasid: 5 }],
      [{ event: 'vtd_inv_desc', type: 'pasid-cache', ...desc(DescType.PASID_CACHE, { G: 1, DID: 0x10, PASID: 0x2a }) }, { kind: 'invalidation', pasid: 0x2a }],
      [{ event: 'vtd_re_not_present', bus: 2 }, { kind: 'translation', device: null }],
      [{ event: 'vtd_replay_ce_valid', mode: 'scalable mode', bus: 0, dev: 1, fn: 0, domain: 3, hi: 0x302, lo: 0x1b40001 }, { kind: 'attach', device: '0000:00:01.0', details: { domain: 3, hi: '0x302', lo: '0x1b40001' } }],
      [{ event: 'vtd_replay_ce_invalid', bus: 0x1f, dev: 0x1f, fn: 7 }, { kind: 'attach', device: '0000:1f:1f.7' }],
      [{ event: 'vtd_page_walk_one', domain: 3, iova: 0x100000, gpa: 0x3aec0000, mask: 0xfff, perm: 3 }, { kind: 'translation', address: '0x100000', details: { domain: 3, gpa: '0x3aec0000', perm: 3 } }],
      [{ event: 'vtd_page_walk_level', addr: 0x1b50000, level: 4, start: 0, end: 2 ** 48 }, { kind: 'translation', details: { level: 4 } }],
      [{ event: 'vtd_page_walk_skip_read', iova: 0x40000000, next: 0x80000000 }, { kind: 'translation', address: '0x40000000' }],
      [{ event: 'vtd_as_unmap_whole', bus: 0, slot: 1, fn: 0, iova: 0, size: 2 ** 48 }, { kind: 'attach', device: '0000:00:01.0', details: { size: 2 ** 48 } }],
      [{ event: 'vtd_translate_pt', sid: 0xfa, addr: 0x7000 }, { kind: 'translation', device: '0000:00:1f.2', address: '0x7000', details: { sid: 0xfa } }],
      [{ event: 'vtd_pt_enable_fast_path', sid: 0xfa, success: true }, { kind: 'translation', device: '0000:00:1f.2' }],
      [{ event: 'vtd_warn_ir_vector', sid: 0xf0ff, index: 0, vec: 48, target: -1 }, { kind: 'interrupt', device: '0000:f0:1f.7', details: { index: 0 } }],
      [{ event: 'vtd_inv_desc_pasid_cache_dsi', domain: 0x10 }, { kind: 'invalidation', details: { domain: 0x10 } }],
      [{ event: 'vtd_inv_desc_pasid_cache_psi', domain: 0x10, pasid: 0x2a }, { kind: 'invalidation', pasid: 0x2a, details: { domain: 0x10 } }],
      [{ event: 'vtd_pasid_cache_devsi', bus: 0, dev: 1, fn: 0 }, { kind: 'invalidation', device: '0000:00:01.0' }],
      [{ event: 'vtd_inv_desc_pasid_cache_gsi' }, { kind: 'invalidation', device: null, pasid: null }],
      [{ event: 'vtd_pasid_cache_reset' }, { kind: 'invalidation' }],
    ];

    it('reads every rendered line back to what its event means: device, address, PASID, domain, words', () => {
      for (const [what, want] of MEANING) {
        const line = typeof what === 'number' ? traceLine(what) : formatQemuTraceLine(what);
        if (typeof what === 'number') assert.equal(formatQemuTraceLine(REAL.find((r) => r.line === what)!.event), line, `line ${what}`);
        const e = decode(line);
        const name = line.slice(0, line.indexOf(' '));
        assert.equal(e.details.event, name);
        assert.equal(e.details.text, line.slice(name.length + 1).trim(), 'the text after the name');
        assert.equal(e.details.problems, undefined, `${line}: ${JSON.stringify(e.details.problems)}`);
        for (const k of ['kind', 'device', 'address', 'pasid', 'access'] as const) if (k in want) assert.equal(e[k], want[k], `${line}: ${k}`);
        if ('reason' in want) assert.equal(e.reason?.code ?? null, want.reason, `${line}: reason`);
        for (const [k, v] of Object.entries(want.details ?? {})) assert.deepEqual(e.details[k], v, `${line}: details.${k}`);
      }
    });

    it('reads the faults of the real run back with their device, page, access, reason and record', () => {
      const faults = dmesgFaults('dmesg-final.txt');
      for (const f of faults) {
        const sid = (f.bus << 8) | (f.dev << 3) | f.fn;
        const record = qemuFaultRecord({ sid, addr: f.addr, fault: f.reason, isWrite: f.write, ...qemu72FaultPasid('walk', false, null) });
        const text = formatQemuTrace([
          { event: { event: 'vtd_dmar_fault', sid, fault: f.reason, addr: f.addr, is_write: f.write } },
          { event: { event: 'vtd_frr_new', index: 0, ...record } },
        ]);
        const { events } = decodeLogText(text);
        const device = `0000:${f.bus.toString(16).padStart(2, '0')}:${f.dev.toString(16).padStart(2, '0')}.${f.fn}`;
        const address = '0x' + f.addr.toString(16);
        const access = f.write ? 'write' : 'read';
        // The record line is the fault's own record (one event), as the reader takes a vtd_frr_new after its vtd_dmar_fault.
        assert.deepEqual(events.map((e) => [e.kind, e.device, e.address, e.access, e.reason?.code, e.pasid]), [['dma-fault', device, address, access, f.reason, null]]);
        assert.equal(events[0]!.details.recorded, true);
        assert.deepEqual(events[0]!.details.record, { f: false, t: !f.write, at: 0, pv: 0xffff, fr: f.reason, pp: false, exe: false, priv: false, t2: false, sid });
      }
    });

    it('reads a scalable-mode walk fault\'s record with the RID_PASID QEMU 7.2 puts in it', () => {
      // Scalable mode, a request without PASID: QEMU replaces "no PASID" by RID_PASID (0) and sets PP.
      const record = qemuFaultRecord({ sid: 8, addr: 0x1234000, fault: 0x06, isWrite: false, ...qemu72FaultPasid('walk', true, null, 0) });
      assert.deepEqual([record.hi.toString(), record.lo.toString()], ['0x4000000680000008', '0x1234000']);
      const [e] = decodeLogText(formatQemuTraceLine({ event: 'vtd_frr_new', index: 0, ...record }) + '\n').events;
      assert.deepEqual([e!.pasid, e!.reason?.code, e!.access], [0, 0x06, 'read']);
      // A table fault (context, PASID table) is recorded without a PASID, whatever the request had.
      assert.deepEqual(qemu72FaultPasid('tables', true, 5), { isPasid: false, pasid: 0 });
      assert.deepEqual(qemu72FaultPasid('walk', true, 5), { isPasid: true, pasid: 5 });
    });

    it('reads the pid and time of a stamped line', () => {
      const e = decode(formatQemuTraceLine({ event: 'vtd_dmar_enable', en: true }, { pid: 4242, sec: 1_700_000_000, usec: 2001 }));
      assert.deepEqual([e.details.pid, e.timestamp, e.details.text], [4242, '1700000000.002001', 'enable 1']);
    });
  });
});
