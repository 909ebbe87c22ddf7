import * as assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { renderDebugfs } from '../../src/core/driver/debugfs';
import type { WalkStep } from '../../src/core/hw/types';
import { debugfsFileOrder } from '../../src/readers/debugfs';
import { type DebugfsImport, loadDebugfs } from '../../src/readers/debugfs-import';
import { describeImport, walkImported } from '../../src/readers/debugfs-report';
import { decodeLogText } from '../../src/readers/log-decoder';
import type { LogEvent } from '../../src/readers/log-event';
import { createLspciReader } from '../../src/readers/lspci';
import { runCli } from './cli.test';

// Ground truth: what a real Linux 6.12.118 intel-iommu driver printed on QEMU 7.2's emulated VT-d
// (test/fixtures/real-vm/custom612-legacy, copied byte for byte from the run described in its MANIFEST.txt):
// /sys/kernel/debug/iommu/intel at four stages, dmesg with CONFIG_DMAR_DEBUG table dumps after each fault,
// and lspci. Every expected value below is read from those files, not from this project's output.

const root = join(__dirname, '../../..');
const run = join(root, 'test/fixtures/real-vm/custom612-legacy');
const STAGES = ['boot', 'after-unbound-faults', 'vfio-mapped', 'vfio-after-faults'] as const;
type Stage = (typeof STAGES)[number];

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

function stage(name: Stage): { dir: string; files: Map<string, string>; imp: DebugfsImport } {
  const dir = join(run, `debugfs-${name}/intel`);
  const paths = filesUnder(dir).map((p) => relative(dir, p).split('\\').join('/'));
  const files = new Map(paths.map((p) => [p, readFileSync(join(dir, p), 'utf8')]));
  const imp = loadDebugfs(debugfsFileOrder(paths).map((path) => ({ path, text: files.get(path)! })));
  return { dir, files, imp };
}

const stages = new Map<Stage, ReturnType<typeof stage>>();
const get = (name: Stage) => stages.get(name) ?? stages.set(name, stage(name)).get(name)!;
const log = (name: string) => decodeLogText(readFileSync(join(run, name), 'utf8')).events;

/** The kernel's walk dump after a fault (DMAR_DEBUG), as the log reader decodes it. */
function walkDump(e: LogEvent): { entry: string; level?: number; value?: string; low?: string; hi?: string; present?: boolean }[] {
  return (e.details.walk as { steps: ReturnType<typeof walkDump> }).steps;
}

// Raw words: 16 hex digits in a walk's trace, with 0x in the report (its JSON form).
const word = (raw: string) => BigInt(raw.startsWith('0x') ? raw : '0x' + raw);

