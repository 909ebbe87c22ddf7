import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeLogText } from '../../src/readers/log-decoder';
import { explainEvent } from '../../src/readers/log-explain';
import { createLspciReader, describeLspciDevice, type LspciDevice } from '../../src/readers/lspci';

const root = join(__dirname, '../../..');
const fixture = (name: string) => readFileSync(join(root, 'test/fixtures/logs', name), 'utf8');
const decode = (name: string) => decodeLogText(fixture(name));
const pick = (e: { line: number; vendor: string | null; kind: string; device: string | null; pasid: number | null; address: string | null; access: string | null; reason: { code: number } | null }) => [
  e.line, e.vendor, e.kind, e.device, e.pasid, e.address, e.access, e.reason?.code ?? null,
];

describe('readers: QEMU vtd_* traces', () => {
  const { events, summary } = decode('qemu-vtd.trace');
  const at = (line: number) => events.find((e) => e.line === line)!;

  it('turns every vtd_* line into an event of the right kind, with and without the pid@time prefix', () => {
    assert.deepEqual(
      events.map((e) => [e.line, e.kind, e.format]),
      [
        [1, 'register', 'qemu-trace'], [2, 'register', 'qemu-trace'], [3, 'register', 'qemu-trace'],
        [4, 'invalidation', 'qemu-trace'], [5, 'invalidation', 'qemu-trace'], [6, 'invalidation', 'qemu-trace'], [7, 'invalidation', 'qemu-trace'], [8, 'invalidation', 'qemu-trace'],
        [9, 'translation', 'qemu-trace'], [10, 'dma-fault', 'qemu-trace'], [12, 'register', 'qemu-trace'],
        [13, 'translation', 'qemu-trace'], [14, 'translation', 'qemu-trace'], [15, 'attach', 'qemu-trace'], [16, 'interrupt', 'qemu-trace'],
        [17, 'dma-fault', 'qemu-trace'], [18, 'invalidation', 'qemu-trace'], [19, 'trace', 'qemu-trace'],
        [20, 'dma-fault', 'qemu-error'], [21, 'dma-fault', 'qemu-error'],
        [23, 'invalidation', 'qemu-trace'], [24, 'invalidation', 'qemu-trace'],
        [25, 'dma-fault', 'qemu-trace'], [26, 'dma-fault', 'qemu-trace'], [27, 'dma-fault', 'qemu-trace'],
        [28, 'dma-fault', 'qemu-error'], [29, 'dma-fault', 'qemu-trace'], [30, 'dma-fault', 'qemu-trace'], [31, 'interrupt', 'qemu-trace'],
        [32, 'dma-fault', 'qemu-error'],
      ],
    );
    assert.deepEqual([summary.lines, summary.unrecognisedLines, summary.internalErrors], [32, 1, 0]);
    assert.ok(events.every((e) => e.vendor === 'intel'));
  });

  it('decodes faults (reason in decimal), devices from sid/dev/bus+devfn, addresses and PASIDs', () => {
    assert.deepEqual(pick(at(10)), [10, 'intel', 'dma-fault', '0000:00:03.0', null, '0x7f000', 'read', 0x02]);
    assert.equal(at(10).reason!.text, 'Present bit in context entry is clear');
    assert.deepEqual([at(10).timestamp, at(10).details.pid, at(10).details.event], ['1700000000.200001', 12345, 'vtd_dmar_fault']);
    assert.deepEqual(pick(at(17)), [17, 'intel', 'dma-fault', '0000:01:00.0', null, '0x7fffe000', 'write', 0x71]);
    assert.deepEqual(pick(at(7)), [7, 'intel', 'invalidation', null, 5, '0x7f000', null, null]);
    assert.deepEqual([at(7).details.domain, at(7).details.mask], [1, 0]);
    assert.equal(at(5).device, '0000:00:03.0');
    assert.equal(at(9).device, '0000:00:03.0');
    assert.deepEqual([at(13).device, at(13).address, at(13).details.gpa], ['0000:00:03.0', '0x7f000', '0x12345000']);
    assert.deepEqual([at(14).device, at(14).details.slpte], ['0000:00:03.0', '0x12345003']);
    assert.equal(at(18).device, '0000:01:00.0');
    assert.deepEqual(at(19).details, { event: 'vtd_some_future_event', text: 'frobnicated 0x1' });
    assert.deepEqual(pick(at(20)), [20, 'intel', 'dma-fault', '0000:00:03.0', null, '0x1d40000030c0', null, null]);
    assert.deepEqual(pick(at(21)), [21, 'intel', 'dma-fault', null, 0, '0x7f000', 'write', null]);
    assert.equal(at(21).details.error, 'detected slpte permission error');
  });

  // Lines 11 and 23-31 are written from the format strings of QEMU 7.2's hw/i386/trace-events (the version of
  // the real trace in test/fixtures/real-vm/): vtd_frr_new `index %d high 0x%"PRIx64" low 0x%"PRIx64`,
  // vtd_inv_desc_iotlb_pasid `iotlb invalidate domain 0x%"PRIx16" pasid 0x%"PRIx32` (both with PASIDs since
  // "intel-iommu: PASID support", 1b2b12376c8a), vtd_inv_desc `invalidate desc type %s high ... low ...`,
  // vtd_warn_ir_vector `sid 0x%"PRIx16" index %d vec %d (should be: %d)`, and intel_iommu.c's error_report
  // `%s: detected slpte permission error (iova=0x%" PRIx64 ", level=0x%" PRIx32 ", slpte=0x%" PRIx64 ", write=%d, pasid=0x%" PRIx32 ")`.
  // The fault record words are built as vtd_record_frcd does: SID | FR << 32 | (PASID & 0xffff) << 40 | PP << 31 | T << 62.
  it('decodes a fault record (vtd_frr_new): device, page, reason, access and the PASID when PP is set', () => {
    // Right after the vtd_dmar_fault it records (same SID 0x18, same page), the record belongs to that fault.
    assert.deepEqual([at(10).endLine, at(10).details.recorded, at(10).details.recordIndex], [11, true, 0]);
    assert.deepEqual(at(10).details.record, { f: false, t: true, at: 0, pv: 0, fr: 2, pp: false, exe: false, priv: false, t2: false, sid: 0x18 });
    assert.deepEqual(pick(at(25)), [25, 'intel', 'dma-fault', '0000:6a:01.0', 5, '0x7f3a12345000', 'read', 0x06]);
    assert.deepEqual(at(25).details.record, { f: false, t: true, at: 0, pv: 5, fr: 6, pp: true, exe: false, priv: false, t2: false, sid: 0x6a08 });
    assert.deepEqual(pick(at(26)), [26, 'intel', 'dma-fault', '0000:01:00.0', 0xabcd, '0x40000000', 'write', 0x05]);
    // QEMU before a3c8d7e38550 ("intel_iommu: fix FRCD construction macro") sign-extended PP over bits 63:31.
    assert.deepEqual(pick(at(27)), [27, 'intel', 'dma-fault', '0000:6a:01.0', null, '0x7f3a12346000', null, null]);
    assert.match((at(27).details.problems as string[])[0]!, /^PP was set by QEMU before the FRCD fix/);
  });

  it('does not call a fault unrecorded in a trace that never shows a fault record (vtd_frr_new not traced)', () => {
    const fault = (t: string, addr: string) => `12345@1700000000.${t}:vtd_dmar_fault sid 0x18 fault 2 addr ${addr} write 0`;
    const without = decodeLogText([fault('000001', '0x7f000'), fault('000002', '0x7f004'), fault('000003', '0x7f008'), ''].join('\n')).events;
    assert.deepEqual(without.map((e) => e.details.recorded), [null, null, undefined]);
    const withRecords = decodeLogText([fault('000001', '0x7f000'), '12345@1700000000.000001:vtd_frr_new index 0 high 0x4000000200000018 low 0x7f000', fault('000002', '0x7f004'), fault('000003', '0x7f008'), ''].join('\n')).events;
    assert.deepEqual(withRecords.map((e) => e.details.recorded), [true, false, undefined]);
  });

  it('reads an interrupt-remapping fault record as an interrupt fault: no address, the index (FI 63:48) in details.faultIndex', () => {
    // FR 0x22 (IRTE not present), SID 6a:01.0; FI holds the interrupt index 0x11 in bits 63:48 (VT-d spec, FRCD).
    const { events } = decodeLogText('12345@1700000003.000000:vtd_frr_new index 4 high 0x2200006a08 low 0x11000000000000\n');
    assert.deepEqual(pick(events[0]!), [1, 'intel', 'interrupt-fault', '0000:6a:01.0', null, null, null, 0x22]);
    assert.equal(events[0]!.details.faultIndex, '0x11');
    assert.equal(events[0]!.details.addressIs, undefined);
  });

  it('takes non-zero PASIDs from invalidations and error reports, and decodes invalidation descriptors', () => {
    assert.deepEqual(pick(at(23)), [23, 'intel', 'invalidation', null, 0x1f, null, null, null]);
    assert.deepEqual([at(23).details.domain, at(23).details.pasid], [3, 0x1f]);
    assert.deepEqual(pick(at(28)), [28, 'intel', 'dma-fault', null, 5, '0x7f3a12345000', 'write', null]);
    // The wait descriptor's status address is qw1 without its two low bits (the field is address bits 63:2).
    const wait = at(24).details.descriptor as { name: string; statusAddress: string; fields: Record<string, number> };
    assert.deepEqual([wait.name, wait.statusAddress, wait.fields.STATUS, wait.fields.SW], ['Invalidation Wait', '0x104b804', 2, 1]);
  });

  it('checks every number against its format: out-of-range values are named and used for nothing; sid 0xffff is no device', () => {
    assert.deepEqual(pick(at(29)), [29, 'intel', 'dma-fault', '0000:6a:01.0', null, '0x1000', 'read', null]);
    assert.deepEqual(at(29).details.problems, ['fault -5 is out of range (0..0xff)']);
    assert.deepEqual(pick(at(30)), [30, 'intel', 'dma-fault', null, null, '0x2000', null, null]);
    assert.deepEqual(at(30).details.problems, ['sid 0x1ffff is out of range (0..0xffff)', 'fault 300 is out of range (0..0xff)', 'write 7 is out of range (0..0x1)']);
    assert.deepEqual(pick(at(32)), [32, 'intel', 'dma-fault', null, null, '0x3000', null, null]);
    assert.deepEqual(at(32).details.problems, ['pasid 0x100000 is wider than a PASID (20 bits)', 'write 2 is out of range (0..0x1)']);
    // X86_IOMMU_SID_INVALID: an interrupt without a requester (the IO-APIC's), not device ff:1f.7.
    assert.deepEqual([at(31).device, at(31).details.sid, at(31).details.sidInvalid], [null, 0xffff, true]);
  });
});

