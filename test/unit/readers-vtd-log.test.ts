import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { faultReason } from '../../src/core/vtd/fault-reasons';
import { createLogDecoder, decodeLogText } from '../../src/readers/log-decoder';
import type { LogEvent } from '../../src/readers/log-event';
import { explainEvent } from '../../src/readers/log-explain';
import { kernelFaultReasons } from '../support/kernel-tables';

const root = join(__dirname, '../../..');
const decode = (name: string) => decodeLogText(readFileSync(join(root, 'test/fixtures/logs', name), 'utf8'));
/** The reason strings of Linux 6.12's dmar.c (test/fixtures/kernel/fault-reasons-6.12.txt). */
const KERNEL_REASONS = kernelFaultReasons(root, 'fault-reasons-6.12.txt');

type Row = [line: number, kind: string, format: string, device: string | null, pasid: number | null, address: string | null, access: string | null, reason: number | null];

/** The common fields of every event, in order; reason texts are the kernel's own table's. */
function expectRows(events: LogEvent[], rows: Row[], vendor: string | null = 'intel'): void {
  assert.deepEqual(
    events.map((e) => [e.line, e.kind, e.format, e.device, e.pasid, e.address, e.access, e.reason?.code ?? null]),
    rows,
  );
  for (const e of events) {
    // What the IOMMU core prints for every vendor has none.
    assert.equal(e.vendor, e.format.startsWith('iommu-') ? null : vendor, `line ${e.line}`);
    if (e.reason && (e.kind === 'dma-fault' || e.kind === 'interrupt-fault')) assert.equal(e.reason.text, KERNEL_REASONS.get(e.reason.code)!.text, `line ${e.line}`);
  }
}

/** FSTS decoded with every bit false but those named (VT-d spec 11.4.9.1). */
const fsts = (value: string, fri: number, ...set: string[]) => ({
  value,
  ...Object.fromEntries(['pfo', 'ppf', 'afo', 'apf', 'iqe', 'ice', 'ite', 'pro'].map((b) => [b, set.includes(b)])),
  fri,
});