describe('readers: real debugfs dumps of Linux 6.12 on QEMU 7.2 (ground truth)', () => {
  for (const name of STAGES) {
    it(`${name}: every file is read, line by line, with nothing to report`, () => {
      const { files, imp } = get(name);
      assert.deepEqual(debugfsFileOrder([...files.keys()]).sort(), [...files.keys()].sort(), 'every file of the directory is one the reader knows');
      assert.equal(imp.dump.unrecognisedLines, 0);
      assert.deepEqual(imp.diagnostics, []);
      const lines = [...files.values()].reduce((n, t) => n + t.split('\n').length - 1, 0);
      assert.equal(imp.dump.lines, lines);
    });

    it(`${name}: rendering the import prints every real file again, byte for byte`, () => {
      const { files, imp } = get(name);
      const again = renderDebugfs(imp.view);
      assert.deepEqual([...again.keys()].sort(), [...files.keys()].sort());
      for (const [path, text] of files) assert.equal(again.get(path), text, path);
    });
  }

  it('the unit is the one dmesg announced, with the capabilities it printed', () => {
    const announced = log('dmesg-boot.txt').find((e) => e.kind === 'capability')!;
    const { imp } = get('boot');
    assert.equal(imp.units.length, 1);
    const unit = imp.units[0]!.unit;
    assert.deepEqual([unit.name, '0x' + unit.regBase.toString(16), unit.segment], [announced.iommu, announced.details.registerBase, 0]);
    assert.deepEqual([unit.capRaw.toString(), unit.ecapRaw.toString()], [announced.details.cap, announced.details.ecap]);
    assert.equal(`${unit.version[0]}:${unit.version[1]}`, announced.details.version);
    // sm_off on the command line (cmdline.txt): legacy mode.
    assert.ok(unit.translationEnabled && !unit.scalableMode);
  });

  it('the devices are the PCI functions lspci listed, each with a context entry', () => {
    const r = createLspciReader();
    const listed: string[] = [];
    readFileSync(join(run, 'lspci-vvv.txt'), 'utf8').split('\n').forEach((l, i) => listed.push(...r.push(l, i + 1).map((d) => d.device)));
    listed.push(...r.end().map((d) => d.device));
    for (const name of STAGES) {
      const report = describeImport(get(name).imp);
      assert.deepEqual(report.devices.map((d) => d.device), listed, name);
      assert.ok(report.devices.every((d) => d.context?.fields.P === true), name);
    }
  });

  it("the edu device's context entry is the one the kernel's fault dumps printed, before and after VFIO", () => {
    const context = (name: Stage) => describeImport(get(name).imp).devices.find((d) => d.device === '0000:00:01.0')!.context!.raw.map(word);
    const printed = (file: string) => {
      const step = walkDump(log(file).find((e) => e.kind === 'dma-fault')!).find((s) => s.entry === 'context')!;
      return [BigInt(step.low!), BigInt(step.hi!)];
    };
    assert.deepEqual(context('after-unbound-faults'), printed('dmesg-after-unbound-faults.txt'));
    const vfio = log('dmesg-after-vfio-faults.txt').filter((e) => e.kind === 'dma-fault').slice(2);
    const step = walkDump(vfio[0]!).find((s) => s.entry === 'context')!;
    assert.deepEqual(context('vfio-after-faults'), [BigInt(step.low!), BigInt(step.hi!)]);
    // The default domain (DID 3 before, its own VFIO domain after) keeps the DID in context qw1.
    assert.equal(describeImport(get('vfio-mapped').imp).devices.find((d) => d.device === '0000:00:01.0')!.context!.fields.DID, 3);
  });

  it('the VFIO mapping is what vfio_map set up: 0x100000 + 64 KiB read/write and 0x200000 4 KiB read-only', () => {
    // vfio-map-log.txt: "mapped RW iova 0x100000 size 0x10000", "mapped RO iova 0x200000 size 0x1000".
    const report = describeImport(get('vfio-mapped').imp);
    const edu = report.domains.find((d) => d.users.includes('0000:00:01.0'))!;
    assert.equal(edu.mappedBytes, '0x' + (0x10000 + 0x1000).toString(16));
    const rw = edu.ranges.filter((r) => r.access === 'rw-');
    const ro = edu.ranges.filter((r) => r.access === 'r--');
    assert.deepEqual([rw[0]!.iova, rw.reduce((n, r) => n + parseInt(r.size, 16), 0)], ['0x100000', 0x10000]);
    assert.deepEqual(ro.map((r) => [r.iova, r.size]), [['0x200000', '0x1000']]);
    assert.ok(rw.every((r) => parseInt(r.iova, 16) >= 0x10_0000 && parseInt(r.iova, 16) < 0x11_0000));
    // Before VFIO the edu device's default domain maps nothing.
    assert.equal(describeImport(get('boot').imp).domains.find((d) => d.users.includes('0000:00:01.0'))!.mappedBytes, '0x0');
  });

  it('a walk through the edu device translates 0x100000 and faults on 0x300000 and a write to 0x200000, as the kernel reported, through the same entries its dumps printed', () => {
    const { imp } = get('vfio-after-faults');
    const ok = walkImported(imp, { device: '0000:00:01.0', address: '0x100000' });
    assert.ok(ok.ok && ok.result.ok);
    // The PTE of IOVA pfn 0x100 in domain_translation_struct: 0x000000003aec0003.
    assert.deepEqual([ok.result.output, ok.result.perms.read, ok.result.perms.write], ['0x3aec0000', true, true]);
    const faults = log('dmesg-after-vfio-faults.txt').filter((e) => e.kind === 'dma-fault');
    for (const fault of faults.filter((f) => f.address === '0x300000' || f.address === '0x200000')) {
      const w = walkImported(imp, { device: fault.device!, address: fault.address!, write: fault.access === 'write' });
      assert.ok(w.ok && !w.result.ok, fault.address!);
      assert.equal(w.result.reason, fault.reason!.code, `${fault.address}: the reason the kernel printed`);
      // Entry by entry, the tables walked are the ones the kernel dumped after the fault.
      const dumped = walkDump(fault).filter((s) => s.entry === 'pte' && s.present !== false);
      const walked = (w.result.trace ?? []).filter((s: WalkStep) => s.level !== undefined);
      assert.deepEqual(walked.slice(0, dumped.length).map((s) => [s.level, word(s.raw[0]!)]), dumped.map((s) => [s.level, BigInt(s.value!)]), fault.address!);
      const rootStep = (w.result.trace ?? []).find((s) => s.structure === 'root-entry')!;
      assert.equal(word(rootStep.raw[0]!), BigInt(walkDump(fault).find((s) => s.entry === 'root')!.low!));
    }
  });

  it('before VFIO the unbound edu device faults on 0x1234000 and 0x5678000 as the kernel reported', () => {
    const { imp } = get('after-unbound-faults');
    for (const fault of log('dmesg-after-unbound-faults.txt').filter((e) => e.kind === 'dma-fault')) {
      const w = walkImported(imp, { device: fault.device!, address: fault.address!, write: fault.access === 'write' });
      assert.ok(w.ok && !w.result.ok);
      assert.equal(w.result.reason, fault.reason!.code, fault.address!);
    }
  });

  it('the invalidation queue is listed as its file shows it: 16-byte descriptors (ECAP.SMTS is 0), head and tail from its own header', () => {
    const { files, imp } = get('vfio-mapped');
    const header = /^ Base: 0x([0-9a-f]+)\tHead: (\d+)\tTail: (\d+)$/m.exec(files.get('invalidation_queue')!)!;
    const regIqh = /^IQH\s+\t0x80\t\t0x([0-9a-f]{16})$/m.exec(files.get('iommu_regset')!)!;
    const q = describeImport(imp).units[0]!.queue!;
    assert.deepEqual([q.base, q.head, q.tail, q.descriptorSize], ['0x' + header[1], Number(header[2]), Number(header[3]), 16]);
    assert.notEqual(parseInt(regIqh[1]!, 16) / 16, q.head, 'iommu_regset was read at another time: its IQH is not the queue file\'s head');
    // A wait descriptor's status address is qw1 without its low two bits; the file's row 1 has qw1 000000000104b804.
    const rows = files.get('invalidation_queue')!.split('\n').filter((l) => /^ {4}1\t/.test(l));
    assert.equal(rows[0], '    1\t0000000200000025\t000000000104b804\t0000000000000000');
    const waits = q.descriptors.filter((d) => d.name === 'Invalidation Wait');
    assert.ok(waits.length > 0);
    // Each wait writes its status into the driver's desc_status[] slot of its own index: base + 4 * index.
    const bases = new Set(waits.map((d) => parseInt(d.fields.ADDR as string, 16) - 4 * d.index));
    assert.equal(bases.size, 1);
    assert.equal([...bases][0], 0x104b800);
  });

  it('interrupt remapping: the IR table and its entries, with their sources in the unit\'s segment', () => {
    const report = describeImport(get('boot').imp);
    const ir = report.interrupts.find((i) => i.kind === 'remapped')!;
    assert.equal(ir.table, '0x1200000');
    assert.deepEqual(ir.entries.map((e) => [e.index, e.source, e.fields.V]), [
      [0, '0000:ff:00.0', 0x26], [1, '0000:ff:00.0', 0x30], [2, '0000:ff:00.0', 0x28], [3, '0000:ff:00.0', 0x27], [8, '0000:ff:00.0', 0x20],
      [11, '0000:ff:00.0', 0x25], [16, '0000:00:02.0', 0x22], [17, '0000:01:00.0', 0x24], [18, '0000:01:00.0', 0x23],
    ]);
  });

  it('the virtio-blk with ATS (01:00.0) is a device-TLB context, as lspci shows ATS enabled', () => {
    const { imp } = get('boot');
    const ep = imp.machine.endpoint('0000:01:00.0');
    assert.ok(ep.atsEnabled);
    assert.equal(describeImport(imp).devices.find((d) => d.device === '0000:01:00.0')!.context!.fields.TT, 1);
  });

  it('the CLI imports and walks the real directory', () => {
    const dir = join(run, 'debugfs-vfio-mapped/intel');
    const report = runCli(['import-debugfs', dir]);
    assert.equal(report.code, 0, report.stderr);
    assert.match(report.stdout, /^dmar0: VT-d 1\.0 at 0xfed90000, legacy mode, translation on, root table 0x18ef000$/m);
    assert.match(report.stdout, /^ {2}invalidation queue at 0x10c5000, 16-byte descriptors, head 196, tail 196 \(idle\)$/m);
    const walk = runCli(['walk', '--debugfs', dir, '--device', '00:01.0', '0x300000']);
    assert.equal(walk.code, 1);
    assert.match(walk.stdout, /^Result: fault 0x06: PTE Read access is not set/m);
  });
});