describe('readers: a real QEMU 7.2 trace of Linux 6.12 (test/fixtures/real-vm)', () => {
  const realVm = (name: string) => readFileSync(join(root, 'test/fixtures/real-vm/custom612-legacy', name), 'utf8');
  const trace = decodeLogText(realVm('qemu-vtd-trace.no-ir-storm.log'));
  const faultFields = (e: { device: string | null; address: string | null; reason: { code: number } | null; access: string | null; pasid: number | null }) => [e.device, e.address, e.reason?.code ?? null, e.access, e.pasid];

  it('decodes every line into an event, with no internal error', () => {
    const lines = realVm('qemu-vtd-trace.no-ir-storm.log').split('\n').filter((l) => l !== '').length;
    // Each of the 4 vtd_frr_new lines is the record of the vtd_dmar_fault before it: one event for the two.
    assert.deepEqual([trace.summary.lines, trace.summary.events, trace.summary.unrecognisedLines, trace.summary.internalErrors], [lines, lines - 4, 0, 0]);
    assert.ok(trace.events.every((e) => e.format === 'qemu-trace' && !('problems' in e.details)));
  });

  it('its recorded faults (vtd_frr_new) are the faults the kernel printed, with their addresses, reasons, access and (no) PASID', () => {
    const recorded = trace.events.filter((e) => e.details.recorded === true);
    // The other 252 were not recorded: QEMU compresses faults of a source id whose record is still pending.
    assert.equal(trace.events.filter((e) => e.details.recorded === false).length, 252);
    const printed = decodeLogText(realVm('dmesg-after-vfio-faults.txt')).events.filter((e) => e.kind === 'dma-fault');
    assert.equal(printed.length, 4);
    assert.deepEqual(recorded.map(faultFields), printed.map(faultFields));
    assert.deepEqual(printed.map(faultFields)[2], ['0000:00:01.0', '0x300000', 0x06, 'read', null]);
  });

  it('every wait descriptor it logs has the status address QEMU writes next (vtd_inv_desc_wait_sw)', () => {
    const waits = trace.events.filter((e) => e.details.event === 'vtd_inv_desc' && (e.details.descriptor as { name: string }).name === 'Invalidation Wait');
    assert.equal(waits.length, 298);
    for (const w of waits) {
      const next = trace.events.find((e) => e.line === w.line + 1)!;
      assert.equal(next.details.event, 'vtd_inv_desc_wait_sw');
      assert.equal((w.details.descriptor as { statusAddress: string }).statusAddress, next.details.addr, `line ${w.line}`);
      assert.equal((w.details.descriptor as { fields: { STATUS: number } }).fields.STATUS, next.details.data);
    }
  });

  it('its per-access faults (vtd_dmar_fault) come from the edu device at 00:01.0 and fall in the pages the kernel reported', () => {
    const faults = trace.events.filter((e) => e.details.event === 'vtd_dmar_fault');
    assert.equal(faults.length, 256);
    const pages = new Set(['0x1234000', '0x5678000', '0x300000', '0x200000']);
    assert.ok(faults.every((e) => e.device === '0000:00:01.0' && pages.has('0x' + (parseInt(e.address!, 16) & ~0xfff).toString(16))));
  });

  it("QEMU's own error reports name the device and address, and PCI_NO_PASID as no PASID", () => {
    const errors = decodeLogText(realVm('qemu-stdout.log')).events;
    assert.deepEqual(errors.map((e) => [e.format, e.kind, e.device, e.address, e.pasid, e.access]), [
      ['qemu-error', 'dma-fault', null, '0x1234000', null, 'read'],
      ['qemu-error', 'dma-fault', '0000:00:01.0', '0x1234000', null, null],
      // `New fault is not recorded due to compression of faults`: what happened to a fault, no fault of its own.
      ['qemu-error', 'register', null, null, null, null],
    ]);
  });
});

