import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { faultReason } from '../../src/core/vtd/fault-reasons';
import { decodeLogText } from '../../src/readers/log-decoder';
import type { LogEvent } from '../../src/readers/log-event';
import { explainEvent } from '../../src/readers/log-explain';
import { LOG_FORMATS } from '../../src/readers/log-formats';
import { hasMarker, markersFor } from '../../src/readers/log-markers';

// What `decode-log` says about an event, checked against the event's own lines: the dump printed with a
// fault, what QEMU's error lines print and what the QEMU code that prints them does, and per-vendor facts.
// The expectations come from the log lines themselves and the sources named beside each.

const root = join(__dirname, '../../..');
const realVm = (name: string) => readFileSync(join(root, 'test/fixtures/real-vm/custom612-legacy', name), 'utf8');
const logFixture = (name: string) => readFileSync(join(root, 'test/fixtures/logs', name), 'utf8');
const at = (events: LogEvent[], line: number) => events.find((e) => e.line === line)!;
const text = (e: LogEvent) => explainEvent(e).join('\n');
const part = (e: LogEvent, label: string) => explainEvent(e).find((l) => l.startsWith(`  ${label}:`)) ?? '';

describe('readers: a fault is explained from the walk dump printed with it', () => {
  // Linux 6.12's pgtable_walk prints `pte level: N, pte value: V` for each entry on the address's path and,
  // after one that is not present (neither R nor W), `page table not present at level N-1`. A level-N
  // entry of a 4-level second-level table maps 2^(12 + 9(N-1)) bytes: 512 GiB at level 4, 4 KiB at level 1.
  const { events } = decodeLogText(realVm('dmesg-after-vfio-faults.txt'));

  it('an empty level-4 entry: nothing is mapped, whatever the reason says (a read gives 0x06, a write 0x05)', () => {
    // Lines 324-329 and 331-336: `pte level: 4, pte value: 0x0000000000000000`, `page table not present at level 3`.
    for (const [line, code, access] of [[324, 0x06, 'read'], [331, 0x05, 'write']] as const) {
      const e = at(events, line);
      assert.deepEqual([e.reason?.code, e.access], [code, access]);
      const why = part(e, 'why');
      assert.ok(why.includes('The walk stopped at level 4: its entry (0x0) is not present, so nothing is mapped in the 512 GiB at 0x0-0x7fffffffff'), why);
      assert.ok(!why.includes(faultReason(code)!.meaning), 'the dump replaces the general meaning');
      assert.ok(!why.includes('without write permission'), why);
      assert.match(part(e, 'next'), /not already unmapped/);
      assert.ok(part(e, 'walk').endsWith('-> level 4 0x0 (not present)'), part(e, 'walk'));
    }
  });

  it('an empty leaf: `page table not present at level 0` names no table, it says the level-1 entry is clear', () => {
    // Lines 339-347: levels 4 to 2 present (0x...003), `pte level: 1, pte value: 0x0`, `... at level 0`.
    const e = at(events, 339);
    const why = part(e, 'why');
    assert.ok(why.includes('The level-1 entry (0x0), the leaf, is not present'), why);
    assert.ok(why.includes('"page table not present at level 0"'), why);
    assert.ok(why.includes('the 4 KiB page 0x300000-0x300fff is not mapped'), why);
    assert.ok(!part(e, 'walk').includes('level 0'), part(e, 'walk'));
  });

  it('a read-only leaf refuses a write: the dump says what the leaf maps and allows', () => {
    // Lines 349-356: a write to 0x200000, `pte level: 1, pte value: 0x000000003aeb9001` (R set, W clear).
    const e = at(events, 349);
    assert.ok(part(e, 'why').includes('The walk reached the level-1 leaf 0x3aeb9001: it maps the 4 KiB page at 0x200000 to 0x3aeb9000 read-only (R set, W clear), so the write was refused.'), part(e, 'why'));
    assert.match(part(e, 'next'), /DMA_TO_DEVICE/);
  });

  it('a write-only leaf refuses a read, whose reason 0x06 does not mean "not mapped" here', () => {
    // vtd-6x.log lines 10-17: `pte level: 1, pte value: 0x000000012f3b0002` (W set, R clear), after FSTS 0x302.
    const { events: six } = decodeLogText(logFixture('vtd-6x.log'));
    const e = at(six, 10);
    const why = part(e, 'why');
    assert.ok(why.includes('maps the 4 KiB page at 0x7ebb0000 to 0x12f3b0000 write-only (W set, R clear), so the read was refused'), why);
    assert.ok(!why.includes('not mapped'), why);
    assert.match(part(e, 'next'), /DMA_FROM_DEVICE/);
    // FSTS 0x302: PPF (bit 1) and FRI (bits 15:8) = 3; 0x402: FRI 4.
    assert.ok(text(e).includes('fault status 0x302: a primary fault is pending (PPF), the first in fault recording register 3 (FRI).'));
    assert.ok(text(at(six, 19)).includes('fault status 0x402: a primary fault is pending (PPF), the first in fault recording register 4 (FRI).'));
    // A first-level walk (lines 27-42, PGTT 1): `pte level: 3, pte value: 0x0`, then `... at level 2`.
    const fl = at(six, 27);
    assert.ok(part(fl, 'why').includes('The walk stopped at level 3: its entry (0x0) is not present, so nothing is mapped in the 1 GiB at 0x7f3a00000000-0x7f3a3fffffff.'), part(fl, 'why'));
    assert.equal(part(fl, 'pasid'), '  pasid: first-level translation, DID 7, present');
    assert.ok(part(fl, 'walk').startsWith('  walk:  root hi 0x0, lo 0x1049a0001 -> context hi 0x0, lo 0x10ab3c20f -> pasid dir 0x10ab3d001 -> pasid entry [0] 0x49 [1] 0x7 [2] 0x10ab3e000 -> level 4'), part(fl, 'walk'));
  });

  it('reads the dumps of kernels before 6.13 and Xen\'s entries the same way', () => {
    // vtd-walk-only.log: `PTE not present at level 1` (the level-1 entry itself, its value not printed), and a
    // root entry of 0 followed by `context table is not present`.
    const { events: walks } = decodeLogText(logFixture('vtd-walk-only.log'));
    assert.ok(part(walks[0]!, 'walk').endsWith('-> level 2 0x10ab02003 -> level 1 not present'), part(walks[0]!, 'walk'));
    assert.ok(part(walks[0]!, 'what').includes('the level-1 entry, the leaf, is not present: the 4 KiB page 0xfff00000-0xfff00fff is not mapped'));
    assert.equal(part(walks[1]!, 'walk'), '  walk:  root 0x0 -> no context table');
    assert.ok(part(walks[1]!, 'what').includes('the root entry of this bus is not present'));
    // xen-vtd.log lines 4-11: `context[10] = 2_1021d6001` (hi_lo), `l3[1db] = 0`, `l3[1db] not present`.
    const xen = at(decodeLogText(logFixture('xen-vtd.log')).events, 4);
    assert.ok(part(xen, 'why').includes('The walk stopped at level 3: its entry (0x0) is not present, so nothing is mapped in the 1 GiB at 0x76c0000000-0x76ffffffff'), part(xen, 'why'));
    assert.equal(part(xen, 'walk'), '  walk:  root 0x1021c60001 -> context hi 0x2, lo 0x1021d6001 -> level 4 0x9c0000202f171107 -> level 3 0x0 (not present)');
  });

  it('the CLI walk labels an entry\'s words as the kernel\'s dump of the same entry does (hi, then lo)', () => {
    // dmesg-after-vfio-faults.txt line 352 dumps 00:01.0's context entry as `hi 0x0000000000000302, low 0x0000000001b40001`.
    assert.ok(realVm('dmesg-after-vfio-faults.txt').includes('DMAR: context entry: hi 0x0000000000000302, low 0x0000000001b40001'));
    const dir = join(root, 'test/fixtures/real-vm/custom612-legacy/debugfs-vfio-mapped/intel');
    const r = spawnSync(process.execPath, [join(root, 'dist/cli.js'), 'walk', '--debugfs', dir, '--device', '00:01.0', '--write', '0x200000'], { encoding: 'utf8', timeout: 60_000 });
    const lines = r.stdout.split('\n');
    const context = lines.findIndex((l) => / context-entry\[8\]/.test(l));
    assert.equal(lines[context + 1], '      raw     hi 0x0000000000000302, lo 0x0000000001b40001');
    assert.ok(lines.includes('      raw     0x000000003aeb9001'), r.stdout);
    assert.match(r.stdout, /^Result: fault 0x05: PTE Write access is not set/m);
  });
});