describe('readers: Intel VT-d kernel logs', () => {
  it('reads a 6.x dmesg: capabilities, faults with and without PASID, walk dump, QI errors, page requests', () => {
    const { events, summary } = decode('vtd-6x.log');
    expectRows(events, [
      [3, 'capability', 'vtd-cap', null, null, null, null, null],
      [5, 'capability', 'vtd-cap', null, null, null, null, null],
      [8, 'ratelimit', 'kernel-ratelimit', null, null, null, null, null],
      [10, 'dma-fault', 'vtd-dma-5.15', '0000:2f:00.1', null, '0x7ebb0000', 'read', 0x06],
      [19, 'dma-fault', 'vtd-dma-5.15', '0000:2f:00.1', null, '0x7ebb1000', 'write', 0x05],
      [27, 'dma-fault', 'vtd-dma-5.15', '0000:6a:01.0', 3, '0x7f3a12345000', 'read', 0x71],
      [43, 'interrupt-fault', 'vtd-intr-5.15', '0000:f0:1f.0', null, null, null, 0x26],
      [44, 'invalidation-error', 'vtd-qi-5.13', '0000:6a:01.0', null, null, null, null],
      [48, 'invalidation-error', 'vtd-qi-5.13', null, null, null, null, 0x1],
      [52, 'page-request', 'vtd-prq', '0000:6a:01.0', 3, '0x7f3a12345000', 'write', null],
      [54, 'page-request', 'vtd-prq-invalid', '0000:6a:01.0', null, '0x7f3a12346000', 'read', null],
      [55, 'queue-overflow', 'vtd-prq', null, null, null, null, null],
      [56, 'queue-overflow', 'vtd-prq', null, null, null, null, null],
      [57, 'driver-error', 'vtd-pte-already-set', null, null, null, null, null],
      [58, 'page-request', 'iommu-iopf-aborted', '0000:6a:01.0', 5, null, null, null],
    ]);
    assert.deepEqual(
      { lines: summary.lines, events: summary.events, recognised: summary.recognisedLines, unrecognised: summary.unrecognisedLines, info: summary.informationalLines, suppressed: summary.suppressedMessages },
      { lines: 59, events: 15, recognised: 58, unrecognised: 1, info: 7, suppressed: 191 },
    );
    assert.equal(summary.internalErrors, 0);
    const [cap0, cap1, rate, f1, f2, walked, intr, ite, iqe, prq, prqAlone, ovf, cleared, pteSet, aborted] = events as LogEvent[];

    // dmar0 is a legacy-only unit; dmar1 runs scalable mode with PASIDs and page requests (ECAP.PASID, PSS 19, PRS).
    assert.equal(cap0!.iommu, 'dmar0');
    assert.equal((cap0!.details.summary as { scalableMode: boolean }).scalableMode, false);
    assert.equal((cap0!.details.capFields as { nd: number }).nd, 2);
    assert.equal(cap1!.iommu, 'dmar1');
    assert.deepEqual(
      { ...(cap1!.details.summary as object), version: cap1!.details.version, base: cap1!.details.registerBase },
      {
        scalableMode: true, firstLevel: true, secondLevel: true, nested: true, passThrough: true, queuedInvalidation: true, deviceTlb: true,
        interruptRemapping: true, pageRequests: true, cachingMode: false, pasidBits: 20, pasids: 1048576, domains: 65536, maxGuestAddressWidth: 57,
        secondLevelWidths: [48], faultRecordingRegisters: 1, version: '6:0', base: '0xfbffc000',
      },
    );
    assert.deepEqual(rate!.details, { function: 'dmar_fault', suppressed: 191 });

    assert.equal(f1!.timestamp, '3713481.750962');
    assert.equal(f1!.reason!.text, 'PTE Read access is not set');
    assert.deepEqual(f1!.details.faultStatus, fsts('0x302', 3, 'ppf'));
    // A CONFIG_DMAR_DEBUG kernel dumps the tables after every DMA fault: legacy mode on dmar0, down to the
    // level-1 PTE that lacks the permission (write-only for the read, read-only for the write).
    for (const [f, endLine, pte] of [[f1!, 17, '0x12f3b0002'], [f2!, 26, '0x12f3b1001']] as const) {
      assert.equal(f.endLine, endLine);
      const steps = (f.details.walk as { steps: Record<string, unknown>[] }).steps;
      assert.deepEqual(steps.at(-1), { entry: 'pte', level: 1, value: pte });
      assert.equal(steps.length, 6);
    }

    assert.equal(walked!.endLine, 42);
    assert.equal(walked!.iommu, 'dmar1');
    const walk = walked!.details.walk as { iommu: string; iova: string; steps: Record<string, unknown>[]; pasidEntry: Record<string, unknown> };
    assert.equal(walk.iova, '0x7f3a12345000');
    assert.equal(walk.steps.length, 14);
    assert.deepEqual(walk.steps[0], { entry: 'root', scalable: true, hi: '0x0', low: '0x1049a0001' });
    assert.deepEqual(walk.steps[11], { entry: 'pte', level: 4, value: '0x10ab3f067' });
    // `page table not present at level 2`: the level-3 entry printed before it is clear (6.13+ and backports).
    assert.deepEqual(walk.steps[13], { entry: 'table', level: 2, present: false });
    assert.deepEqual(walk.pasidEntry, { present: true, fpd: false, aw: 2, pgtt: 1, translation: 'first-level', slptptr: '0x0', did: 7, sre: false, flpm: 0, flptptr: '0x10ab3e000' });
    // The PASID directory is at context entry low 63:12 (0x10ab3c20f -> 0x10ab3c000), indexed by PASID >> 6
    // (3 -> 0), 8 bytes an entry; the entry points at the PASID table (63:12), 64 bytes per PASID & 0x3f.
    assert.deepEqual((walked!.details.walk as { pasidDirEntry: unknown }).pasidDirEntry, {
      value: '0x10ab3d001', present: true, pasidTable: '0x10ab3d000', pasidDirectory: '0x10ab3c000', pasid: 3, address: '0x10ab3c000', pasidEntryAddress: '0x10ab3d0c0',
    });

    assert.equal(intr!.details.faultIndex, '0x8');

    assert.equal(ite!.endLine, 47);
    assert.equal(ite!.details.error, 'ITE');
    assert.equal(ite!.details.sid, 0x6a08);
    assert.equal(ite!.details.cleared, true);
    const head = ite!.details.head as { name: string; fields: Record<string, number>; device: string };
    assert.equal(head.name, 'Device-TLB Invalidation');
    assert.deepEqual([head.fields.SID, head.fields.S, head.fields.PFSID, head.device], [0x6a08, 1, 0x6a08, '0000:6a:01.0']);
    assert.equal((ite!.details.prior as { name: string; fields: Record<string, number> }).fields.SW, 1);

    assert.equal(iqe!.details.error, 'IQE');
    assert.equal(iqe!.reason!.text, 'Invalidation Queue Error');
    assert.match(String((iqe!.details.head as { invalid: string }).invalid), /unknown descriptor type 0xf/);
    const prior = iqe!.details.prior as { name: string; granularity: string; pasid: number; address: string; fields: Record<string, number> };
    assert.deepEqual([prior.name, prior.granularity, prior.pasid, prior.address, prior.fields.DID], ['PASID-based IOTLB Invalidation', 'page', 3, '0x7f3a12345000', 2]);

    assert.equal(prq!.endLine, 53);
    assert.equal(prq!.iommu, 'dmar1');
    assert.equal(prq!.details.problem, 'Page request in Privilege Mode');
    const desc = prq!.details.descriptor as Record<string, unknown>;
    assert.deepEqual([desc.priv, desc.read, desc.write, desc.lastInGroup, desc.prgIndex, desc.stopMarker], [true, true, true, true, 44, false]);
    assert.equal((prqAlone!.details.descriptor as { pasid: number | null }).pasid, null);
    assert.deepEqual([ovf!.details.cleared, cleared!.details.cleared, ovf!.iommu], [false, true, 'dmar1']);
    // __domain_mapping's pr_crit: the pfn and both PTE values, as printed (%lx, %llx).
    assert.deepEqual([pteSet!.vendor, pteSet!.details.vpfn, pteSet!.details.existing, pteSet!.details.requested], ['intel', '0x100', '0x123400803', '0x123500803']);
    // The IOMMU core's line names the driver and the device, not the unit.
    assert.deepEqual([aborted!.vendor, aborted!.iommu, aborted!.details.driver], [null, null, 'vfio-pci']);
  });

  it('reads the 5.14 form (0x bus) and the decimal-reason forms of 4.7-5.13, including 113 for 0x71', () => {
    const { events, summary } = decode('vtd-5x.log');
    expectRows(events, [
      [2, 'dma-fault', 'vtd-dma-5.14', '0000:00:1a.0', null, '0x0', 'write', 0x05],
      [3, 'dma-fault', 'vtd-dma-5.14', '0000:65:00.0', 0x1f, '0x55d1f000', 'read', 0x59],
      [4, 'interrupt-fault', 'vtd-intr-5.14', '0000:e2:00.0', null, null, null, 0x25],
      [6, 'dma-fault', 'vtd-dma-pasid-decimal', '0000:00:03.0', null, '0xffff8880fe000', 'read', 0x06],
      [7, 'dma-fault', 'vtd-dma-pasid-decimal', '0000:3b:00.1', 2, '0x7f12e4a00000', 'write', 0x71],
      [8, 'interrupt-fault', 'vtd-intr-decimal', '0000:f0:1f.0', null, null, null, 0x25],
      [9, 'dma-fault', 'vtd-dma-decimal', '0000:00:02.0', null, '0x7effff9000', 'write', 0x05],
      [10, 'page-request', 'vtd-prq-5.x', '0000:6a:01.0', null, '0x7f3a12346000', 'read', null],
      [11, 'page-request', 'vtd-prq-5.x', '0000:6a:01.0', 9, '0x7f3a12347000', 'write', null],
      [12, 'page-request', 'vtd-prq-5.13', null, null, null, null, null],
      [13, 'page-request', 'vtd-prq-5.13', null, null, null, null, null],
      [14, 'invalidation-error', 'vtd-qi-invalid-desc', null, null, null, null, null],
    ]);
    assert.equal(summary.unrecognisedLines, 0);
    assert.equal(events[4]!.details.reasonPrintedInDecimal, true);
    assert.equal(events[4]!.reason!.text, 'SM: Present bit in first-level paging entry is clear');
    assert.equal(events[5]!.details.faultIndex, '0x17');
    assert.equal(events[8]!.details.problem, 'Page request for invalid PASID');
    assert.equal(events[10]!.details.problem, 'Execution request not supported');
    const head = events[11]!.details.head as { type: number; granularity: string; invalid: string };
    assert.deepEqual([head.type, head.granularity, events[11]!.details.printedWords], [2, '', 'qw0/qw1']);
    assert.match(head.invalid, /reserved granularity 0/);
  });

  it('joins the two-line form of <= 4.1 (DMA and interrupt remapping) and reads the old invalid-descriptor line', () => {
    const { events } = decode('vtd-legacy.log');
    expectRows(events, [
      [1, 'dma-fault', 'vtd-dma-two-line', '0000:00:02.0', null, '0x7ff000', 'read', 0x06],
      [3, 'dma-fault', 'vtd-dma-two-line', '0000:06:00.0', null, '0xfffdf000', 'write', 0x02],
      [5, 'interrupt-fault', 'vtd-intr-two-line', '0000:00:1f.0', null, null, null, 0x22],
      [7, 'invalidation-error', 'vtd-qi-invalid-desc', null, null, null, null, null],
      [8, 'dma-fault', 'vtd-dma-decimal', '0000:00:1d.0', null, '0xbdf80000', 'read', 0x06],
    ]);
    assert.deepEqual(events.slice(0, 3).map((e) => e.endLine), [2, 4, 6]);
    assert.equal(events[2]!.details.faultIndex, '0x17');
    assert.equal(events[3]!.details.printedWords, 'low/high');
  });

  it('strips journalctl, syslog, dmesg -x/-T, printk caller ids, serial colour codes and mail quoting, and rejoins wrapped lines', () => {
    const { events, summary } = decode('vtd-wrapped.log');
    expectRows(events, [
      [2, 'dma-fault', 'vtd-dma-5.15', '0000:04:00.0', null, '0xcc0e0000', 'read', 0x06],
      [3, 'dma-fault', 'vtd-dma-5.15', '0000:04:00.0', null, '0xcc0e1000', 'write', 0x05],
      [4, 'dma-fault', 'vtd-dma-5.15', '0000:00:14.3', null, '0x1000', 'read', 0x02],
      [5, 'dma-fault', 'vtd-dma-5.15', '0000:00:14.3', null, '0x2000', 'read', 0x02],
      [6, 'dma-fault', 'vtd-dma-5.15', '0000:00:14.3', null, '0x3000', 'read', 0x02],
      [7, 'dma-fault', 'vtd-dma-5.15', '0000:23:00.0', null, '0xffcc3000', 'read', 0x06],
      [8, 'dma-fault', 'vtd-dma-5.15', '0000:23:00.0', null, '0xffcc4000', 'read', 0x06],
      [10, 'dma-fault', 'vtd-dma-pasid-decimal', '0000:00:05.0', null, '0x76406000', 'read', 0x06],
      [13, 'dma-fault', 'vtd-dma-pasid-decimal', '0000:00:12.0', null, '0x0', 'write', 0x05],
      [15, 'dma-fault', 'vtd-dma-pasid-decimal', '0000:00:02.0', null, '0x7effff9000', 'write', 0x05],
      [17, 'interrupt-fault', 'vtd-intr-5.14', '0000:e2:00.0', null, null, null, 0x25],
      [19, 'dma-fault', 'vtd-dma-5.15', '0000:00:03.0', null, '0x7f000000', 'read', 0x06],
      [21, 'dma-fault', 'vtd-dma-5.15', '0000:00:1f.0', null, '0x9000', 'read', 0x06],
    ]);
    assert.deepEqual(
      events.slice(0, 8).map((e) => e.timestamp),
      ['103.512350', '2024-06-10T04:03:09.123456+02:00', '104.000000', '105.000000', 'Mon Jun 10 04:03:11 2024', '9.691017', '10.000000', null],
    );
    assert.deepEqual(events.slice(7, 12).map((e) => e.endLine), [11, 14, 16, 18, 20]);
    assert.deepEqual(events[0]!.details.faultStatus, fsts('0x3', 0, 'pfo', 'ppf'));
    assert.equal((events[7]!.details.faultStatus as { value: string }).value, '0x3');
    assert.equal(events[12]!.details.printedReason, 'PTE Read access');
    // A start of a fault line that never completes, and the two lines it tried to join with, are not lost.
    assert.deepEqual([summary.lines, summary.unrecognisedLines, summary.unrecognisedIommuLines], [24, 4, 1]);
    assert.deepEqual(summary.unrecognisedSamples, [{ line: 22, text: 'DMAR: [DMA Read NO_PASID] Request device [00:1f.0]' }]);
  });
});

