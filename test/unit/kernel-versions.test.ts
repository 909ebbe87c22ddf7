// The VT-d log lines the model prints, for every kernel version at which one of them changed, against the
// exact strings the kernel's sources print (format strings of dmar.c/svm.c/prq.c in the 4.1, 5.10, 6.1 and
// 6.12 trees and in the patch mails that changed them) and against lines from real logs. The commits behind
// each boundary are in FORMAT_CHANGES (src/core/driver/log.ts). Then the readers: what the renderers print is
// read as is, and decodes to the fault it was rendered from. One property test (labelled so) renders what the
// readers decoded and compares it with the renderer's own output: there the renderer is its own oracle.
import * as assert from 'node:assert/strict';
import { join } from 'node:path';
import { IommuKernel } from '../../src/core/driver/kernel';
import {
  capabilityLine,
  dmarFaultIsRatelimited,
  dmarFaultLines,
  type DmarFault,
  faultReasonFor,
  faultStatusLine,
  FORMAT_CHANGES,
  isAtLeast,
  KernelLog,
  type KernelVersion,
  prqOverflowLine,
  prqRejectLines,
  prqRejects,
  type QiFault,
  qiClearedLine,
  qiFaultLines,
} from '../../src/core/driver/log';
import { Machine } from '../../src/core/hw/machine';
import { IQE_ANY_SLOT, ITE_WALKS_EVERY_SLOT, QI_BATCHES } from '../../src/core/driver/qi';
import { WRITE_ONLY_LEAVES } from '../../src/core/driver/dma-pte';
import { linuxFaultReason } from '../../src/core/vtd/fault-reasons';
import { decodeLogText } from '../../src/readers/log-decoder';
import type { LogEvent } from '../../src/readers/log-event';
import { LOG_FORMATS } from '../../src/readers/log-formats';
import { kernelFaultReasons } from '../support/kernel-tables';
import { vtdUnits } from '../../src/core/vtd/factory';

const root = join(__dirname, '../../..');

/** Each side of every boundary in FORMAT_CHANGES, oldest first. */
const BOUNDARY_VERSIONS: KernelVersion[] = ['4.1', '4.2', '4.6', '4.7', '4.20', '5.0', '5.3', '5.4', '5.11', '5.12', '5.13', '5.14', '5.15', '6.12', '6.13'];

const read: DmarFault = { sid: 0x0010, address: '7ff000', reason: 0x06, write: false };
const smWrite: DmarFault = { sid: 0x6a08, pasid: 5, address: '10000000', reason: 0x71, write: true };
const irte: DmarFault = { sid: 0x00f8, address: '17000000000000', reason: 0x22, write: false, index: 0x17 };
/** The widest bus/device/function and a 48-bit address, with a reason of the legacy table. */
const ctx: DmarFault = { sid: 0xf0ff, address: 'fffffffff000', reason: 0x02, write: false };

