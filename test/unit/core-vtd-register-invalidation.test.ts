import * as assert from 'node:assert/strict';
import type { HwEvent } from '../../src/core/hw/events';
import { U64 } from '../../src/core/u64';
import type { VtdFeatures } from '../../src/core/vtd/cap';
import { DescType } from '../../src/core/vtd/descriptors';
import { submitDescriptors } from '../../src/core/vtd/tables';
import type { VtdUnit } from '../../src/core/vtd/unit';
import { descriptorsDuring } from '../support/descriptors';
import { device, legacyContext, pageTable, type Rig, rig } from '../support/vtd';

// Register-based invalidation as Linux 6.12 drives it when queued invalidation is off (__iommu_flush_context,
// __iommu_flush_iotlb in drivers/iommu/intel/iommu.c): the request with ICC/IVT set, then IOMMU_WAIT_OP until
// the hardware clears it. Field positions are Linux's: DMA_CCMD_ICC 63, CIRG at 61 (DMA_CCMD_*_INVL), FM 33:32,
// SID 31:16, DID 15:0; DMA_TLB_IVT 63, IIRG at 60 (DMA_TLB_*_FLUSH), DMA_TLB_IAIG (val >> 57) & 3, DW 48, DID
// 47:32; the IVA register holds the address with the size order (AM) in its low bits and IH at 6. What the
// hardware reports back is the register definition's: CAIG 01 global, 10 domain-selective, 11 device-selective
// (performed "using the source-ID and domain-ID specified by software"); IAIG 00 when "hardware detected an
// incorrect invalidation request and ignored the request", e.g. "an unsupported address mask value".

const SID = 0x0010;
const DID = 5;
const ICC = 1 << 31; // bit 63, in the high word
const CIRG = { global: 1, domain: 2, device: 3 } as const;
const IIRG = { global: 1, domain: 2, page: 3 } as const;

/** A legacy-mode unit (VT-d 1.0) with one device in DID 5, its context entry and two pages cached. */
function legacyUnit(o: { qi?: boolean; features?: VtdFeatures } = {}): Rig {
  const r = rig({ scalable: false, features: { scalableMode: false, ...o.features } });
  // The rig enabled queued invalidation; a register-based driver never does (dmar_disable_qi): TE stays, QIE off.
  if (!o.qi) r.unit.writeRegister('GCMD', 0x8000_0000);
  device(r, '00:02.0');
  const pt = pageTable(r, 'second-level');
  pt.map(0x1000, 0x8000_0000, 0x2000, { read: true, write: true });
  legacyContext(r, SID, { tt: 0, aw: 2, did: DID, slptptr: pt.root });
  for (const addr of [0x1000, 0x2000]) assert.ok(r.unit.translate({ sid: SID, addr }).ok);
  assert.deepEqual(r.unit.cacheSizes(), { context: 1, pasid: 0, iotlb: 2 });
  return r;
}

/** __iommu_flush_context: write CCMD, then wait for ICC to clear; returns CCMD as last read. */
function flushContext(unit: VtdUnit, type: number, did = 0, sid = 0, fm = 0): U64 {
  unit.writeRegister('CCMD', new U64((ICC | (type << 29) | fm) >>> 0, ((sid << 16) | did) >>> 0));
  let v = unit.readRegister('CCMD');
  for (let i = 0; i < 100 && v.hi >>> 31; i++) v = unit.readRegister('CCMD');
  return v;
}

/** __iommu_flush_iotlb: IVA for a page-selective flush, then the IOTLB register, then wait for IVT to clear. */
function flushIotlb(unit: VtdUnit, type: number, did = 0, addr = 0, sizeOrder = 0): U64 {
  const { iva, iotlb } = unit.iotlbRegisters;
  if (type === IIRG.page) unit.writeRegister(iva, U64.fromNumber(addr + sizeOrder));
  unit.writeRegister(iotlb, new U64((ICC | (type << 28) | (unit.cap.dwd << 16) | did) >>> 0, 0));
  let v = unit.readRegister(iotlb);
  for (let i = 0; i < 100 && v.hi >>> 31; i++) v = unit.readRegister(iotlb);
  return v;
}

const caig = (v: U64) => (v.hi >>> 27) & 3;
const iaig = (v: U64) => (v.hi >>> 25) & 3;
const pending = (v: U64) => v.hi >>> 31;

function invalidations(r: Rig, fn: () => void): { descriptorType: string; granularity: string; dropped: Readonly<Record<string, number>> }[] {
  const seen: Extract<HwEvent, { type: 'invalidation' }>[] = [];
  const stop = r.machine.events.subscribe((e) => {
    if (e.type === 'invalidation') seen.push(e);
  });
  fn();
  stop();
  return seen.map(({ descriptorType, granularity, dropped }) => ({ descriptorType, granularity, dropped }));
}