describe('readers: VT-d fault status', () => {
  it('decodes every FSTS bit at its spec position and the fault record index', () => {
    // VT-d spec 11.4.9.1: PFO 0, PPF 1, AFO 2, APF 3, IQE 4, ICE 5, ITE 6, PRO 7, FRI 15:8.
    const cases: [string, ReturnType<typeof fsts>][] = [
      ['1', fsts('0x1', 0, 'pfo')],
      ['2', fsts('0x2', 0, 'ppf')],
      ['4', fsts('0x4', 0, 'afo')],
      ['8', fsts('0x8', 0, 'apf')],
      ['10', fsts('0x10', 0, 'iqe')],
      ['20', fsts('0x20', 0, 'ice')],
      ['40', fsts('0x40', 0, 'ite')],
      ['80', fsts('0x80', 0, 'pro')],
      ['a5', fsts('0xa5', 0, 'pfo', 'afo', 'ice', 'pro')],
      ['1e22', fsts('0x1e22', 0x1e, 'ppf', 'ice')],
      ['ff02', fsts('0xff02', 0xff, 'ppf')],
    ];
    const text = cases.map(([v], i) => `[ ${i + 1}.000000] DMAR: DRHD: handling fault status reg ${v}\n[ ${i + 1}.000001] DMAR: [DMA Read NO_PASID] Request device [00:01.0] fault addr 0x1000 [fault reason 0x06] PTE Read access is not set\n`).join('');
    const { events } = decodeLogText(text);
    assert.deepEqual(events.map((e) => e.details.faultStatus), cases.map(([, d]) => d));
  });
});