describe('kernel versions: the fault report of dmar_fault_do_one', () => {
  // Expected strings are the format strings of each era applied by hand (sources named in FORMAT_CHANGES).
  const expected: [KernelVersion[], string, string, string, string][] = [
    [
      ['4.1'],
      'dmar: DMAR:[DMA Read] Request device [00:02.0] fault addr 7ff000 \nDMAR:[fault reason 06] PTE Read access is not set',
      'dmar: DMAR:[DMA Write] Request device [6a:01.0] fault addr 10000000 \nDMAR:[fault reason 113] Unknown',
      'dmar: INTR-REMAP: Request device [[00:1f.0] fault index 17\nINTR-REMAP:[fault reason 34] Present field in the IRTE entry is clear',
      'dmar: DMAR:[DMA Read] Request device [f0:1f.7] fault addr fffffffff000 \nDMAR:[fault reason 02] Present bit in context entry is clear',
    ],
    [
      ['4.2', '4.6'],
      'DMAR: DMAR:[DMA Read] Request device [00:02.0] fault addr 7ff000 \nDMAR:[fault reason 06] PTE Read access is not set',
      'DMAR: DMAR:[DMA Write] Request device [6a:01.0] fault addr 10000000 \nDMAR:[fault reason 113] Unknown',
      'DMAR: INTR-REMAP: Request device [[00:1f.0] fault index 17\nINTR-REMAP:[fault reason 34] Present field in the IRTE entry is clear',
      'DMAR: DMAR:[DMA Read] Request device [f0:1f.7] fault addr fffffffff000 \nDMAR:[fault reason 02] Present bit in context entry is clear',
    ],
    [
      ['4.7', '4.20', '5.0', '5.3'],
      'DMAR: [DMA Read] Request device [00:02.0] fault addr 7ff000 [fault reason 06] PTE Read access is not set',
      'DMAR: [DMA Write] Request device [6a:01.0] fault addr 10000000 [fault reason 113] Unknown',
      'DMAR: [INTR-REMAP] Request device [00:1f.0] fault index 17 [fault reason 34] Present field in the IRTE entry is clear',
      'DMAR: [DMA Read] Request device [f0:1f.7] fault addr fffffffff000 [fault reason 02] Present bit in context entry is clear',
    ],
    [
      ['5.4', '5.11', '5.12', '5.13'],
      'DMAR: [DMA Read] Request device [00:02.0] PASID ffffffff fault addr 7ff000 [fault reason 06] PTE Read access is not set',
      'DMAR: [DMA Write] Request device [6a:01.0] PASID 5 fault addr 10000000 [fault reason 113] SM: Present bit in first-level paging entry is clear',
      'DMAR: [INTR-REMAP] Request device [00:1f.0] fault index 17 [fault reason 34] Present field in the IRTE entry is clear',
      'DMAR: [DMA Read] Request device [f0:1f.7] PASID ffffffff fault addr fffffffff000 [fault reason 02] Present bit in context entry is clear',
    ],
    [
      ['5.14'],
      'DMAR: [DMA Read NO_PASID] Request device [0x00:0x02.0] fault addr 0x7ff000 [fault reason 0x06] PTE Read access is not set',
      'DMAR: [DMA Write PASID 0x5] Request device [0x6a:0x01.0] fault addr 0x10000000 [fault reason 0x71] SM: Present bit in first-level paging entry is clear',
      'DMAR: [INTR-REMAP] Request device [0x00:0x1f.0] fault index 0x17 [fault reason 0x22] Present field in the IRTE entry is clear',
      'DMAR: [DMA Read NO_PASID] Request device [0xf0:0x1f.7] fault addr 0xfffffffff000 [fault reason 0x02] Present bit in context entry is clear',
    ],
    [
      ['5.15', '6.12', '6.13'],
      'DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0x7ff000 [fault reason 0x06] PTE Read access is not set',
      'DMAR: [DMA Write PASID 0x5] Request device [6a:01.0] fault addr 0x10000000 [fault reason 0x71] SM: Present bit in first-level paging entry is clear',
      'DMAR: [INTR-REMAP] Request device [00:1f.0] fault index 0x17 [fault reason 0x22] Present field in the IRTE entry is clear',
      'DMAR: [DMA Read NO_PASID] Request device [f0:1f.7] fault addr 0xfffffffff000 [fault reason 0x02] Present bit in context entry is clear',
    ],
  ];
  for (const [versions, dma, sm, intr, wide] of expected) {
    for (const v of versions) {
      it(`${v}: DMA read without PASID, scalable-mode code with PASID, interrupt-remapping fault, widest device`, () => {
        assert.deepEqual([read, smWrite, irte, ctx].flatMap((f) => dmarFaultLines(f, v)), [dma, sm, intr, wide]);
      });
    }
  }

  it('checks the exact strings of every boundary version', () => {
    assert.deepEqual(BOUNDARY_VERSIONS.filter((v) => !expected.some(([versions]) => versions.includes(v))), []);
  });

  it('prints the lines of real logs of each era', () => {
    // A 2016 report from a 4.2-4.6 kernel (util-linux dmesg indents the second line of the record).
    const log = new KernelLog();
    log.version = '4.4';
    log.tick(20.210627);
    for (const l of dmarFaultLines({ sid: 0x0400, address: 'ca6d5000', reason: 0x01, write: false }, log.version)) log.err(l);
    assert.equal(log.dmesg(), '[   20.210640] DMAR: DMAR:[DMA Read] Request device [04:00.0] fault addr ca6d5000 \n               DMAR:[fault reason 01] Present bit in root entry is clear\n');
    // thesofproject/sof-test#749 (2021-07-29): TGL logs from a 5.4-5.13 kernel and from 5.14.
    assert.deepEqual(dmarFaultLines({ sid: 0x0010, address: '70ad5000', reason: 0x07, write: false }, '5.10'), ['DMAR: [DMA Read] Request device [00:02.0] PASID ffffffff fault addr 70ad5000 [fault reason 07] Next page table ptr is invalid']);
    assert.deepEqual(dmarFaultLines({ sid: 0x0010, address: '70a28000', reason: 0x0c, write: false }, '5.14'), ['DMAR: [DMA Read NO_PASID] Request device [0x00:0x02.0] fault addr 0x70a28000 [fault reason 0x0c] non-zero reserved fields in PTE']);
    // test/fixtures/real-vm/custom612-legacy/dmesg-final.txt, lines 323-324 and 331 (Linux 6.12.118).
    assert.equal(faultStatusLine(2, '6.12'), 'DMAR: DRHD: handling fault status reg 2');
    assert.deepEqual(dmarFaultLines({ sid: 0x0008, address: '1234000', reason: 0x06, write: false }, '6.12'), ['DMAR: [DMA Read NO_PASID] Request device [00:01.0] fault addr 0x1234000 [fault reason 0x06] PTE Read access is not set']);
    assert.deepEqual(dmarFaultLines({ sid: 0x0008, address: '5678000', reason: 0x05, write: true }, '6.12'), ['DMAR: [DMA Write NO_PASID] Request device [00:01.0] fault addr 0x5678000 [fault reason 0x05] PTE Write access is not set']);
    // Linux 3.12 (a vfio report on the qemu list): the status line with the old prefix.
    assert.equal(faultStatusLine(2, '3.12'), 'dmar: DRHD: handling fault status reg 2');
  });

  it('rate limits the fault handler from the release that made the report one line', () => {
    assert.deepEqual(BOUNDARY_VERSIONS.map((v) => [v, dmarFaultIsRatelimited(v)]).filter(([, r]) => r).map(([v]) => v)[0], FORMAT_CHANGES.oneLineFault);
    assert.equal(dmarFaultIsRatelimited('4.6'), false);
  });

  // A property, not an oracle: the renderer is compared with itself. What the reader decodes from a version's
  // lines, rendered again, gives the same bytes (so nothing the line carries is lost on the way through the
  // reader). That the bytes are the kernel's is checked above: for every version of BOUNDARY_VERSIONS by the
  // `expected` table (the format strings of the 4.1, 5.10, 6.1 and 6.12 trees and the patch mails; 'checks the
  // exact strings of every boundary version' keeps it complete), and for each era by 'prints the lines of real
  // logs of each era' (4.4, 5.10, 5.14 and 6.12.118 logs).
  for (const v of BOUNDARY_VERSIONS) {
    it(`property (the renderer is its own oracle): ${v}: what the reader decodes renders back to the same bytes`, () => {
      for (const f of [read, smWrite, irte, ctx]) {
        const { events } = decodeLogText(`${dmarFaultLines(f, v).join('\n')}\n`);
        assert.equal(events.length, 1, `${v}: one event`);
        assert.deepEqual(dmarFaultLines(faultOf(events[0]!), v), dmarFaultLines(f, v), `${v}: renders back byte for byte`);
      }
    });
  }
});