describe('core: VT-d register-based invalidation (CCMD, IVA/IOTLB at ECAP.IRO)', () => {
  it('the driver\'s CCMD then IOTLB flush drops what the queued equivalents drop, with the same invalidation events', () => {
    const regs = legacyUnit();
    const queued = legacyUnit({ qi: true });
    const byRegister = descriptorsDuring(regs.machine, () => {
      assert.equal(caig(flushContext(regs.unit, CIRG.device, DID, SID)), 3);
      assert.equal(iaig(flushIotlb(regs.unit, IIRG.domain, DID)), 2);
    });
    const byQueue = descriptorsDuring(queued.machine, () => {
      submitDescriptors(queued.unit, [{ type: DescType.CONTEXT_CACHE, fields: { G: 3, DID, SID, FM: 0 } }]);
      submitDescriptors(queued.unit, [{ type: DescType.IOTLB, fields: { G: 2, DID, DW: queued.unit.cap.dwd, DR: 0 } }]);
    });
    assert.deepEqual(byRegister, [`cc_inv G=3 DID=${DID} SID=0x10 FM=0`, `iotlb_inv G=2 DID=${DID}`]);
    assert.deepEqual(byRegister, byQueue);
    assert.deepEqual(regs.unit.cacheSizes(), { context: 0, pasid: 0, iotlb: 0 });
    assert.deepEqual(regs.unit.cacheSizes(), queued.unit.cacheSizes());
  });

  it('a page-selective IOTLB flush through IVA drops that page only, as the page-selective descriptor does, and reports IAIG 11', () => {
    const r = legacyUnit();
    const queued = legacyUnit({ qi: true });
    const events = invalidations(r, () => assert.equal(iaig(flushIotlb(r.unit, IIRG.page, DID, 0x1000, 0)), 3));
    const queuedEvents = invalidations(queued, () => submitDescriptors(queued.unit, [{ type: DescType.IOTLB, fields: { G: 3, DID, ADDR: 0x1000, AM: 0, IH: 0 } }]));
    assert.equal(events.length, 1);
    assert.deepEqual(events, queuedEvents);
    assert.equal(events[0]!.granularity, 'page');
    assert.equal(events[0]!.dropped.iotlb, 1);
    const a = r.unit.translate({ sid: SID, addr: 0x1000 });
    const b = r.unit.translate({ sid: SID, addr: 0x2000 });
    assert.ok(a.ok && a.source === 'walk' && b.ok && b.source === 'iotlb');
  });

  it('reports the granularity performed: CAIG 01/10/11, IAIG 01/10', () => {
    const r = legacyUnit();
    assert.equal(caig(flushContext(r.unit, CIRG.domain, DID)), 2);
    assert.equal(caig(flushContext(r.unit, CIRG.global)), 1);
    assert.equal(iaig(flushIotlb(r.unit, IIRG.global)), 1);
    assert.deepEqual(r.unit.cacheSizes(), { context: 0, pasid: 0, iotlb: 0 });
  });

  it('an address mask above CAP.MAMV is an incorrect request: ignored, IVT cleared, IAIG 00 (Linux: "Flush IOTLB failed")', () => {
    const r = legacyUnit({ features: { maxAddressMask: 2 } });
    const v = flushIotlb(r.unit, IIRG.page, DID, 0, 3);
    assert.equal(pending(v), 0);
    assert.equal(iaig(v), 0);
    assert.equal(r.unit.cacheSizes().iotlb, 2);
  });

  it('without CAP.PSI a page-selective request is performed domain-selectively (a coarser granularity), IAIG 10', () => {
    const r = legacyUnit({ features: { pageSelectiveInvalidation: false } });
    assert.equal(r.unit.cap.psi, 0);
    assert.equal(iaig(flushIotlb(r.unit, IIRG.page, DID, 0x1000, 0)), 2);
    assert.equal(r.unit.cacheSizes().iotlb, 0);
  });

  it('a reserved CIRG (00) is ignored: ICC cleared, CAIG 00, nothing invalidated', () => {
    const r = legacyUnit();
    const v = flushContext(r.unit, 0, DID, SID);
    assert.equal(pending(v), 0);
    assert.equal(caig(v), 0);
    assert.equal(r.unit.cacheSizes().context, 1);
  });

  it('while queued invalidation is enabled the registers do nothing: ICC and IVT stay set', () => {
    const r = legacyUnit({ qi: true });
    assert.equal(pending(flushContext(r.unit, CIRG.global)), 1);
    assert.equal(pending(flushIotlb(r.unit, IIRG.global)), 1);
    assert.deepEqual(r.unit.cacheSizes(), { context: 1, pasid: 0, iotlb: 2 });
  });

  it('a VT-d 6.0 unit has no register-based invalidation: ICC stays set', () => {
    const r = rig();
    assert.equal(r.unit.version[0], 6);
    r.unit.writeRegister('GCMD', 0x8000_0000);
    assert.equal(pending(flushContext(r.unit, CIRG.global)), 1);
  });

  it('a VMM sees CCMD and IOTLB writes as register writes, and a trapper that handles them performs nothing', () => {
    const r = legacyUnit();
    const names: string[] = [];
    const detach = r.unit.trap({ registerWrite: (w) => (names.push(w.name), 'handled') });
    assert.equal(pending(flushContext(r.unit, CIRG.global)), 0, 'the trapper handled the write: the register never saw ICC');
    flushIotlb(r.unit, IIRG.page, DID, 0x1000, 0);
    assert.deepEqual(names, ['CCMD', 'IVA', 'IOTLB']);
    assert.deepEqual(r.unit.cacheSizes(), { context: 1, pasid: 0, iotlb: 2 });
    detach();
  });
});
