import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeLogText } from '../../src/readers/log-decoder';
import type { LogEvent } from '../../src/readers/log-event';
import { explainEvent } from '../../src/readers/log-explain';

const root = join(__dirname, '../../..');
const decode = (name: string) => decodeLogText(readFileSync(join(root, 'test/fixtures/logs', name), 'utf8'));

type Row = [line: number, kind: string, format: string, device: string | null, pasid: number | null, address: string | null, access: string | null, reason: [number, string] | null];

function expectRows(events: LogEvent[], vendor: string, rows: Row[]): void {
  assert.deepEqual(
    events.map((e) => [e.line, e.kind, e.format, e.device, e.pasid, e.address, e.access, e.reason ? [e.reason.code, e.reason.text] : null]),
    rows,
  );
  for (const e of events) assert.equal(e.vendor, vendor, `line ${e.line}`);
}

describe('readers: AMD-Vi event log', () => {
  const { events, summary } = decode('amd-vi.log');
  const at = (line: number) => events.find((e) => e.line === line)!;

  it('reads every event type in its old and new forms, field by field', () => {
    const PF: [number, string] = [0x2, 'IO_PAGE_FAULT'];
    expectRows(events, 'amd', [
      [5, 'dma-fault', 'amd-event-per-device', '0000:15:00.0', null, '0xfdeaf000', 'write', PF],
      [6, 'dma-fault', 'amd-event-bdf', '0000:15:00.0', null, '0xfdeaf040', 'write', PF],
      [7, 'dma-fault', 'amd-event-bdf', '0000:03:00.1', null, '0x36320440', 'write', PF],
      [8, 'dma-fault', 'amd-event-per-device', '0000:23:00.0', null, '0xffffffffffcc3400', 'read', PF],
      [9, 'ratelimit', 'kernel-ratelimit', null, null, null, null, null],
      [10, 'dma-fault', 'amd-event-seg', '0000:23:00.0', null, '0xffffffffffcc3800', 'read', PF],
      [11, 'interrupt-fault', 'amd-event-per-device', '0000:0b:00.0', null, '0xfee00000', null, PF],
      [12, 'interrupt-fault', 'amd-event-bdf', '0000:c8:02.0', null, '0xfffffffdf8050000', null, PF],
      [13, 'config-error', 'amd-event-seg', '0000:00:14.0', null, '0xfffffffdf8000000', 'read', [0x1, 'ILLEGAL_DEV_TABLE_ENTRY']],
      [19, 'config-error', 'amd-event-bdf', '0000:06:00.0', null, '0xfee00000', 'read', [0x1, 'ILLEGAL_DEV_TABLE_ENTRY']],
      [28, 'invalidation-error', 'amd-event', null, null, '0x10d5ff080', null, [0x5, 'ILLEGAL_COMMAND_ERROR']],
      [33, 'invalidation-error', 'amd-event-seg', '0000:41:00.0', null, '0x10d5ff0c0', null, [0x7, 'IOTLB_INV_TIMEOUT']],
      [34, 'config-error', 'amd-event-seg', '0000:41:00.0', 4, '0x7f0000001000', 'read', [0x8, 'INVALID_DEVICE_REQUEST']],
      [35, 'page-request', 'amd-event-seg', '0000:41:00.0', 4, '0x7f0000002000', 'write', [0x9, 'INVALID_PPR_REQUEST']],
      [36, 'hardware-error', 'amd-event-seg', '0000:41:00.0', null, '0x1f0000000', null, [0x3, 'DEV_TAB_HARDWARE_ERROR']],
      [37, 'hardware-error', 'amd-event-seg', '0000:41:00.0', 4, '0x1f0001000', null, [0x4, 'PAGE_TAB_HARDWARE_ERROR']],
      [38, 'hardware-error', 'amd-event', null, null, '0x10d5ff000', null, [0x6, 'COMMAND_HARDWARE_ERROR']],
      [39, 'dma-fault', 'amd-event-per-device', '0000:01:00.0', null, '0x12345000', 'write', [0xd, 'RMP_PAGE_FAULT']],
      [40, 'config-error', 'amd-not-attached', '0000:05:00.0', null, null, null, PF],
      [42, 'hardware-error', 'amd-event', null, null, null, null, null],
      [43, 'invalidation-error', 'amd-completion-wait', null, null, null, null, null],
      [44, 'invalidation-error', 'amd-completion-wait', null, null, null, null, null],
      [45, 'hardware-error', 'amd-no-event', null, null, null, null, null],
      [46, 'dma-fault', 'amd-event-split', '0000:00:14.0', null, '0xfdf8f000', 'read', PF],
      [48, 'dma-fault', 'amd-event-bdf', '0000:00:13.1', null, '0x6f2163200', 'read', PF],
      // dev_err() without `AMD-Vi: `, as 1a21ee1aabf7 left the per-device line.
      [50, 'dma-fault', 'amd-event-per-device', '0000:15:00.0', null, '0xfdeaf000', 'write', PF],
    ]);
    assert.deepEqual([summary.lines, summary.unrecognisedLines, summary.informationalLines, summary.suppressedMessages], [50, 0, 4, 27]);
  });

  it('decodes flags, domain and PASID fields, and the DTE and command dumps in both widths', () => {
    assert.deepEqual(at(7).details.flagBits, { gn: false, nx: false, us: false, i: false, pr: true, rw: true, pe: true, rz: false, tr: false });
    assert.deepEqual([at(5).details.flags, at(5).details.domain], ['0x20', 0]);
    assert.equal(at(8).timestamp, '9691.017228');
    assert.deepEqual(at(34).details.flagBits, { gn: true, nx: false, us: false, i: false, pr: false, rw: false, pe: false, rz: false, tr: true });
    assert.deepEqual([at(35).details.tag, at(35).details.pasidField], ['0x1f', 4]);
    assert.deepEqual([at(39).details.vmgTag, at(39).details.flagsRmp], ['0x1', '0x2']);
    assert.equal(at(13).iommu, 'ivhd0');
    assert.equal(at(13).endLine, 18);
    assert.equal(at(13).details.controlRegister, '0xc22000000082fbd');
    const dte = {
      words: ['0x6000000abc012603', '0x2000000005', '0x200000010ab40011', '0x0'],
      v: true, tv: true, mode: 3, pageTableRoot: '0xabc012000', ppr: false, gv: false, glx: 0, ir: true, iw: true,
      domainId: 5, iotlb: false, iv: true, intTabLen: 8, intCtl: 2,
    };
    assert.deepEqual(at(13).details.dte, dte);
    // The same DTE printed as eight 32-bit words by old kernels.
    assert.equal(at(19).endLine, 27);
    assert.deepEqual(at(19).details.dte, dte);
    assert.deepEqual(at(28).details.command, ['0x0', '0xf0000000', '0x0', '0x0']);
    assert.equal(at(28).endLine, 32);
    assert.deepEqual([at(40).endLine, at(40).details.domain], [41, 3]);
    assert.deepEqual(at(42).details, { eventName: 'UNKNOWN', event: ['0xdeadbeef', '0xf0000000', '0x0', '0x0'], type: 15 });
    assert.equal(at(43).iommu, '0000:00:00.2');
    assert.deepEqual([at(46).endLine, at(48).endLine], [47, 49]);
  });

  it('explains a page fault from its flags', () => {
    const text = explainEvent(at(7)).join('\n');
    // The header names the format; its versions are in --format json and the hover (LOG_FORMATS).
    assert.match(text, /^line 7: AMD-Vi DMA fault \(amd-event-bdf\) at 945\.716782\n/);
    assert.ok(text.includes('device 0000:03:00.1 tried to write to 0x36320440 in domain 0x00'));
    assert.ok(text.includes('flags 0x70: the page was present but did not allow this access'));
    assert.ok(explainEvent(at(13)).some((l) => l.startsWith('  dte:   V=1 TV=1 mode 3 root 0xabc012000 domain 5 IR=1 IW=1')));
  });
});

