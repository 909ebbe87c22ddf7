import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { type PhysicalMemory, SparseMemory } from '../../src/core/hw/memory';
import type { HwEvent } from '../../src/core/hw/events';
import { DescType } from '../../src/core/vtd/descriptors';
import { submitDescriptors } from '../../src/core/vtd/tables';
import { device, pageTable, pasidEntry, rig, smContext } from '../support/vtd';

const SID = 0x0010;

function contents(mem: PhysicalMemory): string[] {
  return [...mem.pages()].map((p) => `${p.addr.toString(16)}:${Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength).toString('hex')}`);
}

describe('simulated memory', () => {
  it('reads zeros where nothing was written and keeps 52-bit addresses apart', () => {
    const m = new SparseMemory({ hostAddressWidth: 52 });
    assert.equal(m.readLo(0x1234_5678_9000), 0);
    m.write64(0xf_ffff_ffff_f000, 0xdead_beef, 0x1234_5678);
    m.write64(0x0_ffff_ffff_f000, 1, 2);
    assert.deepEqual([m.readHi(0xf_ffff_ffff_f000), m.readLo(0xf_ffff_ffff_f000)], [0xdead_beef, 0x1234_5678]);
    assert.deepEqual([m.readHi(0x0_ffff_ffff_f000), m.readLo(0x0_ffff_ffff_f000)], [1, 2]);
    assert.equal(m.populatedPages, 2);
  });

  it('allocates table pages deterministically and reuses freed ones first', () => {
    const a = new SparseMemory();
    const b = new SparseMemory();
    const seqA = [a.allocPage(), a.allocPage(), a.allocPage()];
    const seqB = [b.allocPage(), b.allocPage(), b.allocPage()];
    assert.deepEqual(seqA, seqB);
    a.write64(seqA[1]!, 0, 7);
    a.freePage(seqA[1]!);
    const again = a.allocPage();
    assert.equal(again, seqA[1]);
    assert.equal(a.readLo(again), 0, 'a reused page comes back zeroed');
  });

  it('restores any snapshot exactly, however writes and snapshots interleave', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant('write' as const), page: fc.nat(7), slot: fc.nat(511), value: fc.nat(0xffff_ffff) }),
            fc.record({ op: fc.constant('snapshot' as const) }),
            fc.record({ op: fc.constant('alloc' as const) }),
            fc.record({ op: fc.constant('free' as const) }),
          ),
          { maxLength: 40 },
        ),
        fc.nat(),
        (ops, pick) => {
          const m = new SparseMemory();
          const snaps: { id: number; state: string[] }[] = [];
          const allocated: number[] = [];
          for (const o of ops) {
            if (o.op === 'write') m.write64(0x4000_0000 + o.page * 4096 + o.slot * 8, o.value, o.value ^ 0xffff);
            else if (o.op === 'snapshot') snaps.push({ id: m.snapshot(), state: contents(m) });
            else if (o.op === 'alloc') allocated.push(m.allocPage());
            else if (allocated.length) m.freePage(allocated.pop()!);
          }
          if (!snaps.length) return;
          const target = snaps[pick % snaps.length]!;
          m.restore(target.id);
          assert.deepEqual(contents(m), target.state);
          // The snapshot stays usable: change things and restore again.
          m.write64(0x4000_0000, 1, 1);
          m.restore(target.id);
          assert.deepEqual(contents(m), target.state);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('machine snapshots and the event stream', () => {
  /** A small scenario touching every kind of state: tables, caches, faults, queues, device TLB, page requests. */
  function scenario(r: ReturnType<typeof rig>) {
    const pt = pageTable(r, 'second-level');
    pt.map(0x10_0000, 0x8000_0000, 0x20_0000, { read: true, write: true });
    pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root });
    r.machine.dma('00:02.0', { addr: 0x10_0040 });
    r.machine.dma('00:02.0', { addr: 0x40_0000, write: true });
    r.unit.translate({ sid: SID, addr: 0x10_1000 }, { trace: true });
    pt.unmap(0x10_0000, 0x20_0000);
    submitDescriptors(r.unit, [{ type: DescType.IOTLB, fields: { G: 2, DID: 1 } }]);
    r.unit.translate({ sid: SID, addr: 0x10_1000 });
    return pt;
  }

  function setup() {
    const r = rig();
    device(r, '00:02.0', { ats: {}, pri: {}, pasid: { width: 20 } });
    smContext(r, SID, { dte: true, pre: true });
    return r;
  }

  it('the same inputs give the same event stream', () => {
    const streams = [0, 1].map(() => {
      const r = setup();
      r.machine.events.startRecording();
      scenario(r);
      return JSON.stringify(r.machine.events.stopRecording());
    });
    assert.equal(streams[0], streams[1]);
    const events = JSON.parse(streams[0]!) as HwEvent[];
    const types = new Set(events.map((e) => e.type));
    for (const t of ['translation', 'fault', 'page-request', 'invalidation', 'table-write', 'register-write']) assert.ok(types.has(t as HwEvent['type']), `the stream has ${t} events`);
    assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1));
  });

  it('restoring a snapshot brings back memory, caches, fault records, queues and device TLBs', () => {
    const r = setup();
    const pt = pageTable(r, 'second-level');
    pt.map(0x10_0000, 0x8000_0000, 0x20_0000, { read: true, write: true });
    pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root });
    r.machine.dma('00:02.0', { addr: 0x10_0040 });
    const probe = () => ({
      mem: contents(r.machine.memory),
      caches: r.unit.cacheSizes(),
      faults: r.unit.pendingFaults().map((f) => [f.index, f.reason, f.address.toString()]),
      regs: r.unit.registers().map((x) => `${x.name}=${x.value}`),
      devtlb: r.machine.endpoint('00:02.0').deviceTlbEntries.map((e) => `${e.base}->${e.output}`),
      t: r.unit.translate({ sid: SID, addr: 0x10_0040 }),
      seq: r.machine.events.sequence,
    });
    const snap = r.machine.snapshot();
    const before = probe();
    r.machine.restore(snap); // probe() translated: undo that too
    pt.unmap(0x10_0000, 0x20_0000);
    r.unit.translate({ sid: SID, addr: 0x9000 });
    r.machine.pageRequest('00:02.0', { pasid: 0, address: 0x9000, read: true, write: false, exec: false, priv: false, lastInGroup: true });
    submitDescriptors(r.unit, [{ type: DescType.IOTLB, fields: { G: 1 } }]);
    assert.notDeepEqual(probe().faults, before.faults);
    r.machine.restore(snap);
    assert.deepEqual(probe(), before);
  });

  it('restoring a snapshot brings back what GCMD latched: translation enable and the root table', () => {
    const r = setup();
    const snap = r.machine.snapshot();
    assert.equal(r.unit.translationEnabled, true);
    const root = r.unit.rootTableAddress;
    r.unit.writeRegister('RTADDR', r.machine.memory.allocPage());
    r.unit.writeRegister('GCMD', 1 << 30); // SRTP, and TE off
    assert.equal(r.unit.translationEnabled, false);
    assert.notEqual(r.unit.rootTableAddress, root);
    r.machine.restore(snap);
    assert.equal(r.unit.readRegister('GSTS').lo >>> 31, 1);
    assert.equal(r.unit.translationEnabled, true, 'GSTS.TES is back, and so is the translation it enables');
    assert.equal(r.unit.rootTableAddress, root);
  });
});