describe('kernel versions: fault reasons from the kernel tables', () => {
  const now = kernelFaultReasons(root, 'fault-reasons-6.12.txt');
  const old = kernelFaultReasons(root, 'fault-reasons-4.1.txt');

  it('has the string and type of 6.12 dmar.c for every code 0-255, gaps and "Unknown" included', () => {
    for (let code = 0; code < 256; code++) assert.deepEqual(linuxFaultReason(code), now.get(code), `code 0x${code.toString(16)}`);
  });

  it('answers "Unknown" for what no fault record can hold (negative, fractional, wider than u8), never throwing', () => {
    for (const code of [-1, -0x80, 0.5, 0x20 + 0.25, 0x100, Number.NaN]) assert.deepEqual(linuxFaultReason(code), { text: 'Unknown', type: 'unknown' }, String(code));
  });

  it('has the 4.1 table (no scalable-mode reasons) for kernels before 5.4, and the 6.12 one from 5.4', () => {
    for (let code = 0; code < 256; code++) {
      assert.deepEqual(linuxFaultReason(code, { scalableModeTable: false }), old.get(code), `code 0x${code.toString(16)}`);
      assert.deepEqual(faultReasonFor(code, '5.3'), old.get(code), `5.3 code 0x${code.toString(16)}`);
      assert.deepEqual(faultReasonFor(code, '5.4'), now.get(code), `5.4 code 0x${code.toString(16)}`);
    }
    // The tables themselves: 14 legacy, 7 interrupt-remapping, 0x30-0x90 scalable-mode entries.
    assert.deepEqual([now.get(0x0d)!.text, now.get(0x0e)!.text, now.get(0x26)!.type, now.get(0x27)!.type, now.get(0x90)!.type, now.get(0x91)!.type], ['PCE for translation request specifies blocking', 'Unknown', 'interrupt-remap', 'unknown', 'dma', 'unknown']);
    assert.deepEqual([old.get(0x71), now.get(0x71)!.text, now.get(0x33)], [{ text: 'Unknown', type: 'unknown' }, 'SM: Present bit in first-level paging entry is clear', { text: 'Unknown', type: 'dma' }]);
  });
});