describe("readers: AMD-Vi events on Xen's console", () => {
  const { events, summary } = decode('xen-amd-vi.log');
  const at = (line: number) => events.find((e) => e.line === line)!;

  it('reads the 4.14+ and the older IO_PAGE_FAULT forms and the raw-word events, field by field', () => {
    const PF: [number, string] = [0x2, 'IO_PAGE_FAULT'];
    expectRows(events, 'amd', [
      // flags 0x10 is PR alone: a read; 0x30 adds RW; 0x8 is I (an interrupt request, no direction); GN makes d4 a PASID.
      [1, 'dma-fault', 'xen-amd-vi', '0000:00:14.1', null, '0xbf5fc000', 'read', PF],
      [2, 'dma-fault', 'xen-amd-vi', '0000:00:14.1', null, '0xfffffff0', 'write', PF],
      [3, 'interrupt-fault', 'xen-amd-vi', '0000:03:00.0', null, '0xfee00000', null, PF],
      [4, 'dma-fault', 'xen-amd-vi', '0001:41:00.0', 4, '0x7f0000001000', 'write', PF],
      // device id 0xa1 is bus 0, devfn 0xa1 = 14.1; 0x300 is 03:00.0; Xen <= 4.2 printed no flags.
      [5, 'dma-fault', 'xen-amd-vi-old', '0000:00:14.1', null, '0xbf695000', 'read', PF],
      [6, 'dma-fault', 'xen-amd-vi-old', '0000:03:00.0', null, '0x100000040', 'write', PF],
      [7, 'dma-fault', 'xen-amd-vi-old', '0000:00:14.0', null, '0xdffff000', null, PF],
      // event[1][31:28] is the code, event[0][15:0] the device, event[3]:event[2] the address.
      [8, 'config-error', 'xen-amd-vi-event', '0000:00:14.0', null, '0xfdf8f000', 'read', [0x1, 'ILLEGAL_DEV_TABLE_ENTRY']],
      [9, 'invalidation-error', 'xen-amd-vi-event', null, null, '0x11d5ff080', null, [0x5, 'ILLEGAL_COMMAND_ERROR']],
      [10, 'invalidation-error', 'xen-amd-vi-event', '0000:41:00.0', null, '0x10d5ff0c0', null, [0x7, 'IOTLB_INV_TIMEOUT']],
      [11, 'hardware-error', 'xen-amd-vi-event', '0000:41:00.0', 4, '0x1f0001000', null, [0x4, 'PAGE_TAB_HARDWARE_ERROR']],
      [12, 'hardware-error', 'xen-amd-vi-event', null, null, null, null, null],
    ]);
    assert.deepEqual([summary.lines, summary.unrecognisedLines], [12, 0]);
    assert.deepEqual([at(1).timestamp, at(5).timestamp, at(8).timestamp], ['5.106118', null, '300.000000']);
    assert.deepEqual([at(1).details.domain, at(1).details.printedFlags, at(4).details.flagBits], [0, ['PR'], { gn: true, nx: false, us: false, i: false, pr: true, rw: true, pe: false, rz: false, tr: false }]);
    assert.deepEqual([at(6).details.domain, at(6).details.flags], [1, '0x30']);
    assert.deepEqual([at(11).details.printedName, at(11).details.flags], ['PAGE_TABLE_HW_ERROR', '0x40']);
    assert.deepEqual([at(12).details.printedName, at(12).details.type, at(12).details.event], ['event', 15, ['0x0', '0xf0000000', '0x0', '0x0']]);
  });
});

