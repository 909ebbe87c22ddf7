import * as assert from 'node:assert/strict';
import { join } from 'node:path';
import { U64 } from '../../src/core/u64';
import { describePageRequest, describeQiDescriptor } from '../../src/readers/vtd-descriptors';
import { kernelPageGroupFacts, type KernelField } from '../support/kernel-tables';

/**
 * Page group responses and page requests in both VT-d layouts they have had. The descriptors are built from
 * the facts of the kernel's own macros and structure (test/fixtures/kernel/pgrp-5.10.txt and pgrp-6.12.txt,
 * read from the 5.10 and 6.12 sources), the way prq_event_thread() of each version fills them.
 */

const root = join(__dirname, '../../..');

/** The bit each QI_PGRP_X() macro shifts to, per macro, and QI_PGRP_RESP_TYPE. */
function macros(version: string): { shift: Record<string, number>; type: bigint } {
  const { shift, type } = kernelPageGroupFacts(root, version);
  return { shift, type };
}

/** The bit offset of every field of `struct page_req_dsc`, per qword, with its width. */
function requestLayout(version: string): Record<string, KernelField> {
  return kernelPageGroupFacts(root, version).request;
}

const u64 = (v: bigint) => U64.fromBigInt(v);
const put = (layout: ReturnType<typeof requestLayout>, values: Record<string, bigint>): bigint[] => {
  const w = [0n, 0n, 0n, 0n];
  for (const [name, v] of Object.entries(values)) {
    const f = layout[name];
    assert.ok(f, `page_req_dsc has ${name}`);
    w[f.word] = w[f.word]! | (v << BigInt(f.lsb));
  }
  return w;
};