describe('readers: intel_iommu and iommu tracepoints', () => {
  const { events, summary } = decode('intel-iommu.ftrace');
  const at = (line: number) => events.find((e) => e.line === line)!;

  it('reads ftrace, trace-cmd and perf script lines of every intel_iommu and iommu tracepoint', () => {
    assert.deepEqual(events.map(pick), [
      [7, 'intel', 'invalidation', null, 3, '0x7f3a12345000', null, null],
      [8, 'intel', 'invalidation', '0000:6a:01.0', null, '0x7ffffffffffff000', null, null],
      [9, 'intel', 'invalidation', null, null, null, null, null],
      [10, 'intel', 'page-request', '0000:6a:01.0', 3, '0x7f3a12345000', 'write', null],
      [11, 'intel', 'cache-tag', '0000:6a:01.0', 3, null, null, null],
      [12, 'intel', 'invalidation', '0000:00:1b.0', null, '0xeab20000', null, null],
      [13, null, 'map', null, null, '0xfff00000', null, null],
      [14, null, 'unmap', null, null, '0xfff00000', null, null],
      [15, null, 'attach', '0000:6a:01.0', null, null, null, null],
      [16, null, 'attach', '0000:6a:01.0', null, null, null, null],
      [17, null, 'dma-fault', '0000:01:00.0', null, '0xdeadb000', 'write', null],
      [18, 'intel', 'invalidation', null, null, null, null, null],
    ]);
    assert.deepEqual(events.map((e) => e.format), [...Array(6).fill('ftrace-intel-iommu'), ...Array(5).fill('ftrace-iommu'), 'ftrace-intel-iommu']);
    // The six header lines are counted, not dropped.
    assert.deepEqual([summary.lines, summary.unrecognisedLines, summary.unrecognisedIommuLines], [18, 6, 0]);
  });

  it('decodes descriptors, page requests (page frame to address), cache tags and the task, CPU and time columns', () => {
    const d7 = at(7).details.descriptor as { traceName: string; granularity: string; fields: Record<string, number> };
    assert.deepEqual([d7.traceName, d7.granularity, d7.fields.DID, d7.fields.PASID], ['p_iotlb_inv', 'page', 2, 3]);
    assert.deepEqual([at(7).iommu, at(7).timestamp, at(7).details.task, at(7).details.cpu], ['dmar1', '5678.123456', 'kworker/1:2-123', 1]);
    const d8 = at(8).details.descriptor as { fields: Record<string, number> };
    assert.deepEqual([d8.fields.S, d8.fields.PFSID, d8.fields.SID], [1, 0x6a08, 0x6a08]);
    const d9 = at(9).details.descriptor as { name: string; fields: Record<string, number> };
    assert.deepEqual([d9.name, d9.fields.SW, d9.fields.STATUS], ['Invalidation Wait', 1, 2]);
    assert.deepEqual([at(10).details.seq, at(10).details.rid, at(10).details.prgIndex, at(10).details.lastPage, at(10).details.privileged], [7, 0x6a08, 0x2c, true, false]);
    assert.deepEqual([at(11).details.type, at(11).details.did, at(11).details.ref], ['iotlb', 7, 1]);
    assert.deepEqual([at(12).details.start, at(12).details.end, at(12).details.pages, at(12).details.mask], ['0xeab20000', '0xeab31fff', 0x20, 5]);
    assert.deepEqual([at(13).details.end, at(13).details.paddr, at(13).details.size], ['0xfff01000', '0x12345f000', 4096]);
    assert.deepEqual([at(14).details.unmappedSize, at(15).details.group, at(17).details.driver], [4096, 14, 'nvme']);
    assert.deepEqual([at(18).details.task, at(18).timestamp, (at(18).details.descriptor as { granularity: string }).granularity], ['swapper-0', '1234.567890', 'global']);
    assert.equal(explainEvent(at(7))[0], 'line 7: Intel VT-d invalidation: qi_submit dmar1 pasid 3 addr 0x7f3a12345000 p_iotlb_inv page');
  });
});