describe('kernel versions: boot, invalidation-queue and page-request lines', () => {
  it('prints the unit line as IOMMU <seq> before 4.2 and with its name after (real logs of both)', () => {
    const u = { name: 'dmar0', seq: 0, regBase: 'fed90000', version: [1, 0] as const, cap: 'c0000020660462', ecap: 'f0101a' };
    // An Ubuntu 14.04 (3.13) syslog: `dmar: IOMMU 0: reg_base_addr fed90000 ver 1:0 cap c0000020660462 ecap f0101a`.
    assert.equal(capabilityLine(u, '3.13'), 'dmar: IOMMU 0: reg_base_addr fed90000 ver 1:0 cap c0000020660462 ecap f0101a');
    assert.equal(capabilityLine(u, '4.1'), 'dmar: IOMMU 0: reg_base_addr fed90000 ver 1:0 cap c0000020660462 ecap f0101a');
    // dmesg-boot.txt line 117 (6.12.118).
    assert.equal(capabilityLine({ ...u, cap: 'd2008c222f0686', ecap: 'f00f4e' }, '6.12'), 'DMAR: dmar0: reg_base_addr fed90000 ver 1:0 cap d2008c222f0686 ecap f00f4e');
  });

  const allErrors: QiFault = { iqe: true, ite: true, ice: true, iqei: 0xf, iteSid: 0xffff, iceSid: 0xffff, head: { qw0: '0', qw1: '0' }, prior: { qw0: '0', qw1: '0' } };
  it('reports invalidation errors as 6.1 does in a real log (PCI: vmd patch by Nirmal Patel, 2023)', () => {
    assert.deepEqual(qiFaultLines(allErrors, '6.1'), [
      'DMAR: VT-d detected Invalidation Queue Error: Reason f',
      'DMAR: VT-d detected Invalidation Time-out Error: SID ffff',
      'DMAR: VT-d detected Invalidation Completion Error: SID ffff',
      'DMAR: QI HEAD: UNKNOWN qw0 = 0x0, qw1 = 0x0',
      'DMAR: QI PRIOR: UNKNOWN qw0 = 0x0, qw1 = 0x0',
    ]);
    assert.equal(qiClearedLine('ITE', '6.1'), 'DMAR: Invalidation Time-out Error (ITE) cleared');
  });

  it('names descriptors by qw0 bits 3:0 as qi_type_string does, and prints an IQE in the form of its era', () => {
    const iqe: QiFault = { ...allErrors, ite: false, ice: false, iqei: 1, head: { qw0: '0000006a006a0803', qw1: '7ffffffffffff001' }, prior: { qw0: '200000025', qw1: '10d5ff000' } };
    assert.deepEqual(qiFaultLines(iqe, '5.13'), [
      'DMAR: VT-d detected Invalidation Queue Error: Reason 1',
      'DMAR: QI HEAD: Device-TLB Invalidation qw0 = 0x6a006a0803, qw1 = 0x7ffffffffffff001',
      'DMAR: QI PRIOR: Invalidation Wait qw0 = 0x200000025, qw1 = 0x10d5ff000',
    ]);
    // 5.10 qi_check_fault: `VT-d detected invalid descriptor: qw0 = %llx, qw1 = %llx`; 4.1: `low=%llx, high=%llx`.
    assert.deepEqual(qiFaultLines(iqe, '5.12'), ['DMAR: VT-d detected invalid descriptor: qw0 = 6a006a0803, qw1 = 7ffffffffffff001']);
    assert.deepEqual(qiFaultLines(iqe, '4.20'), ['DMAR: VT-d detected invalid descriptor: low=6a006a0803, high=7ffffffffffff001']);
    assert.deepEqual(qiFaultLines(iqe, '4.1'), ['dmar: VT-d detected invalid descriptor: low=6a006a0803, high=7ffffffffffff001']);
    // Before 5.13 a time-out and a completion error print nothing, and nothing says "cleared".
    assert.deepEqual(qiFaultLines({ ...allErrors, iqe: false }, '5.12'), []);
    assert.equal(qiClearedLine('IQE', '5.12'), null);
    assert.deepEqual(['1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'f', '12'].map((t) => qiFaultLines({ ...iqe, head: { qw0: t, qw1: '0' } }, '6.12')[1]!.split(': ')[2]!.split(' qw0')[0]), [
      'Context-cache Invalidation', 'IOTLB Invalidation', 'Device-TLB Invalidation', 'Interrupt Entry Cache Invalidation', 'Invalidation Wait',
      'PASID-based IOTLB Invalidation', 'PASID-cache Invalidation', 'PASID-based Device-TLB Invalidation', 'Page Group Response', 'UNKNOWN', 'UNKNOWN', 'IOTLB Invalidation',
    ]);
  });

  const req = { iommu: 'dmar1', qw0: '1234', qw1: '7f3a12346005', pasid: 9 };
  it('prints rejected page requests as each era of svm.c/prq.c does', () => {
    // 6.12 prq.c: a problem line naming the unit, then handle_bad_prq_event's line (%08llx).
    assert.deepEqual(prqRejectLines('privileged', req, '6.12'), ['IOMMU: dmar1: Page request in Privilege Mode', 'dmar1: Invalid page request: 00001234 7f3a12346005']);
    assert.deepEqual(prqRejectLines('no-pasid', req, '6.12'), ['IOMMU: dmar1: Page request without PASID', 'dmar1: Invalid page request: 00001234 7f3a12346005']);
    assert.deepEqual(prqRejectLines('no-device', req, '5.14'), ['dmar1: Invalid page request: 00001234 7f3a12346005']);
    // 6.13 no longer requires a PASID.
    assert.equal(prqRejects('no-pasid', '6.13'), false);
    assert.deepEqual(prqRejectLines('no-pasid', req, '6.13'), []);
    // 5.13 (and the 5.10.y backport in the Debian 5.10 tree): no unit name on the new checks, the descriptor on the old ones.
    assert.deepEqual(prqRejectLines('privileged', req, '5.13'), ['Unexpected page request in Privilege Mode']);
    assert.deepEqual(prqRejectLines('exec-read', req, '5.13'), ['Execution request not supported']);
    assert.deepEqual(prqRejectLines('no-pasid', req, '5.13'), ['dmar1: Page request without PASID: 00001234 7f3a12346005']);
    assert.deepEqual(prqRejectLines('unknown-pasid', req, '5.13'), ['dmar1: Page request for invalid PASID 9: 00001234 7f3a12346005']);
    assert.deepEqual(prqRejectLines('not-canonical', req, '5.13'), []);
    // 5.12 handled privileged and execute requests like any other.
    assert.deepEqual([prqRejects('privileged', '5.12'), prqRejects('exec-read', '5.12'), prqRejects('unknown-pasid', '5.14')], [false, false, false]);
    assert.deepEqual([prqOverflowLine('dmar1', false, '5.11'), prqOverflowLine('dmar1', false, '5.12'), prqOverflowLine('dmar1', true, '6.12')], [null, 'IOMMU: dmar1: PRQ overflow detected', 'IOMMU: dmar1: PRQ overflow cleared']);
  });
});

