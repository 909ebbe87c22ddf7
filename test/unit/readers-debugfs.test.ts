import * as assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import fc from 'fast-check';
import { kernelDebugfsView, renderDebugfs, renderRegset, REGSET_LAYOUTS, type RegsetLayout } from '../../src/core/driver/debugfs';
import { IommuKernel } from '../../src/core/driver/kernel';
import { Machine } from '../../src/core/hw/machine';
import type { DmaRequest, TranslationResult } from '../../src/core/hw/types';
import { U64 } from '../../src/core/u64';
import { decodeDescriptor } from '../../src/core/vtd/descriptors';
import { Reg } from '../../src/core/vtd/registers';
import { debugfsFileOrder, parseDebugfs } from '../../src/readers/debugfs';
import { importDebugfs, loadDebugfs } from '../../src/readers/debugfs-import';
import { describeImport, reportText, walkImported } from '../../src/readers/debugfs-report';
import { debugfsKernel, type DebugfsScenario, faultDump } from '../support/debugfs-kernel';
import { kernelRegsetLists } from '../support/kernel-tables';
import { twoSegmentPlatform } from '../support/kernel-platform';
import { fixtureFiles } from '../support/make-debugfs-fixture';
import { runCli } from './cli.test';
import { vtdUnits } from '../../src/core/vtd/factory';

const root = join(__dirname, '../../..');
const fixtures = join(root, 'test/fixtures/debugfs');

function inputsOf(files: Map<string, string>) {
  return debugfsFileOrder([...files.keys()]).map((path) => ({ path, text: files.get(path)! }));
}

/** What a probe says, in a form two machines can be compared by. */
function outcome(r: TranslationResult): string {
  return r.ok ? `ok ${r.output} ${r.pageSize} ${r.perms.read}${r.perms.write}${r.perms.exec}${r.perms.priv}` : `fault 0x${r.reason.toString(16)}`;
}

const scenario: fc.Arbitrary<DebugfsScenario> = fc.record({
  legacyUnit: fc.boolean(),
  cachingMode: fc.boolean(),
  firstStage: fc.boolean(),
  maps: fc.array(
    fc.record({ iovaPage: fc.integer({ min: 0, max: 600 }), outPage: fc.integer({ min: 0, max: 60 }), size: fc.constantFrom('4K' as const, '4K' as const, '2M' as const, '1G' as const), write: fc.boolean() }),
    { maxLength: 24 },
  ),
  pasids: fc.uniqueArray(fc.integer({ min: 1, max: 0xf_ffff }), { maxLength: 4 }),
  nested: fc.boolean(),
  sva: fc.boolean(),
  identityDevice: fc.boolean(),
  fiveLevel: fc.boolean(),
});

/** Requests worth comparing: every mapped leaf's first and last byte, the pages around them, and some misses. */
function requests(k: IommuKernel): { device: string; req: DmaRequest }[] {
  const out: { device: string; req: DmaRequest }[] = [];
  for (const dev of k.devices.values()) {
    const sm = dev.iommu.scalable;
    const targets: [number | undefined, typeof dev.ridDomain][] = [[undefined, dev.ridDomain], ...[...dev.pasidDomains].map(([p, d]) => [p, d] as [number, typeof d])];
    for (const [pasid, domain] of targets) {
      // Nested first-level tables live in guest memory, which debugfs does not dump.
      if (!domain || domain.type === 'nested') continue;
      const table = domain.type === 'sva' ? domain.process!.pageTable : domain.pageTable;
      // Linux writes the IOMMU's AW into first-level entries and debugfs walks AW + 2 levels: a 4-level
      // first-level table on a 5-level IOMMU is not in the dump (the import says so).
      if (table?.format === 'first-level' && table.levels !== dev.iommu.agaw + 2) continue;
      const addrs = new Set<number>([0, 0x1000, 0xdead_b000]);
      if (table) {
        let n = 0;
        for (const leaf of table.leaves()) {
          for (const a of [leaf.iova, leaf.iova + leaf.size - 8, leaf.iova + leaf.size]) addrs.add(a);
          if (++n > 64) break;
        }
      }
      for (const addr of addrs) {
        for (const write of [false, true]) {
          out.push({ device: dev.name, req: { sid: dev.sid, pasid: sm && pasid === undefined ? undefined : pasid, addr, write } });
        }
      }
    }
  }
  return out;
}

