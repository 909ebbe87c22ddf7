import * as assert from 'node:assert/strict';
import { DescType } from '../../src/core/vtd/descriptors';
import { submitDescriptors, writeScalableContext } from '../../src/core/vtd/tables';
import { device, legacyContext, pageTable, pasidEntry, rig, smContext } from '../support/vtd';

// Caching mode (CAP.CM = 1): the unit may cache not-present and erroneous entries, so software invalidates
// after every change, not present -> present included. The expectations follow what Linux 6.12 does for it:
// - iommu_init_domains reserves DID 0: "If Caching mode is set, then invalid translations are tagged with
//   domain-id 0";
// - context_present_cache_flush (legacy context entries, domain_context_mapping_one) issues a device-selective
//   context-cache invalidation with DID 0 for the SID, then a domain-selective IOTLB invalidation of the new DID;
// - device_pasid_table_setup (scalable mode) does the same with DID 0 for both;
// - pasid_flush_caches invalidates the PASID cache for (DID, PASID) after a PASID entry became present;
// - cache_tag_flush_range_np flushes nothing for first-stage domains: section 6.1 of the spec asks for
//   invalidation after "updates to remapping structures other than first-stage mapping".

const SID = 0x0010;
const K4 = 0x1000;

function legacyDevice(cachingMode: boolean) {
  const r = rig({ scalable: false, features: { scalableMode: false, cachingMode } });
  device(r, '00:02.0');
  const pt = pageTable(r, 'second-level');
  pt.map(0x1000, 0x8000_0000, K4, { read: true, write: true });
  // The bus has a context table, and the device's entry is not present (not attached yet).
  legacyContext(r, SID, { present: false, tt: 0, aw: 2, did: 0, slptptr: 0 });
  return { r, pt };
}