describe('readers: QEMU\'s error reports are explained from what they print and what QEMU does there', () => {
  // qemu-stdout.log is QEMU 7.2's stderr in the real run. vtd_iova_to_slpte (hw/i386/intel_iommu.c) prints
  // `detected slpte permission error` for any entry without the access's permission and returns
  // `is_write ? -VTD_FR_WRITE : -VTD_FR_READ`: a read stopped by an empty level-4 entry gives 0x06.
  const errors = decodeLogText(realVm('qemu-stdout.log')).events;

  it('a permission error at an empty entry: where the walk stopped, and the reason QEMU returns there, as implied', () => {
    const e = errors[0]!;
    assert.equal(e.reason, null, 'the line prints no code');
    assert.deepEqual(e.details.impliedReason, { code: 0x06, text: 'PTE Read access is not set', qemu: 'VTD_FR_READ' });
    assert.deepEqual([e.details.level, e.details.entry, e.access, e.pasid], [4, '0x0', 'read', null]);
    const t = text(e);
    assert.ok(part(e, 'what').includes('refused a read of 0x1234000 without a PASID: the walk stopped at level 4: its entry (0x0) is not present, so nothing is mapped in the 512 GiB at 0x0-0x7fffffffff'), t);
    assert.ok(part(e, 'why').includes('fault reason 0x06 "PTE Read access is not set" (VTD_FR_READ)'), t);
    assert.ok(!t.includes('line with the fault reason is missing'), t);
    assert.ok(t.includes('once per run (error_report_once)'), t);
  });

  it('the translation failure names the device but no reason; compression is what became of later faults', () => {
    assert.ok(part(errors[1]!, 'what').includes('could not translate 0x1234000 for device 0000:00:01.0'));
    assert.ok(!('impliedReason' in errors[1]!.details));
    const c = errors[2]!;
    assert.deepEqual([c.kind, c.details.recorded], ['register', false]);
    assert.ok(explainEvent(c)[0]!.startsWith('line 3: Intel VT-d fault recording (qemu-error)'));
    assert.ok(part(c, 'what').includes('QEMU dropped a fault: a fault of the same source id was still pending'));
  });

  it('recognises every error line of the walk and fault-recording paths, with the code each path returns', () => {
    // Each line as its format string in intel_iommu.c prints it (QEMU 7.2 to 10.x; the first-stage walk's
    // flpte line is 9.x and later); `level=0x%xslpte=` has no separator in QEMU's own format. The comment
    // beside each is the return value of the path that prints it.
    const lines = [
      'qemu-system-x86_64: vtd_iova_to_slpte: detected slpte permission error (iova=0x7f000, level=0x1, slpte=0x12345001, write=1, pasid=0xffffffff)', // -VTD_FR_WRITE
      'qemu-system-x86_64: vtd_iova_to_slpte: detected splte reserve non-zero iova=0xfffff002, level=0x1slpte=0x102681803)', // -VTD_FR_PAGING_ENTRY_RSVD
      'qemu-system-x86_64: vtd_iova_to_flpte: detected flpte reserved non-zero iova=0x1000, level=0x1flpte=0x8000000000000807, pasid=0x0)', // -VTD_FR_FS_PAGING_ENTRY_RSVD
      'qemu-system-x86_64: vtd_iova_to_slpte: detected IOVA overflow (iova=0x1d40000030c0,pasid=0xffffffff)', // -VTD_FR_ADDR_BEYOND_MGAW
      'qemu-system-x86_64: vtd_iova_to_slpte: detected read error on DMAR slpte (iova=0x1000, pasid=0xffffffff)', // CONTEXT_ENTRY_INV or PAGING_ENTRY_INV
      'qemu-system-x86_64: vtd_root_entry_rsvd_bits_check: invalid root entry: hi=0x0, lo=0x8000000001234001', // -VTD_FR_ROOT_ENTRY_RSVD
      'qemu-system-x86_64: vtd_context_entry_rsvd_bits_check: invalid context entry: hi=802, lo=1234001 (reserved nonzero)', // -VTD_FR_CONTEXT_ENTRY_RSVD
      'qemu-system-x86_64: vtd_dev_to_context_entry: invalid context entry: hi=3, lo=1234001 (level 5 not supported)', // -VTD_FR_CONTEXT_ENTRY_INV
      'qemu-system-x86_64: vtd_ce_type_check: DT specified but not supported', // -VTD_FR_CONTEXT_ENTRY_INV
      'qemu-system-x86_64: New fault is not recorded due to Primary Fault Overflow',
      'qemu-system-x86_64: Next Fault Recording Reg is used, new fault is not recorded, set PFO field',
      'qemu-system-x86_64: New fault is not recorded due to compression of faults',
      'qemu-system-x86_64: There are pending faults already, fault event is not generated',
      'qemu-system-x86_64: There are previous interrupt conditions to be serviced by software, fault event is not generated',
      'qemu-system-x86_64: Interrupt Mask set, irq is not generated',
    ];
    const log = lines.join('\n') + '\n';
    const { events, summary } = decodeLogText(log);
    assert.equal(summary.unrecognisedLines, 0);
    assert.deepEqual(
      events.map((e) => [e.line, e.kind, (e.details.impliedReason as { code: number } | undefined)?.code ?? null, e.details.recorded ?? null, e.details.level ?? null]),
      [
        [1, 'dma-fault', 0x05, null, 1], [2, 'dma-fault', 0x0c, null, 1], [3, 'dma-fault', 0x72, null, 1], [4, 'dma-fault', 0x04, null, null], [5, 'dma-fault', null, null, null],
        [6, 'config-error', 0x0a, null, null], [7, 'config-error', 0x0b, null, null], [8, 'config-error', 0x03, null, null], [9, 'config-error', 0x03, null, null],
        [10, 'queue-overflow', null, false, null], [11, 'queue-overflow', null, false, null], [12, 'register', null, false, null],
        [13, 'register', null, true, null], [14, 'register', null, true, null], [15, 'register', null, true, null],
      ],
    );
    assert.deepEqual([events[1]!.details.entry, events[2]!.details.entry], ['0x102681803', '0x8000000000000807']);
    // The CLI hands the decoder only lines with a marker: each of these has one.
    const markers = markersFor(log);
    for (const l of lines) assert.ok(hasMarker(l, markers), l);
    // The permission error at a read-only leaf (slpte 0x12345001: R set, W clear) of a write.
    assert.ok(part(events[0]!, 'what').includes('to 0x12345000 read-only (R set, W clear), so the write was refused'), part(events[0]!, 'what'));
    // The read error's two possible codes, since the line does not say the level.
    assert.ok(part(events[4]!, 'why').includes('(0x03, VTD_FR_CONTEXT_ENTRY_INV)') && part(events[4]!, 'why').includes('(0x07, VTD_FR_PAGING_ENTRY_INV)'));
    for (const e of events) assert.ok(!text(e).includes('line with the fault reason is missing'), text(e));
  });

  it('a traced fault QEMU did not record gets one line saying the guest does not see it', () => {
    // The real trace: 256 vtd_dmar_fault lines, 4 of them followed by their vtd_frr_new record.
    const { events } = decodeLogText(realVm('qemu-vtd-trace.no-ir-storm.log'));
    const faults = events.filter((e) => e.details.event === 'vtd_dmar_fault');
    const dropped = faults.filter((e) => e.details.recorded === false);
    assert.equal(dropped.length, 252);
    for (const e of dropped) {
      const lines = explainEvent(e);
      assert.equal(lines.length, 1);
      assert.match(lines[0]!, /^line \d+: Intel VT-d DMA fault of 0000:00:01\.0 \((?:read 0x[0-9a-f]+, reason 0x06|write 0x[0-9a-f]+, reason 0x05)\) not recorded by QEMU: .* the guest does not see it\.$/);
    }
    // Lines 1343-1344: the fault and its record in fault recording register 0.
    const recorded = at(events, 1343);
    assert.ok(text(recorded).includes('QEMU recorded it in fault recording register 0 (vtd_frr_new)'), text(recorded));
  });
});