describe('readers: a real 6.12 dmesg (QEMU 7.2 VT-d, legacy mode, DMAR_DEBUG)', () => {
  const real = (name: string) => readFileSync(join(root, 'test/fixtures/real-vm/custom612-legacy', name), 'utf8');
  /** Every line that names the IOMMU, and whether the decoder recognised it (used by an event or counted as informational). */
  function iommuLines(text: string): { line: number; text: string; recognised: boolean }[] {
    const d = createLogDecoder();
    const out: { line: number; text: string; recognised: boolean }[] = [];
    text.split('\n').slice(0, -1).forEach((line, i) => {
      const before = d.summary().recognisedLines;
      d.push(line, i + 1);
      if (/DMAR|IOMMU|iommu/i.test(line)) out.push({ line: i + 1, text: line, recognised: d.summary().recognisedLines > before });
    });
    d.end();
    return out;
  }

  for (const name of ['dmesg-boot.txt', 'dmesg-final.txt']) {
    it(`${name}: every line that mentions DMAR, DMAR-IR or an IOMMU is decoded or counted as informational`, () => {
      const lines = iommuLines(real(name));
      assert.deepEqual(lines.filter((l) => !l.recognised), []);
      const { summary } = decodeLogText(real(name));
      assert.deepEqual([summary.unrecognisedIommuLines, summary.internalErrors], [0, 0]);
    });
  }

  it('dmesg-boot.txt: the unit capabilities and the boot lines (ACPI table, scalable mode off, no RMRR, debugfs banner)', () => {
    const { events, summary } = decodeLogText(real('dmesg-boot.txt'));
    expectRows(events, [[117, 'capability', 'vtd-cap', null, null, null, null, null]]);
    assert.equal(events[0]!.iommu, 'dmar0');
    assert.deepEqual([events[0]!.details.registerBase, events[0]!.details.cap, events[0]!.details.ecap, events[0]!.details.version], ['0xfed90000', '0xd2008c222f0686', '0xf00f4e', '1:0']);
    // Lines 2, 37, 45, 86-88, 115, 116, 118-120, 161, 164, 237, 238, 268-278, 280 of the file.
    assert.equal(summary.informationalLines, 27);
  });

  it('dmesg-final.txt: four faults with exactly the fields their lines print, each with its DMAR_DEBUG walk', () => {
    const { events } = decodeLogText(real('dmesg-final.txt'));
    expectRows(events, [
      [117, 'capability', 'vtd-cap', null, null, null, null, null],
      // `[DMA Read NO_PASID] Request device [00:01.0] fault addr 0x1234000 [fault reason 0x06]`: no PASID, segment 0 assumed.
      [324, 'dma-fault', 'vtd-dma-5.15', '0000:00:01.0', null, '0x1234000', 'read', 0x06],
      [331, 'dma-fault', 'vtd-dma-5.15', '0000:00:01.0', null, '0x5678000', 'write', 0x05],
      [339, 'dma-fault', 'vtd-dma-5.15', '0000:00:01.0', null, '0x300000', 'read', 0x06],
      [349, 'dma-fault', 'vtd-dma-5.15', '0000:00:01.0', null, '0x200000', 'write', 0x05],
    ]);
    const faults = events.slice(1);
    assert.deepEqual(faults.map((e) => [e.endLine, e.iommu, e.details.printedReason, e.details.faultStatus]), [
      [329, 'dmar0', undefined, fsts('0x2', 0, 'ppf')],
      [336, 'dmar0', undefined, fsts('0x2', 0, 'ppf')],
      [347, 'dmar0', undefined, fsts('0x2', 0, 'ppf')],
      [356, 'dmar0', undefined, fsts('0x2', 0, 'ppf')],
    ]);
    const steps = (e: LogEvent) => (e.details.walk as { steps: Record<string, unknown>[] }).steps;
    assert.deepEqual(steps(faults[0]!), [
      { entry: 'root', low: '0x18f6001' },
      { entry: 'context', hi: '0x302', low: '0x18f9001' },
      { entry: 'pte', level: 4, value: '0x0' },
      { entry: 'table', level: 3, present: false },
    ]);
    // The VFIO domain's table: the read of 0x300000 ends at a clear level-1 entry; the write to the read-only 0x200000 finds it (R set, W clear).
    assert.deepEqual(steps(faults[2]!).slice(2).map((s) => [s.entry, s.level, s.value ?? s.present]), [['pte', 4, '0x1b50003'], ['pte', 3, '0x1b3d003'], ['pte', 2, '0x1b2c003'], ['pte', 1, '0x0'], ['table', 0, false]]);
    assert.deepEqual(steps(faults[3]!).at(-1), { entry: 'pte', level: 1, value: '0x3aeb9001' });
  });
});

