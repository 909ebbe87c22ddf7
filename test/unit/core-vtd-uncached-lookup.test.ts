import * as assert from 'node:assert/strict';
import { pasidEntryAddress, writeEntry } from '../../src/core/vtd/tables';
import { device, legacyContext, pageTable, pasidEntry, type Rig, rig, smContext } from '../support/vtd';

/**
 * A unit with caching off decodes root, context and PASID entries straight from memory when no trace is
 * asked for (the allocation-free path). The fault reasons are the VT-d specification's (chapter 7, "Fault
 * reasons"): each malformed entry must fault with the same reason there as with a trace, and a clean one
 * must translate.
 */
const SID = 0x0010; // 00:02.0

function legacy(): Rig {
  const r = rig({ scalable: false, caching: false });
  device(r, '00:02.0');
  const pt = pageTable(r, 'second-level');
  pt.map(0x1000, 0x8000_0000, 0x1000, { read: true, write: true });
  legacyContext(r, SID, { tt: 0, aw: 2, did: 1, slptptr: pt.root });
  return r;
}

function scalable(): Rig {
  const r = rig({ caching: false });
  device(r, '00:02.0', { ats: {}, pri: {}, pasid: { width: 20 } });
  smContext(r, SID);
  const pt = pageTable(r, 'second-level');
  pt.map(0x1000, 0x8000_0000, 0x1000, { read: true, write: true });
  pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root });
  return r;
}

/** The reason without a trace, checked against the traced translation of the same request. */
function reason(r: Rig): number | 'ok' {
  const plain = r.unit.translate({ sid: SID, addr: 0x1000 });
  const traced = r.unit.translate({ sid: SID, addr: 0x1000 }, { trace: true });
  assert.equal(plain.ok ? 'ok' : plain.reason, traced.ok ? 'ok' : traced.reason, 'the traced lookup agrees');
  if (plain.ok) assert.equal(Number(plain.address), 0x8000_0000);
  return plain.ok ? 'ok' : plain.reason;
}

describe('core: VT-d lookups with caching off and no trace', () => {
  it('legacy: a clean entry translates; reserved bits in root or context entry fault 0x0a / 0x0b', () => {
    assert.equal(reason(legacy()), 'ok');
    const root = legacy();
    const mem = root.machine.memory;
    mem.write64(root.rootTable + 8, 0x40, 0); // root qw1 is reserved
    assert.equal(reason(root), 0x0a);
    const ctx = legacy();
    const at = ctx.contextTables.get(0)! + 0x10 * 16;
    ctx.machine.memory.write64(at + 8, 0x100, ctx.machine.memory.readLo(at + 8)); // context qw1 bit 40
    assert.equal(reason(ctx), 0x0b);
  });

  it('legacy: an address width outside CAP.SAGAW faults 0x03', () => {
    const r = legacy();
    legacyContext(r, SID, { tt: 0, aw: 0, did: 1, slptptr: pageTable(r, 'second-level').root });
    assert.equal(reason(r), 0x03);
  });

  it('scalable: a clean entry translates; reserved bits in root, context, PASID-directory or PASID entry fault 0x3a / 0x42 / 0x52 / 0x5a', () => {
    assert.equal(reason(scalable()), 'ok');
    const root = scalable();
    const rm = root.machine.memory;
    writeEntry(rm, root.rootTable, [rm.readLo(root.rootTable) | 0x10, rm.readHi(root.rootTable), 0, 0]);
    assert.equal(reason(root), 0x3a);
    const ctx = scalable();
    ctx.machine.memory.write64(ctx.contextTables.get(0)! + 0x10 * 32 + 16, 0, 1);
    assert.equal(reason(ctx), 0x42);
    const dir = scalable();
    const d = dir.pasidDirs.get(SID)!;
    dir.machine.memory.write64(d, dir.machine.memory.readHi(d), dir.machine.memory.readLo(d) | 0x4);
    assert.equal(reason(dir), 0x52);
    const pe = scalable();
    pe.machine.memory.write64(pasidEntryAddress(pe.pasidTables.get(`${SID}:0`)!, 0) + 24, 1, 0);
    assert.equal(reason(pe), 0x5a);
  });

  it('scalable: a reserved PGTT faults 0x5b', () => {
    const r = scalable();
    pasidEntry(r, SID, 0, { pgtt: 7, did: 1, aw: 2, slptptr: pageTable(r, 'second-level').root });
    assert.equal(reason(r), 0x5b);
  });
});