/** The VT-d format ids whose version range holds `v`. */
function formatHolds(id: string, v: KernelVersion): boolean {
  const f = LOG_FORMATS[id]!;
  assert.ok(f.since !== undefined, `${id} has no version range`);
  return (f.since === null || isAtLeast(v, f.since as KernelVersion)) && (f.until === null || isAtLeast(f.until as KernelVersion, v));
}

/** What the decoded event says about the fault, as the renderer's input. */
function faultOf(e: LogEvent): DmarFault {
  const [bus, dev, fn] = e.device!.slice(5).split(/[:.]/).map((x) => parseInt(x, 16)) as [number, number, number];
  const sid = (bus << 8) | (dev << 3) | fn;
  if (e.kind === 'interrupt-fault') return { sid, address: '0', reason: e.reason!.code, write: false, index: parseInt(String(e.details.faultIndex), 16) };
  return { sid, ...(e.pasid !== null ? { pasid: e.pasid } : {}), address: e.address!.slice(2), reason: e.reason!.code, write: e.access === 'write' };
}

describe('kernel versions: what the renderer prints, the reader reads', () => {
  for (const v of BOUNDARY_VERSIONS) {
    it(`${v}: every line is read as is, in the format of its version, and decodes to the fault it was rendered from`, () => {
      const log = new KernelLog();
      log.version = v;
      const faults = [read, smWrite, irte, ctx];
      const records: string[] = [];
      for (const f of faults) {
        records.push(faultStatusLine(0x2, v), ...dmarFaultLines(f, v));
        log.tick(1);
      }
      for (const r of records) log.err(r);
      const text = log.dmesg();
      const { events, summary } = decodeLogText(text);
      assert.deepEqual([summary.unrecognisedLines, summary.informationalLines, summary.internalErrors], [0, faults.length, 0]);
      const smCode = isAtLeast(v, FORMAT_CHANGES.pasidAndScalableReasons);
      assert.equal(events.length, faults.length);
      events.forEach((e, i) => {
        assert.ok(formatHolds(e.format, v), `${e.format} at ${v}`);
        assert.equal(e.details.printedReason, undefined, 'the printed reason is the one of that version');
        // Before 5.4 the PASID is not printed: the decoded fault has none.
        const f = faults[i]!;
        const expected = e.kind === 'interrupt-fault' || smCode || f.pasid === undefined ? f : { ...f, pasid: undefined };
        // An interrupt-remapping fault prints the index, not the address: the decoded fault has address 0.
        const printed = e.kind === 'interrupt-fault' ? { ...expected, address: '0' } : expected;
        assert.deepEqual(faultOf(e), Object.fromEntries(Object.entries(printed).filter(([, x]) => x !== undefined)));
      });
    });
  }

  for (const v of BOUNDARY_VERSIONS) {
    it(`${v}: the driver model's boot and fault lines are all recognised`, () => {
      const m = new Machine();
      m.addUnit(vtdUnits, { name: 'dmar0', regBase: 0xfed9_0000, features: { scalableMode: false } });
      m.addEndpoint('00:02.0', {}, 'dmar0');
      const k = new IommuKernel(m, { version: v }).boot();
      const r = k.dma('00:02.0', { addr: 0x7ff_f000 });
      assert.ok(!r.result.ok);
      const { events, summary } = decodeLogText(k.log.dmesg());
      assert.deepEqual([summary.unrecognisedLines, summary.internalErrors], [0, 0], k.log.dmesg());
      const fault = events.find((e) => e.kind === 'dma-fault')!;
      assert.deepEqual([fault.device, fault.address, fault.pasid, fault.access, fault.reason?.code], ['0000:00:02.0', '0x7fff000', null, 'read', r.result.reason]);
      assert.ok(formatHolds(fault.format, v));
      const cap = events.find((e) => e.kind === 'capability')!;
      assert.equal(cap.iommu, 'dmar0');
    });
  }

  for (const v of ['5.12', '5.13', '5.14', '6.12'] as const) {
    it(`${v}: the driver model rejects a privileged page request as that version does, and the reader decodes it`, () => {
      const m = new Machine();
      m.addUnit(vtdUnits, { name: 'dmar0', regBase: 0xfed9_0000, features: { supervisorRequests: true } });
      m.addEndpoint('6a:01.0', { ats: {}, pri: {}, pasid: { width: 20 } }, 'dmar0');
      const k = new IommuKernel(m, { version: v }).boot();
      const p = k.newProcess('app');
      p.mmap(0x7000_0000, 0x1000);
      const h = k.svaBind('6a:01.0', p);
      const before = k.log.length;
      k.dma('6a:01.0', { pasid: h.pasid, addr: 0x7000_0000, priv: true });
      const printed = k.log.lines.slice(before).map((l) => l.text);
      const { events, summary } = decodeLogText(k.log.dmesg());
      assert.deepEqual([summary.unrecognisedLines, summary.internalErrors], [0, 0]);
      const prq = events.filter((e) => e.kind === 'page-request');
      if (!prqRejects('privileged', v)) {
        assert.deepEqual([printed, prq.length], [[], 0], 'before 5.13 the request is handled like any other');
        return;
      }
      if (v === '5.13') {
        assert.deepEqual(printed, ['Unexpected page request in Privilege Mode']);
        assert.deepEqual([prq.length, prq[0]!.format, prq[0]!.details.problem], [1, 'vtd-prq-5.13', 'Page request in Privilege Mode']);
        return;
      }
      assert.equal(printed[0], 'IOMMU: dmar0: Page request in Privilege Mode');
      assert.match(printed[1]!, /^dmar0: Invalid page request: [0-9a-f]{8,16} [0-9a-f]{8,16}$/);
      assert.deepEqual([prq.length, prq[0]!.format, prq[0]!.iommu, prq[0]!.device, prq[0]!.pasid, prq[0]!.address], [1, 'vtd-prq', 'dmar0', '0000:6a:01.0', h.pasid, '0x70000000']);
      assert.equal((prq[0]!.details.descriptor as { priv: boolean }).priv, true);
    });
  }
});

