import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { faultReason, linuxFaultReason } from '../../src/core/vtd/fault-reasons';
import { decodeLogText } from '../../src/readers/log-decoder';
import type { LogEvent } from '../../src/readers/log-event';
import { explainEvent } from '../../src/readers/log-explain';

const root = join(__dirname, '../../..');
const decode = (name: string) => decodeLogText(readFileSync(join(root, 'test/fixtures/logs', name), 'utf8'));

type Row = [line: number, kind: string, format: string, device: string | null, pasid: number | null, address: string | null, access: string | null, reason: number | null];

/** The common fields of every event, in order; reason texts are checked against core's catalogue. */
function expectRows(events: LogEvent[], rows: Row[], vendor: string | null = 'intel'): void {
  assert.deepEqual(
    events.map((e) => [e.line, e.kind, e.format, e.device, e.pasid, e.address, e.access, e.reason?.code ?? null]),
    rows,
  );
  for (const e of events) {
    assert.equal(e.vendor, vendor, `line ${e.line}`);
    if (e.reason && (e.kind === 'dma-fault' || e.kind === 'interrupt-fault')) assert.equal(e.reason.text, linuxFaultReason(e.reason.code).text, `line ${e.line}`);
  }
}

describe('readers: Intel VT-d kernel logs', () => {
  it('reads a 6.x dmesg: capabilities, faults with and without PASID, walk dump, QI errors, page requests', () => {
    const { events, summary } = decode('vtd-6x.log');
    expectRows(events, [
      [3, 'capability', 'vtd-cap', null, null, null, null, null],
      [5, 'capability', 'vtd-cap', null, null, null, null, null],
      [8, 'ratelimit', 'kernel-ratelimit', null, null, null, null, null],
      [10, 'dma-fault', 'vtd-dma-6.0', '0000:2f:00.1', null, '0x7ebb0000', 'read', 0x06],
      [12, 'dma-fault', 'vtd-dma-6.0', '0000:2f:00.1', null, '0x7ebb1000', 'write', 0x05],
      [13, 'dma-fault', 'vtd-dma-6.0', '0000:6a:01.0', 3, '0x7f3a12345000', 'read', 0x71],
      [29, 'interrupt-fault', 'vtd-intr-6.0', '0000:f0:1f.0', null, null, null, 0x26],
      [30, 'invalidation-error', 'vtd-qi-5.13', '0000:6a:01.0', null, null, null, null],
      [34, 'invalidation-error', 'vtd-qi-5.13', null, null, null, null, 0x1],
      [38, 'page-request', 'vtd-prq', '0000:6a:01.0', 3, '0x7f3a12345000', 'write', null],
      [40, 'page-request', 'vtd-prq-invalid', '0000:6a:01.0', null, '0x7f3a12346000', 'read', null],
      [41, 'queue-overflow', 'vtd-prq', null, null, null, null, null],
      [42, 'queue-overflow', 'vtd-prq', null, null, null, null, null],
    ]);
    assert.deepEqual(
      { lines: summary.lines, events: summary.events, recognised: summary.recognisedLines, unrecognised: summary.unrecognisedLines, info: summary.informationalLines, suppressed: summary.suppressedMessages },
      { lines: 43, events: 13, recognised: 42, unrecognised: 1, info: 7, suppressed: 191 },
    );
    assert.equal(summary.internalErrors, 0);
    const [cap0, cap1, rate, f1, , walked, intr, ite, iqe, prq, prqAlone, ovf, cleared] = events as LogEvent[];

    assert.equal(cap0!.iommu, 'dmar0');
    assert.deepEqual(
      { ...(cap0!.details.summary as object), version: cap0!.details.version, base: cap0!.details.registerBase },
      {
        scalableMode: true, firstLevel: true, secondLevel: true, nested: true, passThrough: true, queuedInvalidation: true, deviceTlb: true,
        interruptRemapping: true, pageRequests: false, cachingMode: false, pasidBits: 0, pasids: 0, domains: 65536, maxGuestAddressWidth: 57,
        secondLevelWidths: [48], faultRecordingRegisters: 1, version: '6:0', base: '0xd37fc000',
      },
    );
    assert.equal((cap1!.details.summary as { scalableMode: boolean }).scalableMode, false);
    assert.equal((cap1!.details.capFields as { nd: number }).nd, 2);
    assert.deepEqual(rate!.details, { function: 'dmar_fault', suppressed: 191 });

    assert.equal(f1!.timestamp, '3713481.750962');
    assert.equal(f1!.reason!.text, 'PTE Read access is not set');
    assert.deepEqual(f1!.details.faultStatus, { value: '0x302', pfo: false, ppf: true, iqe: false, ice: false, ite: false, fri: 3 });

    assert.equal(walked!.endLine, 28);
    assert.equal(walked!.iommu, 'dmar1');
    const walk = walked!.details.walk as { iommu: string; iova: string; steps: Record<string, unknown>[]; pasidEntry: Record<string, unknown> };
    assert.equal(walk.iova, '0x7f3a12345000');
    assert.equal(walk.steps.length, 14);
    assert.deepEqual(walk.steps[0], { entry: 'root', scalable: true, hi: '0x0', low: '0x1049a0001' });
    assert.deepEqual(walk.steps[11], { entry: 'pte', level: 4, value: '0x10ab3f067' });
    assert.deepEqual(walk.steps[13], { entry: 'pte', level: 2, present: false });
    assert.deepEqual(walk.pasidEntry, { present: true, fpd: false, aw: 2, pgtt: 1, translation: 'first-level', slptptr: '0x0', did: 7, sre: false, flpm: 0, flptptr: '0x10ab3e000' });

    assert.equal(intr!.details.faultIndex, '0x8');

    assert.equal(ite!.endLine, 33);
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

    assert.equal(prq!.endLine, 39);
    assert.equal(prq!.iommu, 'dmar1');
    assert.equal(prq!.details.problem, 'Page request in Privilege Mode');
    const desc = prq!.details.descriptor as Record<string, unknown>;
    assert.deepEqual([desc.priv, desc.read, desc.write, desc.lastInGroup, desc.prgIndex, desc.stopMarker], [true, true, true, true, 44, false]);
    assert.equal((prqAlone!.details.descriptor as { pasid: number | null }).pasid, null);
    assert.deepEqual([ovf!.details.cleared, cleared!.details.cleared, ovf!.iommu], [false, true, 'dmar1']);
  });

  it('reads the 5.14-5.19 forms (0x bus) and the decimal-reason forms of 4.2-5.13, including 113 for 0x71', () => {
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
      [12, 'page-request', 'vtd-prq-5.10', null, null, null, null, null],
      [13, 'page-request', 'vtd-prq-5.10', null, null, null, null, null],
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
      [2, 'dma-fault', 'vtd-dma-6.0', '0000:04:00.0', null, '0xcc0e0000', 'read', 0x06],
      [3, 'dma-fault', 'vtd-dma-6.0', '0000:04:00.0', null, '0xcc0e1000', 'write', 0x05],
      [4, 'dma-fault', 'vtd-dma-6.0', '0000:00:14.3', null, '0x1000', 'read', 0x02],
      [5, 'dma-fault', 'vtd-dma-6.0', '0000:00:14.3', null, '0x2000', 'read', 0x02],
      [6, 'dma-fault', 'vtd-dma-6.0', '0000:00:14.3', null, '0x3000', 'read', 0x02],
      [7, 'dma-fault', 'vtd-dma-6.0', '0000:23:00.0', null, '0xffcc3000', 'read', 0x06],
      [8, 'dma-fault', 'vtd-dma-6.0', '0000:23:00.0', null, '0xffcc4000', 'read', 0x06],
      [10, 'dma-fault', 'vtd-dma-pasid-decimal', '0000:00:05.0', null, '0x76406000', 'read', 0x06],
      [13, 'dma-fault', 'vtd-dma-pasid-decimal', '0000:00:12.0', null, '0x0', 'write', 0x05],
      [15, 'dma-fault', 'vtd-dma-pasid-decimal', '0000:00:02.0', null, '0x7effff9000', 'write', 0x05],
      [17, 'interrupt-fault', 'vtd-intr-5.14', '0000:e2:00.0', null, null, null, 0x25],
      [19, 'dma-fault', 'vtd-dma-6.0', '0000:00:03.0', null, '0x7f000000', 'read', 0x06],
      [21, 'dma-fault', 'vtd-dma-6.0', '0000:00:1f.0', null, '0x9000', 'read', 0x06],
    ]);
    assert.deepEqual(
      events.slice(0, 8).map((e) => e.timestamp),
      ['103.512350', '2024-06-10T04:03:09.123456+02:00', '104.000000', '105.000000', 'Mon Jun 10 04:03:11 2024', '9.691017', '10.000000', null],
    );
    assert.deepEqual(events.slice(7, 12).map((e) => e.endLine), [11, 14, 16, 18, 20]);
    assert.deepEqual(events[0]!.details.faultStatus, { value: '0x3', pfo: true, ppf: true, iqe: false, ice: false, ite: false, fri: 0 });
    assert.equal((events[7]!.details.faultStatus as { value: string }).value, '0x3');
    assert.equal(events[12]!.details.printedReason, 'PTE Read access');
    // A start of a fault line that never completes, and the two lines it tried to join with, are not lost.
    assert.deepEqual([summary.lines, summary.unrecognisedLines, summary.unrecognisedIommuLines], [24, 4, 1]);
    assert.deepEqual(summary.unrecognisedSamples, [{ line: 22, text: 'DMAR: [DMA Read NO_PASID] Request device [00:1f.0]' }]);
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
  it('explains a VT-d fault with the meaning and the check of core\'s fault-reason catalogue', () => {
    const { events } = decode('vtd-6x.log');
    const text = explainEvent(events[3]!).join('\n');
    const r = faultReason(6)!;
    assert.match(text, /^line 10: Intel VT-d DMA fault \(vtd-dma-6\.0: Linux ~6\.0 and later\) at 3713481\.750962/);
    assert.ok(text.includes('device 0000:2f:00.1 tried to read 0x7ebb0000 without a PASID'));
    assert.ok(text.includes(`fault reason 0x06 "PTE Read access is not set": ${r.meaning}`));
    assert.ok(text.includes(`next:  ${r.check}`));
    assert.ok(text.includes('segment 0000 is assumed'));
  });

  it('says when a kernel printed the reason in decimal, and explains walks, QI errors and page requests', () => {
    const old = decode('vtd-5x.log').events[4]!;
    assert.ok(explainEvent(old).join('\n').includes('printed the reason in decimal (113); the VT-d specification numbers it 0x71'));
    const { events } = decode('vtd-6x.log');
    assert.ok(explainEvent(events[5]!).some((l) => l.startsWith('  walk:  root hi 0x0 low 0x1049a0001 -> context')));
    assert.ok(explainEvent(events[7]!).some((l) => l.includes('ATS invalidation sent to device 0000:6a:01.0 did not complete in time (ITE)')));
    assert.ok(explainEvent(events[9]!).some((l) => l.includes('requested the page at 0x7f3a12345000 with PASID 3')));
    assert.ok(explainEvent(events[0]!).some((l) => l.includes('scalable mode, 65536 domain IDs, 57-bit guest addresses')));
  });
});