describe('readers: older kernels\' lines (real logs)', () => {
  it('reads the dmar: prefix, the IOMMU <seq> unit line and the lines without a prefix of kernels before 4.2', () => {
    // An Ubuntu 14.04 (3.13) boot and a 4.2-4.6 fault report (util-linux indents the record's second line).
    const text = [
      '[    0.032006] dmar: Host address width 39',
      '[    0.032056] dmar: DRHD base: 0x000000fed90000 flags: 0x0',
      '[    0.032112] dmar: IOMMU 0: reg_base_addr fed90000 ver 1:0 cap c0000020660462 ecap f0101a',
      '[    0.032301] dmar: RMRR base: 0x000000d9ea8000 end: 0x000000d9eb6fff',
      '[    0.028950] IOAPIC id 8 under DRHD base  0xfed91000 IOMMU 1',
      '[    0.000000] Intel-IOMMU: enabled',
      '[    0.536212] DMAR: No ATSR found',
      '[    0.536229] IOMMU 0 0xfed90000: using Queued invalidation',
      '[    0.536231] IOMMU: Setting RMRR:',
      '[    0.536241] IOMMU: Setting identity map for device 0000:00:02.0 [0xbf000000 - 0xcf1fffff]',
      '[   20.210600] DMAR: DRHD: handling fault status reg 2',
      '[   20.210640] DMAR: DMAR:[DMA Read] Request device [04:00.0] fault addr ca6d5000 ',
      '               DMAR:[fault reason 01] Present bit in root entry is clear',
      '',
    ].join('\n');
    const { events, summary } = decodeLogText(text);
    expectRows(events, [
      [3, 'capability', 'vtd-cap', null, null, null, null, null],
      [12, 'dma-fault', 'vtd-dma-two-line', '0000:04:00.0', null, '0xca6d5000', 'read', 0x01],
    ]);
    assert.deepEqual([events[0]!.iommu, events[1]!.endLine, events[1]!.details.faultStatus], ['dmar0', 13, fsts('0x2', 0, 'ppf')]);
    assert.deepEqual([summary.unrecognisedLines, summary.informationalLines], [0, 10]);
  });

  it('reads the DMAR_DEBUG lines from before the 6.13 fixes: `PTE not present at level`, `... table entry is not present`', () => {
    // 6ceb93f952f6's commit message quotes the old dump; f1645676f25d changed `PTE not present at level %d`.
    const text = [
      '[  442.200000] DMAR: [DMA Read PASID 0x1] Request device [6a:01.0] fault addr 0x1000 [fault reason 0x59] SM: Present bit in PASID Table Entry is clear',
      '[  442.200001] DMAR: Dump dmar1 table entries for IOVA 0x1000',
      '[  442.200002] DMAR: scalable mode root entry: hi 0x0000000000000000, low 0x000000012c83c001',
      '[  442.200003] DMAR: context entry: hi 0x0000000000000000, low 0x000000012c83d205',
      '[  442.240357] DMAR: pasid dir entry: 0x000000012c83e001',
      ...[0, 1, 2, 3, 4, 5, 6, 7].map((i) => `[  442.2${i}] DMAR: pasid table entry[${i}]: 0x0000000000000000`),
      '[  442.300742] DMAR: PTE not present at level 2',
      '[  443.000000] DMAR: Dump dmar1 table entries for IOVA 0x2000',
      '[  443.000001] DMAR: root table entry is not present',
      '',
    ].join('\n');
    const { events, summary } = decodeLogText(text);
    assert.equal(summary.unrecognisedLines, 0);
    const walk = events[0]!.details.walk as { steps: Record<string, unknown>[]; pasidDirEntry: Record<string, unknown> };
    assert.deepEqual(walk.steps.at(-1), { entry: 'pte', level: 2, present: false });
    assert.deepEqual(walk.pasidDirEntry, { value: '0x12c83e001', present: true, pasidTable: '0x12c83e000', pasidDirectory: '0x12c83d000', pasid: 1, address: '0x12c83d000', pasidEntryAddress: '0x12c83e040' });
    assert.deepEqual([events[1]!.kind, (events[1]!.details.walk as { steps: unknown[] }).steps], ['page-walk', [{ entry: 'root', present: false }]]);
  });
});