describe('readers: page group responses and page requests across VT-d revisions', () => {
  const v510 = macros('5.10');
  const v612 = macros('6.12');

  it('finds the macros each version has: PDP in 5.10 only', () => {
    assert.equal(v510.shift.QI_PGRP_PDP, 5);
    assert.equal(v612.shift.QI_PGRP_PDP, undefined);
    for (const m of [v510, v612]) assert.deepEqual([m.shift.QI_PGRP_PASID_P, m.shift.QI_PGRP_RESP_CODE, m.shift.QI_PGRP_DID, m.shift.QI_PGRP_PASID, m.shift.QI_PGRP_LPIG, m.shift.QI_PGRP_IDX], [4, 12, 16, 32, 2, 3]);
  });

  it('reads a 5.10 response with private data as rev 3.x private data and as reserved bits of rev 4.0', () => {
    const s = v510.shift;
    const sh = (name: string, v: bigint) => v << BigInt(s[name]!);
    // prq_event_thread(): a request of PASID 5 from 6a:01.0 with private data, answered INVALID (1).
    const qw0 = sh('QI_PGRP_PASID', 5n) | sh('QI_PGRP_DID', 0x6a08n) | sh('QI_PGRP_PASID_P', 1n) | sh('QI_PGRP_PDP', 1n) | sh('QI_PGRP_RESP_CODE', 1n) | v510.type;
    const qw1 = sh('QI_PGRP_IDX', 0x2cn) | sh('QI_PGRP_LPIG', 1n);
    const priv = [0x1122_3344_5566_7788n, 0x99aa_bbcc_ddee_ff00n];
    const d = describeQiDescriptor([u64(qw0), u64(qw1), u64(priv[0]!), u64(priv[1]!)]);
    assert.equal(d.name, 'Page Group Response');
    assert.deepEqual([d.device, d.pasid, d.fields.RC, d.fields.PRGI, d.fields.LPIG], ['0000:6a:01.0', 5, 1, 0x2c, 1]);
    assert.deepEqual(d.eras?.rev3, { pdp: true, lpig: true, privateData: ['0x1122334455667788', '0x99aabbccddeeff00'], reserved: [] });
    assert.deepEqual(d.eras?.rev4.reserved, [
      'qw0[8:5] = 0x1 (rev 3.x PDP)',
      'qw1[2] (rev 3.x LPIG; hardware ignores it, Linux sets it up to 6.17)',
      'qw2 = 0x1122334455667788',
      'qw3 = 0x99aabbccddeeff00',
    ]);
    // The modelled (rev 4.0) hardware rejects the PDP bit.
    assert.match(d.invalid ?? '', /reserved bits set in qw0/);
  });

  it('reads a 6.12 response as valid in both revisions, with only its LPIG reserved since rev 4.0', () => {
    const s = v612.shift;
    const sh = (name: string, v: bigint) => v << BigInt(s[name]!);
    const qw0 = sh('QI_PGRP_PASID', 5n) | sh('QI_PGRP_DID', 0x6a08n) | sh('QI_PGRP_PASID_P', 1n) | sh('QI_PGRP_RESP_CODE', 0n) | v612.type;
    const qw1 = sh('QI_PGRP_IDX', 0x2cn) | sh('QI_PGRP_LPIG', 1n);
    const d = describeQiDescriptor([u64(qw0), u64(qw1), U64.ZERO, U64.ZERO]);
    assert.equal(d.invalid, undefined);
    assert.deepEqual(d.eras?.rev3, { pdp: false, lpig: true, privateData: null, reserved: [] });
    assert.deepEqual(d.eras?.rev4.reserved, ['qw1[2] (rev 3.x LPIG; hardware ignores it, Linux sets it up to 6.17)']);
    // Without LPIG (a response that ends no group, as 6.18 always writes) nothing is reserved.
    const noLpig = describeQiDescriptor([u64(qw0), u64(sh('QI_PGRP_IDX', 0x2cn)), U64.ZERO, U64.ZERO]);
    assert.deepEqual(noLpig.eras?.rev4.reserved, []);
  });

  it('calls private data without PDP reserved in rev 3.x too, and reads a 128-bit response', () => {
    const qw0 = (5n << 32n) | (0x6a08n << 16n) | (1n << 4n) | v510.type;
    const d = describeQiDescriptor([u64(qw0), u64(0x2cn << 3n), u64(0xdeadn), U64.ZERO]);
    assert.deepEqual(d.eras?.rev3.reserved, ['qw2 = 0xdead without PDP']);
    assert.deepEqual(d.eras?.rev4.reserved, ['qw2 = 0xdead']);
    const short = describeQiDescriptor([u64(qw0 | (1n << 5n)), u64(0x2cn << 3n)]);
    assert.deepEqual(short.eras?.rev3, { pdp: true, lpig: false, privateData: null, reserved: [] });
  });

  it('reads page requests by the field positions of each version\'s struct page_req_dsc', () => {
    const l510 = requestLayout('5.10');
    const l612 = requestLayout('6.12');
    assert.deepEqual(l510.priv_data_present, { word: 0, lsb: 9, width: 1 });
    assert.equal(l612.priv_data_present, undefined);
    assert.deepEqual(l612.rsvd, { word: 0, lsb: 9, width: 7 });
    for (const l of [l510, l612]) {
      const w = put(l, { type: 1n, pasid_present: 1n, rid: 0x6a08n, pasid: 0x1fn, exe_req: 1n, rd_req: 1n, lpig: 1n, prg_index: 0x2cn, addr: 0x7f3a12345n });
      const r = describePageRequest(u64(w[0]!), u64(w[1]!));
      assert.deepEqual([r.rid, r.pasid, r.exec, r.read, r.write, r.priv, r.lastInGroup, r.prgIndex, r.address], [0x6a08, 0x1f, true, true, false, false, true, 0x2c, '0x7f3a12345000']);
      assert.deepEqual(r.eras, { rev3: { privateData: null, reserved: [] }, rev4: { reserved: [] } });
    }
    // 5.10's private data present bit, with the private data of the descriptor's last two qwords.
    const w = put(l510, { type: 1n, pasid_present: 1n, priv_data_present: 1n, rid: 0x6a08n, pasid: 3n, rd_req: 1n, addr: 0x1000n });
    const r = describePageRequest(u64(w[0]!), u64(w[1]!), u64(0xaan), u64(0xbbn));
    assert.equal(r.privateDataPresent, true);
    assert.deepEqual(r.eras.rev3, { privateData: ['0xaa', '0xbb'], reserved: [] });
    // In rev 4.0 the same bit falls in 6.12's `rsvd:7`, qw0 bits 15:9.
    const rsvd = l612.rsvd!;
    assert.deepEqual(r.eras.rev4.reserved, [`qw0[${rsvd.lsb + rsvd.width - 1}:${rsvd.lsb}] = 0x1 (rev 3.x private data present)`, 'qw2 = 0xaa', 'qw3 = 0xbb']);
    // Bits 15:10 were reserved in 5.10 already (its `rsvd:6`).
    const high = put(l510, { type: 1n, rsvd: 0x3n, rid: 0x6a08n });
    assert.deepEqual(l510.rsvd, { word: 0, lsb: 10, width: 6 });
    assert.deepEqual(describePageRequest(u64(high[0]!), u64(high[1]!)).eras.rev3.reserved, ['qw0[15:10] = 0x3']);
  });
});