describe('kernel versions are mainline releases (src/core/driver/log.ts, "Versions")', () => {
  it('every boundary the model gates on is a mainline major.minor, and a stable patch level is refused, not read as x.y.0', () => {
    const boundaries: Record<string, string> = { ...FORMAT_CHANGES, QI_BATCHES, ITE_WALKS_EVERY_SLOT, IQE_ANY_SLOT, ...WRITE_ONLY_LEAVES };
    assert.deepEqual(Object.entries(boundaries).filter(([, v]) => !/^\d+\.\d+$/.test(v)), []);
    // 6.12.118 (the real VM) has fe89277c9ceb's ITE walk, which mainline has from 7.0: as '6.12' the model is
    // 6.12.0, so the walk there is the old one; the model does not pretend '6.12.118' means more than that.
    assert.equal(ITE_WALKS_EVERY_SLOT, '7.0');
    assert.equal(isAtLeast('6.12', ITE_WALKS_EVERY_SLOT), false);
    const m = new Machine();
    m.addUnit(vtdUnits, { name: 'dmar0' });
    assert.throws(() => new IommuKernel(m, { version: '6.12.118' as KernelVersion }), {
      name: 'RangeError',
      message: 'kernel version 6.12.118: the model follows mainline releases (major.minor, e.g. 6.12 for 6.12.0); the stable backports it knows are listed in src/core/driver/log.ts',
    });
    assert.equal(new IommuKernel(m, { version: '6.12' }).version, '6.12');
  });
});