describe('core: VT-d caching mode', () => {
  it('legacy, CM = 1: a not-present context entry made present still faults until the DID-0 device-selective flush', () => {
    const { r, pt } = legacyDevice(true);
    assert.equal(r.unit.cap.cm, 1);
    const before = r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(!before.ok && before.reason === 0x02);
    legacyContext(r, SID, { tt: 0, aw: 2, did: 5, slptptr: pt.root });
    const cached = r.unit.translate({ sid: SID, addr: 0x1000 }, { trace: true });
    assert.ok(!cached.ok && cached.reason === 0x02, 'the cached not-present context entry is used');
    assert.equal(cached.stale?.cache, 'context-cache');
    assert.match(cached.trace![0]!.check, /cached not-present entry/);
    // Invalidating with the new entry's DID misses it: the not-present entry is tagged with DID 0.
    submitDescriptors(r.unit, [{ type: DescType.CONTEXT_CACHE, fields: { G: 3, DID: 5, SID, FM: 0 } }]);
    const stillCached = r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(!stillCached.ok && stillCached.reason === 0x02);
    // context_present_cache_flush: device-selective with DID 0, then the new domain's IOTLB.
    submitDescriptors(r.unit, [
      { type: DescType.CONTEXT_CACHE, fields: { G: 3, DID: 0, SID, FM: 0 } },
      { type: DescType.IOTLB, fields: { G: 2, DID: 5 } },
    ]);
    const now = r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(now.ok && now.output === '0x80000000' && now.did === 5);
  });

  it('legacy, CM = 1: a domain-selective context invalidation of DID 0 drops the not-present entries too', () => {
    const { r, pt } = legacyDevice(true);
    assert.ok(!r.unit.translate({ sid: SID, addr: 0x1000 }).ok);
    legacyContext(r, SID, { tt: 0, aw: 2, did: 5, slptptr: pt.root });
    submitDescriptors(r.unit, [{ type: DescType.CONTEXT_CACHE, fields: { G: 2, DID: 0 } }]);
    assert.ok(r.unit.translate({ sid: SID, addr: 0x1000 }).ok);
  });

  it('legacy, CM = 0: not present -> present needs no invalidation', () => {
    const { r, pt } = legacyDevice(false);
    assert.equal(r.unit.cap.cm, 0);
    assert.ok(!r.unit.translate({ sid: SID, addr: 0x1000 }).ok);
    legacyContext(r, SID, { tt: 0, aw: 2, did: 5, slptptr: pt.root });
    const now = r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(now.ok && now.output === '0x80000000');
  });

  it('legacy: a present entry is invalidated device-selectively only with its own DID', () => {
    const r = rig({ scalable: false, features: { scalableMode: false } });
    device(r, '00:02.0');
    const pt = pageTable(r, 'second-level');
    pt.map(0x1000, 0x8000_0000, K4, { read: true, write: true });
    legacyContext(r, SID, { tt: 0, aw: 2, did: 5, slptptr: pt.root });
    assert.ok(r.unit.translate({ sid: SID, addr: 0x1000 }).ok);
    submitDescriptors(r.unit, [{ type: DescType.CONTEXT_CACHE, fields: { G: 3, DID: 6, SID, FM: 0 } }]);
    assert.equal(r.unit.cacheSizes().context, 1, 'DID 6 does not name the entry');
    submitDescriptors(r.unit, [{ type: DescType.CONTEXT_CACHE, fields: { G: 3, DID: 5, SID, FM: 0 } }]);
    assert.equal(r.unit.cacheSizes().context, 0);
  });

  it('scalable, CM = 1: device_pasid_table_setup\'s flush (context DID 0, IOTLB DID 0) makes the new context entry seen', () => {
    const r = rig({ features: { cachingMode: true } });
    device(r, '00:02.0');
    const dir = smContext(r, SID);
    const pt = pageTable(r, 'second-level');
    pt.map(0x1000, 0x8000_0000, K4, { read: true, write: true });
    pasidEntry(r, SID, 0, { pgtt: 2, did: 7, aw: 2, slptptr: pt.root });
    const ctxTable = r.contextTables.get(0)!;
    writeScalableContext(r.machine.memory, ctxTable, SID & 0xff, { present: false, pdts: 7, pasidDir: dir });
    const before = r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(!before.ok && before.reason === 0x41);
    smContext(r, SID);
    const cached = r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(!cached.ok && cached.reason === 0x41, 'the cached not-present context entry is used');
    submitDescriptors(r.unit, [
      { type: DescType.CONTEXT_CACHE, fields: { G: 3, DID: 0, SID, FM: 0 } },
      { type: DescType.IOTLB, fields: { G: 2, DID: 0 } },
    ]);
    assert.ok(r.unit.translate({ sid: SID, addr: 0x1000 }).ok);
  });

  it('scalable, CM = 1: a not-present PASID entry made present faults until pasid_flush_caches\' PASID-cache invalidation', () => {
    const r = rig({ features: { cachingMode: true } });
    device(r, '00:02.0');
    smContext(r, SID);
    const pt = pageTable(r, 'second-level');
    pt.map(0x1000, 0x8000_0000, K4, { read: true, write: true });
    pasidEntry(r, SID, 0, { present: false, pgtt: 2, did: 7, aw: 2, slptptr: pt.root });
    const before = r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(!before.ok && before.reason === 0x59);
    pasidEntry(r, SID, 0, { pgtt: 2, did: 7, aw: 2, slptptr: pt.root });
    const cached = r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(!cached.ok && cached.reason === 0x59);
    assert.equal(cached.stale?.cache, 'pasid-cache');
    submitDescriptors(r.unit, [{ type: DescType.PASID_CACHE, fields: { G: 1, DID: 7, PASID: 0 } }]);
    assert.ok(r.unit.translate({ sid: SID, addr: 0x1000 }).ok);
  });

  it('scalable, CM = 1: an erroneous PASID entry (reserved PGTT) is cached as well, until invalidated', () => {
    const r = rig({ features: { cachingMode: true } });
    device(r, '00:02.0');
    smContext(r, SID);
    const pt = pageTable(r, 'second-level');
    pt.map(0x1000, 0x8000_0000, K4, { read: true, write: true });
    pasidEntry(r, SID, 0, { pgtt: 5, did: 7, aw: 2, slptptr: pt.root });
    const bad = r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(!bad.ok && bad.reason === 0x5b);
    pasidEntry(r, SID, 0, { pgtt: 2, did: 7, aw: 2, slptptr: pt.root });
    assert.ok(!r.unit.translate({ sid: SID, addr: 0x1000 }).ok, 'the erroneous entry was cached');
    submitDescriptors(r.unit, [{ type: DescType.PASID_CACHE, fields: { G: 1, DID: 7, PASID: 0 } }]);
    assert.ok(r.unit.translate({ sid: SID, addr: 0x1000 }).ok);
  });

  it('CM = 1: a not-present first-stage entry is not cached: mapping it needs no invalidation', () => {
    const r = rig({ features: { cachingMode: true } });
    device(r, '00:02.0');
    smContext(r, SID);
    const fl = pageTable(r, 'first-level');
    fl.map(0x1000, 0x8000_0000, K4, { read: true, write: true });
    pasidEntry(r, SID, 0, { pgtt: 1, did: 7, flptptr: fl.root });
    const miss = r.unit.translate({ sid: SID, addr: 0x2000 });
    assert.ok(!miss.ok && miss.reason === 0x71);
    fl.map(0x2000, 0x9000_0000, K4, { read: true, write: true });
    const now = r.unit.translate({ sid: SID, addr: 0x2000 });
    assert.ok(now.ok && now.output === '0x90000000');
  });
});