describe('readers: Xen VT-d console', () => {
  it('reads Xen faults with their reason lines (hex), walk entries, old dprintk form and journal-wrapped lines', () => {
    const { events, summary } = decode('xen-vtd.log');
    expectRows(events, [
      [1, 'dma-fault', 'xen-vtd', '0000:00:1e.6', null, '0x0', 'write', 0x02],
      [4, 'dma-fault', 'xen-vtd', '0000:00:02.0', null, '0x76c615d000', 'read', 0x06],
      [12, 'interrupt-fault', 'xen-vtd-intr', '0000:00:1f.0', null, null, null, 0x22],
      [14, 'dma-fault', 'xen-vtd-old', '0000:00:1f.2', null, '0x7dfe000', 'write', 0x05],
      [16, 'dma-fault', 'xen-vtd', '0000:00:02.0', null, '0x39b5845000', 'read', 0x06],
    ]);
    assert.deepEqual(events.map((e) => e.endLine), [2, 11, 13, 15, 20]);
    assert.equal(events[0]!.timestamp, '37.201160');
    assert.equal(events[1]!.details.iommuReg, '0xffff82c000a0c000');
    assert.deepEqual((events[1]!.details.walk as { entries: string[] }).entries, [
      'print_vtd_entries: iommu #0 dev 0000:00:02.0 gmfn 76c615d',
      'root_entry[00] = 1021c60001',
      'context[10] = 2_1021d6001',
      'l4[000] = 9c0000202f171107',
      'l3[1db] = 0',
      'l3[1db] not present',
    ]);
    assert.equal(events[2]!.details.faultIndex, '0x17');
    assert.equal(events[4]!.details.iommuReg, '0xffff82c00021d000');
    assert.equal(events[4]!.timestamp, 'Oct 14 18:41:49.056589');
    assert.deepEqual([summary.unrecognisedLines, summary.unrecognisedIommuLines], [1, 0]);
  });
});