describe('readers: Arm SMMUv3 events', () => {
  const { events, summary } = decode('smmu-v3.log');
  const at = (line: number) => events.find((e) => e.line === line)!;

  it('reads raw records, decoded lines, both together, and the other SMMU messages', () => {
    const TR: [number, string] = [0x10, 'F_TRANSLATION'];
    const PERM: [number, string] = [0x13, 'F_PERMISSION'];
    expectRows(events, 'arm', [
      [1, 'dma-fault', 'smmu-decoded', '0001:06:00.0', null, '0xff9bc000', 'write', TR],
      [8, 'dma-fault', 'smmu-raw', null, 1, '0xaaaada7af000', 'read', PERM],
      [13, 'config-error', 'smmu-decoded', '0000:01:00.0', null, null, null, [0x4, 'C_BAD_STE']],
      [19, 'hardware-error', 'smmu-decoded', '0000:01:00.0', 4, '0x12340000', 'write', [0x9, 'F_CD_FETCH']],
      [25, 'dma-fault', 'smmu-decoded-only', null, null, '0x9b0cc000', 'read', PERM],
      [27, 'dma-fault', 'smmu-decoded-only', '0000:75:00.1', 1, '0xaaaada7af000', 'write', TR],
      [32, 'dma-fault', 'smmu-raw', null, null, '0x9b0cc000', 'read', TR],
      [37, 'dma-fault', 'smmu-raw', null, null, '0x400000', 'write', TR],
      [42, 'ratelimit', 'kernel-ratelimit', null, null, null, null, null],
      [43, 'queue-overflow', 'smmu-overflow', null, null, null, null, null],
      [44, 'hardware-error', 'smmu-gerror', null, null, null, null, null],
      [46, 'invalidation-error', 'smmu-cmdq-error', null, null, null, null, [0x1, 'Illegal command']],
      [50, 'page-request', 'smmu-pri-unexpected', null, 3, '0x7f0000001000', 'write', null],
      [53, 'invalidation-error', 'smmu-cmd-sync-timeout', null, null, null, null, null],
    ]);
    assert.deepEqual(events.map((e) => e.endLine), [7, 12, 18, 24, 26, 31, 36, 41, 42, 43, 45, 49, 51, 53]);
    assert.deepEqual([summary.lines, summary.unrecognisedLines, summary.informationalLines], [53, 0, 1]);
  });

  it('decodes the raw dwords (SID, SSV/SSID, STAG, stall, privilege, class) and the decoded lines', () => {
    const first = at(1).details;
    assert.deepEqual(first.raw, ['0x2060000000010', '0x20000000000', '0xff9bc000', '0x0']);
    assert.deepEqual([first.sid, first.ssv, first.stall, first.privileged, first.stage, first.class, first.client], [0x20600, false, false, false, 1, 'Input address caused fault', '0001:06:00.0']);
    assert.equal(at(1).iommu, 'arm-smmu-v3.5.auto');
    const perm = at(8).details;
    assert.deepEqual([perm.sid, perm.ssv, perm.stag, perm.stall, perm.instruction, perm.class], [0x7501, true, 0x176, true, false, 'Input address caused fault']);
    assert.deepEqual(at(13).details, { raw: ['0x10000000004', '0x0', '0x0', '0x0'], sid: 0x100, ssv: false, client: '0000:01:00.0' });
    assert.equal(at(19).details.fetchAddress, '0xabcd0040');
    assert.deepEqual([at(25).details.client, at(25).details.privileged, at(25).details.tableWalk, at(25).details.class], ['(unassigned sid)', true, 'write', 'Stage 1 translation table fetch']);
    assert.deepEqual([at(27).details.stall, at(27).details.stag, at(27).details.ipa], [true, 0x176, '0xaaaada7af000']);
    assert.deepEqual([at(32).iommu, at(32).details.privileged], ['490d0000.iommu', true]);
    assert.equal(at(37).details.sid, 0x180);
    assert.deepEqual(at(43).details, { queue: 'event' });
    assert.deepEqual([at(44).details.gerror, at(44).details.cmdqErr, at(44).details.sfmErr, at(44).details.notes], ['0x101', true, true, ['device has entered Service Failure Mode!']]);
    assert.deepEqual([at(46).details.cons, at(46).details.command], ['0x1000012', ['0x99', '0x0']]);
    assert.deepEqual([at(50).details.sid, at(50).details.prgIndex, at(50).details.last, at(50).details.privileged], [0x100, 5, true, false]);
    assert.deepEqual(at(53).details, { error: 'CMD_SYNC timeout', prod: '0x105', hwprod: '0x106', hwcons: '0x104' });
  });

  it('explains a translation fault with the event meaning and what to check', () => {
    const text = explainEvent(at(27)).join('\n');
    assert.ok(text.includes('device 0000:75:00.1 tried to write to 0xaaaada7af000 with substream (PASID) 1 (F_TRANSLATION)'));
    assert.ok(text.includes('The page table has no valid translation for this address. Stage 1, Input address caused fault.'));
    assert.ok(text.includes('the transaction is stalled'));
  });
});