describe('readers: explanation headers are short, and each vendor\'s facts stay on its lines', () => {
  const inputs = [
    ...readdirSync(join(root, 'test/fixtures/logs')).filter((f) => !f.startsWith('lspci')).map((f) => logFixture(f)),
    ...readdirSync(join(root, 'test/fixtures/pastes')).filter((f) => !f.endsWith('.json')).map((f) => readFileSync(join(root, 'test/fixtures/pastes', f), 'utf8')),
    ...['dmesg-after-vfio-faults.txt', 'dmesg-boot.txt', 'qemu-stdout.log'].map(realVm),
  ];
  const all = inputs.flatMap((t) => decodeLogText(t).events);

  it('a header names the format and at most its era, never the whole version note', () => {
    assert.ok(all.length > 200);
    for (const e of all) {
      const [head] = explainEvent(e);
      // The one parenthesis of a header: the format id, and its era when the catalogue pins one.
      const paren = /\(([^)]*)\)/.exec(head!)?.[1] ?? '';
      assert.ok(paren.length <= e.format.length + 20, head);
      const versions = LOG_FORMATS[e.format]?.versions ?? '';
      if (versions.includes('(')) assert.ok(!head!.includes(versions), head);
      if (explainEvent(e).length > 1) assert.match(head!, new RegExp(`\\(${e.format.replace(/[.]/g, '\\.')}(?:, Linux [0-9.<=+ -]+)?\\)`), head);
    }
    const fault = at(decodeLogText(logFixture('vtd-6x.log')).events, 10);
    assert.equal(explainEvent(fault)[0], 'lines 10-17: Intel VT-d DMA fault on dmar0 (vtd-dma-5.15, Linux 5.15+) at 3713481.750962');
  });

  it('says present or not present, never a boolean', () => {
    for (const e of all) assert.ok(!/present (?:true|false)/.test(text(e)), text(e));
  });

  it('explains a rate limit by its vendor\'s function (lib/ratelimit.c counts the calls it refused)', () => {
    const six = decodeLogText(logFixture('vtd-6x.log')).events;
    assert.match(part(at(six, 8), 'what'), /^ {2}what: {2}dmar_fault's rate limit skipped 191 messages: each a `DRHD: handling fault status` line or a fault record/);
    const amd = at(decodeLogText(logFixture('amd-vi.log')).events, 9);
    assert.ok(part(amd, 'what').includes("amd_iommu_report_page_fault's rate limit skipped 27 IO_PAGE_FAULT messages"));
    const smmu = at(decodeLogText(logFixture('smmu-v3.log')).events, 42);
    assert.ok(part(smmu, 'what').includes("arm_smmu_evtq_thread's rate limit skipped the dump of 12 events"));
    for (const e of [amd, smmu]) assert.ok(!text(e).includes('dmar'), text(e));
  });

  it('a page request: what the driver rejected and why, with advice for that problem (prq.c, svm.c)', () => {
    const six = decodeLogText(logFixture('vtd-6x.log')).events;
    // Lines 52-53: `Page request in Privilege Mode`, descriptor 0x2000036a080101: PM, read and write, LPIG.
    const priv = at(six, 52);
    assert.ok(part(priv, 'what').includes('asked (PRI) for supervisor read/write access to 0x7f3a12345000 with PASID 3 (0x03) and the driver rejected it: the request asks for supervisor (privileged) access'), part(priv, 'what'));
    assert.ok(part(priv, 'next').includes('answered the page group (index 44) with Invalid Request'));
    // Line 54: `Invalid page request` alone: in 6.12 only an unknown requester ID takes that path.
    assert.ok(part(at(six, 54), 'what').includes('without naming a problem'));
    const old = decodeLogText(logFixture('vtd-5x.log')).events;
    // Line 10: `Page request without PASID`; line 11: `Page request for invalid PASID 9` (no SVA bind).
    assert.ok(!text(at(old, 10)).includes('SVA'), text(at(old, 10)));
    assert.ok(part(at(old, 10), 'what').includes('serves page requests only for PASIDs'));
    assert.ok(part(at(old, 11), 'next').includes('bound (SVA)'));
    // Line 12 prints no descriptor: no device, PASID or address is claimed.
    assert.ok(part(at(old, 12), 'what').includes('the line names no device, PASID or address'));
    assert.ok(!part(at(old, 12), 'what').includes('without a PASID'));
  });

  it('an IQE: the IQEI number in words, and whether the head descriptor is the cause', () => {
    // vtd-6x.log line 48: `VT-d detected Invalidation Queue Error: Reason 1` (IQERCD.IQEI = 1, invalid tail).
    const e = at(decodeLogText(logFixture('vtd-6x.log')).events, 48);
    assert.ok(part(e, 'what').includes('IQEI 1, invalid tail pointer'));
    assert.ok(part(e, 'next').includes('the descriptors are not the cause'));
  });

  it('claims no PASID where the line prints none, and reads AMD\'s I flag as an interrupt request', () => {
    // vtd-5x.log line 9: a 4.7-5.3 line (`[DMA Write] Request device [00:02.0] fault addr ...`) has no PASID field.
    const e = at(decodeLogText(logFixture('vtd-5x.log')).events, 9);
    assert.equal(part(e, 'what'), '  what:  device 0000:00:02.0 tried to write to 0x7effff9000, and the IOMMU blocked it.');
    // amd-vi.log line 11: flags=0x0008 is I (EVENT_FLAG_I, amd_iommu_types.h): no page of a page table.
    const amd = at(decodeLogText(logFixture('amd-vi.log')).events, 11);
    assert.ok(part(amd, 'why').includes('an interrupt request (I)'));
    assert.ok(!text(amd).includes('not present'), text(amd));
  });
});