describe('readers: Intel debugfs dumps', () => {
  it('round trip: a model rendered in the kernel layout and parsed back renders the same, byte for byte, and translates the same', () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const k = debugfsKernel(s);
        const before = renderDebugfs(kernelDebugfsView(k));
        const imp = importDebugfs(parseDebugfs(inputsOf(before)));
        assert.deepEqual(imp.diagnostics.filter((d) => d.severity !== 'info'), []);
        // Default domains on the scalable unit are first-stage, so a 5-level unit always has such tables.
        assert.equal(imp.diagnostics.some((d) => /does not show its mappings$/.test(d.message)), s.fiveLevel ?? false);
        assert.equal(imp.dump.unrecognisedLines, 0);
        const after = renderDebugfs(imp.view);
        assert.deepEqual([...after.keys()].sort(), [...before.keys()].sort());
        for (const [path, text] of before) assert.equal(after.get(path), text, path);
        for (const { device, req } of requests(k)) {
          const original = k.machine.unitFor(req.sid).probe(req);
          const imported = imp.machine.unitFor(req.sid).probe(req);
          assert.equal(outcome(imported), outcome(original), `${device} PASID ${req.pasid} ${req.write ? 'write' : 'read'} 0x${(req.addr as number).toString(16)}`);
        }
      }),
      { numRuns: 25, seed: 0x5eed },
    );
  });

  it('lists the registers of each regset layout as the sources of the kernels it names do', () => {
    // The iommu_regs_32 and iommu_regs_64 lists of a source (test/fixtures/kernel/debugfs-regs-*.txt), 32-bit list then 64-bit list.
    const lists = (version: string) => kernelRegsetLists(root, version);
    const names = (l: { regs32: readonly string[]; regs64: readonly string[] }) => ({ regs32: [...l.regs32], regs64: [...l.regs64] });
    assert.deepEqual(names(REGSET_LAYOUTS['split-vcmd']), lists('5.10'));
    assert.deepEqual(names(REGSET_LAYOUTS['split-vcmd']), lists('6.1'));
    assert.deepEqual(names(REGSET_LAYOUTS.split), lists('6.12'));
    // The real 6.12 dump lists the same registers in the same order.
    const real = readFileSync(join(root, 'test/fixtures/real-vm/custom612-legacy/debugfs-boot/intel/iommu_regset'), 'utf8');
    const dumped = real.split('\n').filter((l) => /^\w+ *\t0x/.test(l)).map((l) => l.split(/[ \t]/)[0]!);
    const split = REGSET_LAYOUTS.split;
    assert.deepEqual(dumped, [...split.regs32, ...split.regs64]);
    // 6.18 removed one line each from the 6.12 list: `-\tIOMMU_REGSET_ENTRY(AFLOG),` (7d4e40410283) and
    // `-\tIOMMU_REGSET_ENTRY(CCMD),` (5bd5ab53e7b8), as their patch mails show.
    const l612 = lists('6.12');
    assert.deepEqual(names(REGSET_LAYOUTS.current), { regs32: l612.regs32, regs64: l612.regs64.filter((r) => r !== 'AFLOG' && r !== 'CCMD') });
    // The single list of 4.20-5.5, as far as ba3b01d7a6f4's diff shows it (its `-` and context lines up to MTRR_FIX64K_00000).
    const before = ['VER', 'CAP', 'ECAP', 'GCMD', 'GSTS', 'RTADDR', 'CCMD', 'FSTS', 'FECTL', 'FEDATA', 'FEADDR', 'FEUADDR', 'AFLOG', 'PMEN', 'PLMBASE', 'PLMLIMIT', 'PHMBASE', 'PHMLIMIT', 'IQH', 'IQT', 'IQA', 'ICS', 'IRTA', 'PQH', 'PQT', 'PQA', 'PRS', 'PECTL', 'PEDATA', 'PEADDR', 'PEUADDR', 'MTRRCAP', 'MTRRDEF', 'MTRR_FIX64K_00000'];
    assert.deepEqual(REGSET_LAYOUTS.single.regs64.slice(0, before.length), before);
  });

  it('loads the registers of every regset layout, reading 32-bit registers from the low half of the single list', () => {
    const k = debugfsKernel({ legacyUnit: false, cachingMode: true, firstStage: true, maps: [], pasids: [3], nested: false, sva: false, identityDevice: false });
    const unit = k.iommus[0]!.unit;
    for (const layout of Object.keys(REGSET_LAYOUTS) as RegsetLayout[]) {
      const text = renderRegset([unit], layout);
      const dump = parseDebugfs([{ path: 'iommu_regset', text }]);
      assert.equal(dump.unrecognisedLines, 0, layout);
      const names = dump.regsets[0]!.registers.map((r) => r.name);
      assert.deepEqual(names, [...REGSET_LAYOUTS[layout].regs32, ...REGSET_LAYOUTS[layout].regs64], layout);
      const imp = importDebugfs(dump);
      const copy = imp.units[0]!.unit;
      for (const name of ['VER', 'GCMD', 'GSTS', 'RTADDR', 'IQA', 'IQT', 'PQA', 'FECTL'] as const) {
        assert.equal(copy.readRegister(name).toString(), unit.readRegister(name).toString(), `${layout} ${name}`);
      }
      assert.equal(copy.capRaw.toString(), unit.capRaw.toString());
      assert.equal(copy.rootTableAddress, unit.rootTableAddress);
      assert.ok(copy.translationEnabled && copy.scalableMode);
    }
    // The first kernels read every register with readq: GCMD shows GSTS in its high half.
    const single = renderRegset([unit], 'single').split('\n').find((l) => l.startsWith('GCMD'))!;
    assert.equal(single, `GCMD            \t0x18\t\t0x${unit.readRegister('GSTS').toHex(8)}${unit.readRegister('GCMD').toHex(8)}`);
  });

  it('reads the older global domain_translation_struct, legacy-mode rows, IR tables and "not enabled" units, field by field', () => {
    const imp = loadDebugfs([
      { path: 'iommu_regset', text: readFileSync(join(fixtures, 'legacy/iommu_regset'), 'utf8') },
      { path: 'dmar_translation_struct', text: readFileSync(join(fixtures, 'legacy/dmar_translation_struct'), 'utf8') },
      { path: 'ir_translation_struct', text: readFileSync(join(fixtures, 'legacy/ir_translation_struct'), 'utf8') },
      { path: 'domain_translation_struct', text: readFileSync(join(fixtures, 'legacy/domain_translation_struct'), 'utf8') },
    ]);
    assert.deepEqual(imp.diagnostics, []);
    assert.equal(imp.dump.unrecognisedLines, 0);
    const [gfx, other] = imp.units;
    assert.equal(gfx!.unit.name, 'dmar0');
    assert.equal(gfx!.unit.capRaw.toString(), '0x1c0000c40660462');
    assert.ok(gfx!.unit.translationEnabled && !gfx!.unit.scalableMode);
    assert.equal(other!.unit.translationEnabled, false, 'dmar1 printed "DMA Remapping is not enabled"');
    assert.deepEqual(imp.dump.disabled.map((d) => d.unit), ['dmar1']);
    // The 5.x global file: "with pasid %d", all five columns with zeros for levels a large page skips.
    const dom = imp.dump.domains[0]!;
    assert.deepEqual([dom.sid, dom.pasid, dom.pgd], [0x0010, 0, 0x4_5d6e_2000]);
    assert.equal(dom.rows.length, 3);
    assert.equal(dom.rows[2]!.path[2]!.toString(), '0x45d600883', 'a 2 MiB leaf at the PDE');
    assert.equal(dom.rows[2]!.path[1], undefined);
    const walk = walkImported(imp, { device: '00:02.0', address: '0x200123' });
    assert.ok(walk.ok && walk.result.ok);
    assert.equal(walk.result.output, '0x46e000123');
    const big = walkImported(imp, { device: '0000:00:02.0', address: '0x40012345', write: true });
    assert.ok(big.ok && big.result.ok && big.result.pageSize === 0x20_0000);
    assert.equal(big.result.output, '0x45d612345');
    // Interrupt remapping: the decoded fields of one remapped and one posted entry.
    const report = describeImport(imp);
    const remapped = report.interrupts.find((i) => i.kind === 'remapped' && i.unit === 'dmar1')!;
    assert.equal(remapped.table, '0x45e740000');
    assert.deepEqual(remapped.entries[0], {
      index: 0,
      source: '0000:f0:1f.0',
      fields: { P: true, FPD: false, DM: false, RH: false, TM: false, DLM: 0, AVAIL: 0, IM: false, V: 0x30, DST: 0, SID: 0xf0f8, SQ: 0, SVT: 1 },
    });
    const posted = report.interrupts.find((i) => i.kind === 'posted')!;
    assert.deepEqual(posted.entries.map((e) => [e.index, e.source, e.fields.VV, e.fields.PDA_H, e.fields.URG]), [[24, '0000:00:02.0', 0xef, 1, false]]);
  });

  it('reads cat, head and grep -r concatenations and CRLF files as the separate files would read', () => {
    const files = renderDebugfs(kernelDebugfsView(debugfsKernel({ legacyUnit: true, cachingMode: false, firstStage: false, maps: [{ iovaPage: 3, outPage: 2, size: '2M', write: true }], pasids: [0x40], nested: false, sva: false, identityDevice: false })));
    const inputs = inputsOf(files);
    const reference = describeImport(importDebugfs(parseDebugfs(inputs)));
    const cat = inputs.map((i) => i.text).join('');
    const head = inputs.map((i) => `==> ${i.path} <==\n${i.text}\n`).join('');
    const grep = inputs.flatMap((i) => i.text.split('\n').filter((l) => l !== '').map((l) => `/sys/kernel/debug/iommu/intel/${i.path}:${l}`)).join('\n');
    for (const [name, text] of [['cat', cat], ['head', head], ['grep -r', grep], ['crlf', cat.replace(/\n/g, '\r\n')]] as const) {
      const imp = loadDebugfs([{ path: 'dump.txt', text }]);
      assert.equal(imp.dump.unrecognisedLines, 0, name);
      const r = describeImport(imp);
      assert.deepEqual(r.domains, reference.domains, name);
      assert.deepEqual(r.devices, reference.devices, name);
    }
  });

  it('reports what it cannot read with file and line, and rows that contradict each other', () => {
    const text = [
      'IOMMU dmar0: Root Table Address: 0x1000',
      'B.D.F\tRoot_entry\t\t\t\tContext_entry\t\t\t\tPASID\tPASID_table_entry',
      '00:02.0\t0x0000000000000000:0x0000000000002001\t0x0000000000000102:0x0000000000003001\t-1    \t0x0000000000000000:0x0000000000000000:0x0000000000000000',
      '00:03.0\t0x0000000000000000:0x0000000000005001\t0x0000000000000102:0x0000000000003001\t-1    \t0x0000000000000000:0x0000000000000000:0x0000000000000000',
      '00:1z.0\tgarbage',
      'something else entirely',
      '',
    ].join('\n');
    const imp = loadDebugfs([{ path: 'dmar_translation_struct', text }]);
    const problems = imp.diagnostics.filter((d) => d.severity === 'warning').sort((a, b) => a.line - b.line).map((d) => `${d.file}:${d.line}: ${d.message}`);
    assert.equal(problems.length, 3, problems.join('\n'));
    assert.match(problems[0]!, /^dmar_translation_struct:4: root entry qw0 at 0x1000 is 0x5001 here but 0x2001 at dmar_translation_struct:3/);
    assert.match(problems[1]!, /^dmar_translation_struct:5: not a translation row/);
    assert.match(problems[2]!, /^dmar_translation_struct:6: not a translation row.*'something else entirely'/);
    assert.equal(imp.dump.unrecognisedLines, 2);
  });

  it('never throws or hangs on mutated dumps (10,000 lines)', () => {
    const files = renderDebugfs(kernelDebugfsView(debugfsKernel({ legacyUnit: true, cachingMode: true, firstStage: true, maps: [{ iovaPage: 1, outPage: 1, size: '4K', write: true }, { iovaPage: 2, outPage: 3, size: '2M', write: false }], pasids: [2], nested: true, sva: true, identityDevice: true })));
    const corpus = [...files.values()].flatMap((t) => t.split('\n')).filter((l) => l.trim() !== '' && !/^\s+\d+\t0{16}/.test(l));
    corpus.push(...readFileSync(join(fixtures, 'legacy/ir_translation_struct'), 'utf8').split('\n'));
    // Real lines too (Linux 6.12 on QEMU), and what the fuzzer found: entries of all ones, a device in another segment.
    const real = join(root, 'test/fixtures/real-vm/custom612-legacy/debugfs-vfio-mapped/intel');
    for (const f of ['dmar_translation_struct', 'ir_translation_struct', 'iommu_regset', '0000:00:01.0/domain_translation_struct']) corpus.push(...readFileSync(join(real, f), 'utf8').split('\n').filter((l) => l !== ''));
    corpus.push('0x0000000000200 |\t0x0000000000000000\t0xffffffffffffffff\t0xffffffffffffffff\t0xffffffffffffffff\t0xffffffffffffffff', 'Device 0001:00:01.0 @0x1b40000');
    let lines = 0;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(corpus.length - 1), fc.nat(200), fc.constantFrom('', '0', 'f', ' ', '\t', ':', 'x', '|', '-1', 'ffffffffffffffff', '\u0000', 'é'), fc.nat(3)), { minLength: 40, maxLength: 40 }),
        (muts) => {
          const text = muts
            .map(([i, at, ins, del]) => {
              const l = corpus[i]!;
              const p = at % (l.length + 1);
              return l.slice(0, p) + ins + l.slice(p + del);
            })
            .join('\n');
          lines += muts.length;
          const imp = loadDebugfs([{ path: 'fuzz', text }]);
          reportText(describeImport(imp), 'fuzz');
          for (const d of imp.devices.slice(0, 4)) walkImported(imp, { device: d.device, address: '0x100000', pasid: d.pasidFiles[0] });
          assert.ok(imp.diagnostics.every((d) => d.severity !== 'error'), JSON.stringify(imp.diagnostics.filter((d) => d.severity === 'error')));
        },
      ),
      { numRuns: 250, seed: 7 },
    );
    assert.ok(lines >= 10_000);
  });

  it('prints the report and walks through the CLI, as a user would', () => {
    const dir = mkdtempSync(join(tmpdir(), 'iommu-debugfs-'));
    try {
      const k = debugfsKernel({ legacyUnit: false, cachingMode: false, firstStage: false, maps: [{ iovaPage: 0x100, outPage: 5, size: '4K', write: true }], pasids: [5], nested: false, sva: false, identityDevice: false });
      for (const [rel, text] of renderDebugfs(kernelDebugfsView(k))) {
        mkdirSync(dirname(join(dir, rel)), { recursive: true });
        writeFileSync(join(dir, rel), text);
      }
      const report = runCli(['import-debugfs', dir]);
      assert.equal(report.code, 0, report.stderr);
      assert.match(report.stdout, /^dmar0: VT-d 6\.0 at 0xfed90000, scalable mode, translation on/m);
      assert.match(report.stdout, /^ {2}PASID 0x5 second-level, DID \d+: AW=2 SLPTPTR=0x[0-9a-f]+ PWSNP$/m);
      // No SNP: the domain never enforced cache coherency (set_pte_snp), as for the real 6.12 dumps' PTEs.
      assert.match(report.stdout, /^ +0x100000 -> 0x100005000 +4 KiB in 1 x 4 KiB rw-$/m);
      const json = JSON.parse(runCli(['import-debugfs', '--format', 'json', dir]).stdout);
      assert.equal(json.summary.units, 1);
      assert.ok(json.devices.some((d: { device: string; pasids: { pasid: number }[] }) => d.device === '0000:6a:01.0' && d.pasids.some((p) => p.pasid === 5)));

      const walk = runCli(['walk', '--debugfs', dir, '--device', '6a:01.0', '--pasid', '5', '--write', '0x100abc']);
      assert.equal(walk.code, 0, walk.stderr);
      assert.match(walk.stdout, /^Walk: 0000:6a:01\.0 on dmar0 PASID 0x5: write 0x100abc$/m);
      assert.match(walk.stdout, /^ 8\. sl-pte\[256\] @ 0x[0-9a-f]+$/m);
      assert.match(walk.stdout, /^Result: 0x100005abc \(4 KiB page, read\/write, DID \d+; walk, 8 table reads\)$/m);
      const walkJson = JSON.parse(runCli(['walk', '--debugfs', dir, '--device', '6a:01.0', '--pasid', '5', '--format', 'json', '0x100abc']).stdout);
      assert.equal(walkJson.result.output, '0x100005abc');
      assert.equal(walkJson.result.trace.length, 8);

      const fault = runCli(['walk', '--debugfs', dir, '--device', '6a:01.0', '--pasid', '6', '0x100abc']);
      assert.equal(fault.code, 1);
      assert.match(fault.stdout, /^Result: fault 0x59: SM: Present bit in PASID Table Entry is clear/m);
      const unknown = runCli(['walk', '--debugfs', dir, '--device', '00:03.0', '0x0']);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /^iommu-lab: walk: .+: 0000:00:03\.0 is not in the dump \(devices: /);
      const fromStdin = runCli(['import-debugfs', '-'], readFileSync(join(dir, 'dmar_translation_struct'), 'utf8'));
      // dmar_translation_struct alone names no segment.
      assert.match(fromStdin.stdout, /^0000:6a:01\.0 \(dmar0, PCI segment assumed\)$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says why a device 80-ff on a bus without devices 00-7f has tables but no context entry (the kernel skips it)', () => {
    const m = new Machine();
    m.addUnit(vtdUnits, { name: 'dmar0', features: {} });
    m.addEndpoint('00:1f.7', {}, 'dmar0');
    const k = new IommuKernel(m).boot();
    k.map(k.device('00:1f.7').ridDomain!, 0x1000, 0x5000, 0x1000);
    const files = renderDebugfs(kernelDebugfsView(k));
    assert.doesNotMatch(files.get('dmar_translation_struct')!, /^00:1f\.7/m, 'dmar_translation_struct stops bus 0 at the missing lower half');
    const imp = loadDebugfs(inputsOf(files));
    const warning = imp.diagnostics.find((d) => d.severity === 'warning')!;
    assert.equal(`${warning.file}:${warning.line}`, '0000:00:1f.7/domain_translation_struct:1');
    assert.match(warning.message, /does not list devices 80-ff of a bus whose devices 00-7f have no context table/);
  });

  it('the workspace fixture dump is what the renderer prints for its machine today', () => {
    const dir = join(root, 'test/fixtures/workspace/debugfs-dump');
    for (const [path, text] of fixtureFiles()) assert.equal(readFileSync(join(dir, path), 'utf8'), text, `${path}: regenerate with test/support/make-debugfs-fixture.ts`);
  });

  it('loads a unit with assumed capabilities when the dump has no iommu_regset, and says so', () => {
    const files = renderDebugfs(kernelDebugfsView(debugfsKernel({ legacyUnit: false, cachingMode: false, firstStage: true, maps: [{ iovaPage: 9, outPage: 9, size: '4K', write: true }], pasids: [], nested: false, sva: false, identityDevice: false })));
    files.delete('iommu_regset');
    const imp = loadDebugfs(inputsOf(files));
    const notes = imp.diagnostics.map((d) => d.message);
    assert.ok(notes.some((n) => /^the dump has no iommu_regset for dmar0: its CAP\/ECAP are assumed, those of a scalable-mode capable unit/.test(n)));
    assert.ok(notes.some((n) => /^debugfs shows PASID entries but not the tables that hold them: \d+ PASID tables? (was|were) placed at 0x/.test(n)));
    const unit = imp.units[0]!.unit;
    assert.ok(unit.translationEnabled && unit.scalableMode);
    assert.equal(unit.readRegister(Reg.IQA).lo & 0x800, 0x800, 'the queue rows had four words: 256-bit descriptors');
    const walk = walkImported(imp, { device: '00:04.0', address: String(9 * 4096 + 5) });
    assert.ok(walk.ok && walk.result.ok && walk.result.output === '0x100009005');
    assert.equal(U64.fromHex('100009005')!.toString(), '0x100009005');
  });

  // The formats of the hand-written files below are debugfs.c's seq_printf calls (Linux 6.12): the title
  // `IOMMU %s: Root Table Address: 0x%llx`, rows `%02x:%02x.%x\t0x%016llx:0x%016llx\t0x%016llx:0x%016llx\t%-6d\t...`,
  // domain files `Device %04x:%02x:%02x.%x @0x%llx` with rows `0x%013lx |\t0x%016llx...`.
  const ZERO_PASID = '0x0000000000000000:0x0000000000000000:0x0000000000000000';
  const HEADER = 'B.D.F\tRoot_entry\t\t\t\tContext_entry\t\t\t\tPASID\tPASID_table_entry';
  const DOMAIN = 'IOVA_PFN         \tPML5E             \tPML4E             \tPDPE              \tPDE               \tPTE';
  const q = (v: number) => '0x' + v.toString(16).padStart(16, '0');
  const twoSegments = new Map<string, string>([
    [
      'dmar_translation_struct',
      [
        'IOMMU dmar0: Root Table Address: 0x1000', HEADER, `00:02.0\t${q(0)}:${q(0x2001)}\t${q(0x102)}:${q(0x3001)}\t-1    \t${ZERO_PASID}`, '',
        'IOMMU dmar1: Root Table Address: 0x11000', HEADER, `00:02.0\t${q(0)}:${q(0x12001)}\t${q(0x102)}:${q(0x13001)}\t-1    \t${ZERO_PASID}`, '', '',
      ].join('\n'),
    ],
    ['0000:00:02.0/domain_translation_struct', ['Device 0000:00:02.0 @0x3000', DOMAIN, `0x0000000000100 |\t${q(0)}\t${q(0x4003)}\t${q(0x5003)}\t${q(0x6003)}\t${q(0xabc003)}`, ''].join('\n')],
    [
      '0001:00:02.0/domain_translation_struct',
      [
        'Device 0001:00:02.0 @0x13000', DOMAIN,
        `0x0000000000100 |\t${q(0)}\t${q(0x14003)}\t${q(0x15003)}\t${q(0x16003)}\t${q(0xdef003)}`,
        // What the fuzzer found: an entry of all ones names the top of the 52-bit space.
        `0x0000000000200 |\t${q(0)}\t${q(0x14003)}\t${q(0x15003)}\t${q(0x16003)}\t0xffffffffffffffff`,
        `0x0000000040000 |\t${q(0)}\t${q(0x14003)}\t${q(0x17003)}\t0xffffffffffffffff\t0xffffffffffffffff`,
        '',
      ].join('\n'),
    ],
  ]);

  it('models PCI segments: the same bus:device.function behind two units of two segments, each walked through its own tables', () => {
    const imp = loadDebugfs(inputsOf(twoSegments));
    assert.deepEqual(imp.diagnostics.filter((d) => d.severity !== 'info'), []);
    assert.deepEqual(imp.units.map((u) => [u.unit.name, u.unit.segment]), [['dmar0', 0], ['dmar1', 1]]);
    assert.deepEqual(imp.devices.map((d) => [d.device, d.unit]), [['0000:00:02.0', 'dmar0'], ['0001:00:02.0', 'dmar1']]);
    assert.equal(imp.machine.unitFor('0001:00:02.0').name, 'dmar1');
    assert.equal(imp.machine.endpoint('0000:00:02.0').name, '0000:00:02.0');
    const zero = walkImported(imp, { device: '0000:00:02.0', address: '0x100123' });
    const one = walkImported(imp, { device: '0001:00:02.0', address: '0x100123' });
    assert.ok(zero.ok && zero.result.ok && one.ok && one.result.ok);
    assert.deepEqual([zero.unit, zero.result.output, one.unit, one.result.output], ['dmar0', '0xabc123', 'dmar1', '0xdef123']);
    // The segment is the device file's, the mode and root table dmar_translation_struct's; the rest is assumed.
    const text = reportText(describeImport(imp), 'dump').join('\n');
    assert.match(text, /^dmar1: PCI segment 0001, legacy mode, translation on, root table 0x11000\n {2}assumed \(the dump has no iommu_regset for dmar1\): VT-d [\d.]+ at 0x[0-9a-f]+, cap 0x[0-9a-f]+ ecap 0x[0-9a-f]+$/m);
    const none = walkImported(imp, { device: '0002:00:02.0', address: '0x0' });
    assert.ok(!none.ok && /0002:00:02\.0 is not in the dump/.test(none.error));
  });

  it('reads back the model\'s own two-segment dump: each device on its unit and segment, rendered the same byte for byte, translating the same', () => {
    // The driver model's two DRHDs (dmar0 for segment 0, dmar1 for segment 1), 6a:01.0 behind each on its own
    // domain, one of them at a PASID too: the device files name the segments, the only place debugfs does.
    const { k } = twoSegmentPlatform();
    const a = k.allocPagingDomain({ stage: 'first', name: 'a' });
    const b = k.allocPagingDomain({ stage: 'second', name: 'b' });
    k.map(a, 0x10_0000, 0x9000_0000, 0x1000);
    k.map(b, 0x10_0000, 0xa000_0000, 0x20_0000);
    k.attachDevice(a, '6a:01.0');
    k.attachDevice(b, '0001:6a:01.0');
    k.attachDevicePasid(b, '0001:6a:01.0', 0x2a);
    const before = renderDebugfs(kernelDebugfsView(k));
    const imp = loadDebugfs(inputsOf(before));
    assert.deepEqual(imp.diagnostics.filter((d) => d.severity !== 'info'), []);
    assert.equal(imp.dump.unrecognisedLines, 0);
    assert.deepEqual(imp.units.map((u) => [u.unit.name, u.unit.segment]), [['dmar0', 0], ['dmar1', 1]]);
    assert.deepEqual(imp.devices.map((d) => [d.device, d.unit]).sort(), [
      ['0000:00:02.0', 'dmar0'],
      ['0000:6a:01.0', 'dmar0'],
      ['0001:00:02.0', 'dmar1'],
      ['0001:00:02.1', 'dmar1'],
      ['0001:6a:01.0', 'dmar1'],
    ]);
    const after = renderDebugfs(imp.view);
    assert.deepEqual([...after.keys()].sort(), [...before.keys()].sort());
    for (const [path, text] of before) assert.equal(after.get(path), text, path);
    // The same RID, 0x6a08, walked on each side: the import's machine answers as the model's does.
    for (const [device, pasid] of [['0000:6a:01.0', undefined], ['0001:6a:01.0', undefined], ['0001:6a:01.0', 0x2a]] as const) {
      for (const addr of [0x10_0123, 0x20_0fff, 0x30_0000]) {
        const req: DmaRequest = { sid: 0x6a08, ...(pasid !== undefined ? { pasid } : {}), addr, write: true };
        const original = k.machine.unitFor(device).probe(req);
        const imported = imp.machine.unitFor(device).probe(req);
        assert.equal(outcome(imported), outcome(original), `${device} PASID ${pasid} 0x${addr.toString(16)}`);
      }
    }
    const zero = walkImported(imp, { device: '0000:6a:01.0', address: '0x100123' });
    const one = walkImported(imp, { device: '0001:6a:01.0', address: '0x100123' });
    assert.ok(zero.ok && zero.result.ok && one.ok && one.result.ok);
    assert.deepEqual([zero.unit, zero.result.output, one.unit, one.result.output], ['dmar0', '0x90000123', 'dmar1', '0xa0000123']);
  });

  it('entries of all ones neither crash the import nor a walk through them, in the library or the CLI', () => {
    const imp = loadDebugfs(inputsOf(twoSegments));
    assert.ok(imp.diagnostics.every((d) => d.severity !== 'error'));
    // A PTE of all ones is a 4 KiB leaf: bit 7 of a level-1 second-level entry is ignored (not PS, as in an EPT
    // PTE) and bits 51:12, below the 52-bit host address width, are the frame.
    const leaf = walkImported(imp, { device: '0001:00:02.0', address: '0x200000' });
    assert.ok(leaf.ok && leaf.result.ok && leaf.result.output === '0xffffffffff000', JSON.stringify(leaf));
    // A PDE of all ones is a 2 MiB page (PS) whose address has bits 20:12 set, reserved: VT-d fault 0x0c.
    const pde = walkImported(imp, { device: '0001:00:02.0', address: '0x40000000' });
    assert.ok(pde.ok && !pde.result.ok && pde.result.reason === 0x0c);
    const dir = mkdtempSync(join(tmpdir(), 'iommu-segments-'));
    try {
      for (const [rel, text] of twoSegments) {
        mkdirSync(dirname(join(dir, rel)), { recursive: true });
        writeFileSync(join(dir, rel), text);
      }
      const report = runCli(['import-debugfs', dir]);
      assert.equal(report.code, 0, report.stderr);
      assert.match(report.stdout, /^0001:00:02\.0 \(dmar1\)$/m);
      const walk = runCli(['walk', '--debugfs', dir, '--device', '0001:00:02.0', '0x40000000']);
      assert.equal(walk.code, 1, walk.stderr);
      assert.doesNotMatch(walk.stderr, /\n\s+at /, 'no stack trace');
      assert.match(walk.stdout, /^Result: fault 0x0c: /m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads a file whose tabs became spaces, with one warning naming the file and the first such line', () => {
    // dmar0's table of the two-segment dump: without the device files, dmar1's would be a second unit claiming 00:02.0.
    const text = twoSegments.get('dmar_translation_struct')!.split('\n').slice(0, 4).join('\n').replace(/\t/g, '    ');
    const imp = loadDebugfs([{ path: 'dmar_translation_struct', text }]);
    assert.equal(imp.dump.unrecognisedLines, 0);
    assert.equal(imp.dump.translations.flatMap((t) => t.rows).length, 1);
    const warnings = imp.diagnostics.filter((d) => d.severity === 'warning');
    assert.deepEqual(warnings.map((d) => [d.file, d.line]), [['dmar_translation_struct', 2]]);
    assert.match(warnings[0]!.message, /^the spacing differs from what the kernel prints/);
  });

  it('takes the PASID tables from a dmesg\'s "pasid dir entry" lines, and says in a walk when it had to place one', () => {
    const k = debugfsKernel({ legacyUnit: false, cachingMode: false, firstStage: false, maps: [{ iovaPage: 0x100, outPage: 5, size: '4K', write: true }], pasids: [5, 0x47], nested: false, sva: false, identityDevice: false });
    const files = renderDebugfs(kernelDebugfsView(k));
    const dev = k.device('6a:01.0');
    const realTable = (pasid: number) => {
      const at = dev.pasidDir + Math.floor(pasid / 64) * 8;
      return { dirEntry: at, table: (k.machine.memory.readHi(at) & 0xf_ffff) * 0x1_0000_0000 + ((k.machine.memory.readLo(at) & 0xffff_f000) >>> 0) };
    };
    // The log dumps PASID 5's walk (directory entry 0) but not PASID 0x47's (directory entry 1).
    const dmesg = { path: 'dmesg.txt', text: faultDump(k, '6a:01.0', 5, 0xdead_0000) };
    const withLog = loadDebugfs(inputsOf(files), { dmesg });
    assert.deepEqual(withLog.diagnostics.filter((d) => d.severity !== 'info'), []);
    const fromLog = withLog.pasidTables.find((p) => p.device === '0000:6a:01.0' && p.dirIndex === 0)!;
    assert.deepEqual([fromLog.dirEntryAddress, fromLog.table, fromLog.from], [realTable(5).dirEntry, realTable(5).table, { file: 'dmesg.txt', line: 2 }]);
    const placed = withLog.pasidTables.find((p) => p.device === '0000:6a:01.0' && p.dirIndex === 1)!;
    assert.equal(placed.from, undefined);
    assert.notEqual(placed.table, realTable(0x47).table, 'debugfs alone cannot know it');

    const walk5 = walkImported(withLog, { device: '6a:01.0', pasid: 5, write: true, address: '0x100abc' });
    assert.ok(walk5.ok && walk5.result.ok && walk5.result.output === '0x100005abc');
    assert.deepEqual(walk5.notes, [`the PASID directory entry at 0x${realTable(5).dirEntry.toString(16)} is from the kernel log (dmesg.txt:2); debugfs does not print it`]);
    const walk47 = walkImported(withLog, { device: '6a:01.0', pasid: 0x47, address: '0x100abc' });
    assert.ok(walk47.ok && walk47.result.ok && walk47.result.output === '0x100005abc', 'a placed table holds the dumped entry, so the walk still translates');
    assert.match(walk47.text.at(-2)!, /^Note: debugfs does not print the PASID directory: the entry at 0x[0-9a-f]+ and the PASID table at 0x[0-9a-f]+ were placed by the import/);
    assert.match(walk47.text.at(-1)!, /^Result: 0x100005abc /);

    // Without the log both tables are placed, and the import says how to get the real ones.
    const alone = loadDebugfs(inputsOf(files));
    assert.ok(alone.pasidTables.every((p) => p.from === undefined));
    assert.ok(alone.diagnostics.some((d) => /placed at 0x[0-9a-f]+ and up; a dmesg with CONFIG_DMAR_DEBUG table dumps/.test(d.message)));
  });

  it('does not take a PASID directory entry from a log of another time (the context entry moved)', () => {
    const k = debugfsKernel({ legacyUnit: false, cachingMode: false, firstStage: false, maps: [], pasids: [5], nested: false, sva: false, identityDevice: false });
    const dmesg = { path: 'old-dmesg.txt', text: faultDump(k, '6a:01.0', 5, 0x1000, 0x7654_3001) };
    const imp = loadDebugfs(inputsOf(renderDebugfs(kernelDebugfsView(k))), { dmesg });
    const warning = imp.diagnostics.find((d) => d.severity === 'warning')!;
    assert.deepEqual([warning.file, warning.line], ['old-dmesg.txt', 2]);
    assert.match(warning.message, /shows 0000:6a:01\.0's PASID directory at 0x76543000, the debugfs dump at 0x[0-9a-f]+ .*: the log is from another time/);
    assert.ok(imp.pasidTables.every((p) => p.from === undefined));
  });

  it('lists a scalable-mode capable unit\'s queue as the kernel does: 32-byte descriptors (ECAP.SMTS) at their indices, head and tail from the queue file', () => {
    const k = debugfsKernel({ legacyUnit: false, cachingMode: true, firstStage: false, maps: [{ iovaPage: 3, outPage: 3, size: '4K', write: true }], pasids: [9], nested: false, sva: false, identityDevice: false });
    const files = renderDebugfs(kernelDebugfsView(k));
    // The queue size comes from ECAP.SMTS (qi_shift), not from IQA.DW: a regset whose IQA lacks DW changes nothing.
    files.set('iommu_regset', files.get('iommu_regset')!.replace(/^(IQA +\t0x90\t\t0x[0-9a-f]{13})([0-9a-f]{3})$/m, (_, a: string, b: string) => a + (parseInt(b, 16) & ~0x800).toString(16).padStart(3, '0')));
    const queue = files.get('invalidation_queue')!;
    const header = /^ Base: 0x([0-9a-f]+)\tHead: (\d+)\tTail: (\d+)$/m.exec(queue)!;
    // One more descriptor in the file than IQT says: the files were read at different times.
    files.set('invalidation_queue', queue.replace(header[0], ` Base: 0x${header[1]}\tHead: ${Number(header[2]) + 1}\tTail: ${Number(header[3]) + 1}`));
    const q = describeImport(loadDebugfs(inputsOf(files))).units[0]!.queue!;
    assert.deepEqual([q.descriptorSize, q.head, q.tail], [32, Number(header[2]) + 1, Number(header[3]) + 1]);
    const rows = new Map(queue.split('\n').filter((l) => /^ *\d+\t/.test(l)).map((l) => [Number(l.split('\t')[0]), l.split('\t').slice(1, 5)]));
    assert.ok(q.descriptors.length > 0);
    for (const d of q.descriptors) {
      // The descriptor the file shows in that slot, decoded from its four words.
      const words = rows.get(d.index)!.map((w) => U64.fromHex(w)!).flatMap((w) => [w.lo, w.hi]);
      assert.equal(d.name, decodeDescriptor(words, 4).name, `slot ${d.index}`);
      assert.equal(d.status, parseInt(queue.split('\n').find((l) => new RegExp(`^ *${d.index}\t`).test(l))!.split('\t').at(-1)!, 16));
    }
  });

  it('lists a page group response of a rev 3.x kernel (5.10: PDP and private data) with both readings', () => {
    const k = debugfsKernel({ legacyUnit: false, cachingMode: true, firstStage: false, maps: [], pasids: [9], nested: false, sva: false, identityDevice: false });
    const files = renderDebugfs(kernelDebugfsView(k));
    const queue = files.get('invalidation_queue')!;
    const tail = Number(/\tTail: (\d+)$/m.exec(queue)![1]);
    // 5.10's prq_event_thread(): QI_PGRP_PASID(9) | QI_PGRP_DID(0x6a08) | QI_PGRP_PASID_P(1) | QI_PGRP_PDP(1) |
    // QI_PGRP_RESP_TYPE, QI_PGRP_IDX(3) | QI_PGRP_LPIG(1), and the request's private data in qw2/qw3.
    const row = new RegExp(`^( *${tail - 1})\t.*\t([0-9a-f]+)$`, 'm');
    files.set('invalidation_queue', queue.replace(row, (_, index: string, status: string) => `${index}\t000000096a080039\t000000000000001c\t1122334455667788\t99aabbccddeeff00\t${status}`));
    const r = describeImport(loadDebugfs(inputsOf(files)));
    const d = r.units[0]!.queue!.descriptors.find((x) => x.index === tail - 1)!;
    assert.equal(d.name, 'Page Group Response');
    assert.deepEqual(d.eras?.rev3.privateData, ['0x1122334455667788', '0x99aabbccddeeff00']);
    assert.deepEqual(d.eras?.rev4.reserved.length, 4);
    assert.match(reportText(r, 'invalidation_queue').join('\n'), new RegExp(`\\[ *${tail - 1}\\] Page Group Response .*\\(rev 3\\.x private data 0x1122334455667788 0x99aabbccddeeff00; rev 4\\.0 reserved: qw0\\[8:5\\] = 0x1 \\(rev 3\\.x PDP\\)`));
  });
});