describe('readers: plain-words explanations', () => {
  it('explains a VT-d fault without a walk dump with the meaning and the check of core\'s fault-reason catalogue', () => {
    // vtd-5x.log line 6: a 5.4-5.13 fault line, no DMAR_DEBUG dump after it.
    const e = decode('vtd-5x.log').events[3]!;
    const text = explainEvent(e).join('\n');
    const r = faultReason(6)!;
    assert.match(text, /^line 6: Intel VT-d DMA fault \(vtd-dma-pasid-decimal, Linux 5\.4-5\.13\) at 44\.941989\n/);
    assert.ok(text.includes('device 0000:00:03.0 tried to read 0xffff8880fe000 without a PASID'));
    assert.ok(text.includes(`fault reason 0x06 "PTE Read access is not set": ${r.meaning}`));
    assert.ok(text.includes(`next:  ${r.check}`));
    assert.ok(text.includes('segment 0000 is assumed'));
  });

  it('says when a kernel printed the reason in decimal, and explains walks, QI errors and page requests', () => {
    const old = decode('vtd-5x.log').events[4]!;
    assert.ok(explainEvent(old).join('\n').includes('printed the reason in decimal (113); the VT-d specification numbers it 0x71'));
    const { events } = decode('vtd-6x.log');
    assert.ok(explainEvent(events[5]!).some((l) => l.startsWith('  walk:  root hi 0x0, lo 0x1049a0001 -> context')));
    assert.ok(explainEvent(events[7]!).some((l) => l.includes('ATS invalidation sent to device 0000:6a:01.0 did not complete in time (ITE)')));
    assert.ok(explainEvent(events[9]!).some((l) => l.includes('asked (PRI) for supervisor read/write access to 0x7f3a12345000 with PASID 3')));
    assert.ok(explainEvent(events[1]!).some((l) => l.includes('scalable mode, 65536 domain IDs, 57-bit guest addresses, 20-bit PASIDs')));
  });
});