describe('readers: lspci -vvv', () => {
  function read(text: string): { devices: LspciDevice[]; summary: ReturnType<ReturnType<typeof createLspciReader>['summary']> } {
    const r = createLspciReader();
    const devices: LspciDevice[] = [];
    text.split('\n').forEach((l, i) => devices.push(...r.push(l, i + 1)));
    devices.push(...r.end());
    return { devices, summary: r.summary() };
  }
  const { devices, summary } = read(fixture('lspci-vvv.txt'));

  it('reads ATS, PRI and PASID per device, with VMD domains, missing capabilities and access denied', () => {
    assert.deepEqual(devices.map((d) => [d.line, d.device, d.ats !== null, d.pri !== null, d.pasid !== null, d.accessDenied]), [
      [1, '0000:00:02.0', true, true, true, false],
      [18, '0000:6a:01.0', true, true, true, false],
      [33, '0000:3b:00.0', true, false, false, false],
      [41, '0000:00:1f.3', false, false, false, false],
      [45, '0000:01:00.0', false, false, false, true],
      [50, '10000:e1:00.0', false, false, true, false],
    ]);
    // 00:1f.3 (audio) has only Power Management: the one device with none of the three; all six print a Capabilities line.
    assert.deepEqual(summary, { lines: 54, devices: 6, withAts: 3, withPri: 2, withPasid: 3, accessDenied: 1, withNone: 1, withCapabilityList: 6 });
  });

  it('decodes every field: queue depth 0 is 32, STU is a power of two of 4 KiB, PASID width is hex', () => {
    const [igpu, dsa, nic, , , vmd] = devices as LspciDevice[];
    assert.deepEqual(igpu!.ats, { offset: '0x200', version: null, invalidateQueueDepth: 0, queueDepth: 32, enabled: false, smallestTranslationUnit: 0, smallestTranslationBytes: 4096 });
    assert.deepEqual(igpu!.pri, { offset: '0x300', version: null, enabled: false, reset: false, responseFailure: false, unexpectedResponse: false, stopped: true, responsePasidRequired: true, capacity: 0x8000, allocation: 0 });
    assert.deepEqual(igpu!.pasid, { offset: '0x100', version: null, widthBits: 20, maxPasids: 1048576, exec: false, priv: false, enabled: false, execEnabled: false, privEnabled: false });
    assert.deepEqual(dsa!.pasid, { offset: '0x230', version: 1, widthBits: 20, maxPasids: 1048576, exec: false, priv: true, enabled: true, execEnabled: false, privEnabled: true });
    assert.deepEqual([dsa!.pri!.enabled, dsa!.pri!.responseFailure, dsa!.pri!.responsePasidRequired, dsa!.pri!.capacity, dsa!.pri!.allocation], [true, true, null, 0x200, 0x200]);
    assert.deepEqual([nic!.ats!.queueDepth, nic!.ats!.smallestTranslationBytes, nic!.ats!.enabled], [8, 8192, true]);
    assert.deepEqual([vmd!.pasid!.widthBits, vmd!.pasid!.maxPasids, vmd!.pasid!.exec], [8, 256, true]);
    assert.ok(igpu!.notes[0]!.startsWith('ATS is supported but not enabled'));
    assert.ok(dsa!.notes.some((n) => n.startsWith('PRI received a Response Failure')));
    assert.deepEqual(nic!.notes, []);
  });

  it('describes a device in plain words', () => {
    assert.deepEqual(describeLspciDevice(devices[1]!).slice(0, 4), [
      '0000:6a:01.0 System peripheral: Intel Corporation Device 0b25',
      '  ATS:   enabled, invalidate queue depth 32, smallest translation 4 KiB',
      '  PRI:   enabled, capacity 512, allocation 512, stopped, response failure',
      '  PASID: 20-bit (1048576 PASIDs), execute not supported, privileged supported, enabled (exec off, priv on)',
    ]);
  });
});
