import * as assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as vscode from 'vscode';
import { kernelDebugfsView, renderDebugfs } from '../../src/core/driver/debugfs';
import type { ImportOutcome, WalkResultOutcome } from '../../src/extension/debugfs-commands';
import type { IommuLabApi } from '../../src/extension/main';
import { debugfsKernel, faultDump } from '../support/debugfs-kernel';
import { waitFor } from './wait';

const EXTENSION_ID = 'iommu-lab.iommu-lab';

function fixture(...path: string[]): vscode.Uri {
  const folder = vscode.workspace.workspaceFolders?.[0];
  assert.ok(folder, 'the test workspace (test/fixtures/workspace) is open');
  return vscode.Uri.joinPath(folder.uri, ...path);
}

const walk = (args: object) => vscode.commands.executeCommand<WalkResultOutcome>('iommu.walkDebugfsAddress', args);

/**
 * test/fixtures/workspace/debugfs-dump is the debugfs directory of a simulated machine, rendered by
 * src/core/driver/debugfs.ts (test/support/make-debugfs-fixture.ts says which mappings it holds).
 */
describe('"IOMMU: Import debugfs Dump" and walks through the import', () => {
  let api: IommuLabApi;

  before(async () => {
    api = await vscode.extensions.getExtension<IommuLabApi>(EXTENSION_ID)!.activate();
  });

  it('asks for an import before walking', async () => {
    assert.equal(api.debugfs.current, undefined);
    const outcome = await walk({ device: '00:02.0', address: '0x100000' });
    assert.deepEqual(outcome, { ok: false, error: 'No debugfs dump is imported in this window.' });
  });

  it('imports a copied /sys/kernel/debug/iommu/intel folder given as argument', async () => {
    const outcome = await vscode.commands.executeCommand<ImportOutcome>('iommu.importDebugfs', fixture('debugfs-dump'));
    assert.equal(outcome.ok, true, outcome.message);
    assert.deepEqual(outcome.files, [
      'iommu_regset',
      'dmar_translation_struct',
      'invalidation_queue',
      'ir_translation_struct',
      '0000:00:02.0/domain_translation_struct',
      '0000:6a:01.0/5/domain_translation_struct',
      '0000:6a:01.0/domain_translation_struct',
      'dmar_perf_latency',
    ]);
    assert.deepEqual(outcome.units, ['dmar0']);
    assert.deepEqual(outcome.devices, [
      { device: '0000:00:02.0', unit: 'dmar0', pasids: [0] },
      { device: '0000:6a:01.0', unit: 'dmar0', pasids: [0, 5] },
    ]);
    assert.match(outcome.message, /^Imported debugfs-dump: 1 IOMMU unit, 2 devices, 3 PASID entries, 3 domains/);
    assert.ok(api.debugfs.current);
    assert.ok(outcome.diagnostics.every((d) => d.severity !== 'error'), 'the renderer\'s own output has no errors');
  });

  it('puts the import\'s notes on the dump files in the Problems panel', async () => {
    const notes = (await vscode.commands.executeCommand<ImportOutcome>('iommu.importDebugfs', fixture('debugfs-dump'))).diagnostics;
    for (const file of new Set(notes.map((n) => n.file))) {
      const uri = fixture('debugfs-dump', ...file.split('/'));
      const expected = notes.filter((n) => n.file === file).map((n) => [Math.max(0, n.line - 1), n.message]);
      const shown = await waitFor(`the notes on ${file}`, vscode.languages.onDidChangeDiagnostics, () => {
        const d = vscode.languages.getDiagnostics(uri).filter((x) => x.code === 'debugfs');
        return d.length === expected.length ? d : undefined;
      });
      assert.deepEqual(shown.map((d) => [d.range.start.line, d.message]), expected);
      assert.ok(shown.every((d) => d.source === 'IOMMU Lab'));
    }
  });

  it('walks a device\'s PASID through the real tables to the mapped host address', async () => {
    const outcome = await walk({ device: '6a:01.0', pasid: 5, write: true, address: '0x40000123' });
    assert.ok(outcome.ok, outcome.ok ? '' : outcome.error);
    assert.equal(outcome.device, '0000:6a:01.0');
    assert.equal(outcome.translated, true);
    assert.equal(outcome.output, '0x123400123');
    assert.match(outcome.text[0]!, /^Walk: 0000:6a:01\.0 on dmar0 PASID 0x5: write 0x40000123$/);
    assert.match(outcome.text.at(-1)!, /^Result: 0x123400123 \(4 KiB page, read\/write, DID 4/);
  });

  it('walks a request without PASID, with a decimal address', async () => {
    const outcome = await walk({ device: '0000:00:02.0', address: String(0x10_0abc) });
    assert.ok(outcome.ok && outcome.translated);
    assert.equal(outcome.output, '0x80000abc');
  });

  it('reports the fault the hardware would raise: a write to a read-only page', async () => {
    const outcome = await walk({ device: '6a:01.0', address: '0x200000', write: true });
    assert.ok(outcome.ok);
    assert.equal(outcome.translated, false);
    assert.ok(outcome.fault && outcome.fault.reason > 0, JSON.stringify(outcome.fault));
    assert.match(outcome.text.at(-1)!, /^Result: fault 0x[0-9a-f]{2}: /);
  });

  it('refuses what it cannot walk with a clear message', async () => {
    const unknown = await walk({ device: '00:1f.0', address: '0x1000' });
    assert.equal(unknown.ok, false);
    assert.match(!unknown.ok ? unknown.error : '', /0000:00:1f\.0 is not in the dump \(devices: 0000:00:02\.0, 0000:6a:01\.0\)/);
    const bad = await walk({ device: '00:02.0', address: 'zz' });
    assert.match(!bad.ok ? bad.error : '', /'zz' is not an address/);
  });

  it('says what is wrong with a file that is not a dump, keeps the last import, and never throws', async () => {
    const uri = fixture('not-a-dump.txt');
    const outcome = await vscode.commands.executeCommand<ImportOutcome>('iommu.importDebugfs', uri);
    assert.equal(outcome.ok, false);
    assert.match(outcome.message, /^not-a-dump\.txt holds no VT-d debugfs tables: \d+ of its 4 lines were not understood/);
    const shown = await waitFor('the notes on not-a-dump.txt', vscode.languages.onDidChangeDiagnostics, () => {
      const d = vscode.languages.getDiagnostics(uri).filter((x) => x.code === 'debugfs');
      return d.length > 0 ? d : undefined;
    });
    assert.ok(shown.every((d) => d.range.start.line < 4));
    const again = await walk({ device: '00:02.0', address: '0x100000' });
    assert.ok(again.ok && again.output === '0x80000000', 'the previous import is still there');
  });
});

/**
 * A kernel log beside the dump: debugfs does not print the PASID directory; CONFIG_DMAR_DEBUG's table dump
 * after a fault does. The machine is simulated (test/support/debugfs-kernel.ts): its debugfs directory as
 * the renderer prints it, and the dmesg of a fault of 6a:01.0 at PASID 5 as Linux 6.12 prints it, with the
 * entries read from the machine's memory, so the PASID table's real address is known.
 */
describe('"IOMMU: Import debugfs Dump" with the kernel log of the same boot', () => {
  let dir: string;
  let tableAddress: number;
  let dmesgText: string;
  const importDump = (uri: vscode.Uri) => vscode.commands.executeCommand<ImportOutcome>('iommu.importDebugfs', uri);
  const api = () => vscode.extensions.getExtension<IommuLabApi>(EXTENSION_ID)!.exports;

  /** Writes the machine's debugfs directory at `dump`. */
  let writeDump: (dump: string) => void;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'iommu-lab-debugfs-log-'));
    const k = debugfsKernel({ legacyUnit: false, cachingMode: false, firstStage: false, maps: [{ iovaPage: 0x100, outPage: 5, size: '4K', write: true }], pasids: [5], nested: false, sva: false, identityDevice: false });
    const files = renderDebugfs(kernelDebugfsView(k));
    writeDump = (dump) => {
      for (const [path, text] of files) {
        mkdirSync(dirname(join(dump, path)), { recursive: true });
        writeFileSync(join(dump, path), text);
      }
    };
    dmesgText = faultDump(k, '6a:01.0', 5, 0xdead_0000);
    const dev = k.device('6a:01.0');
    const mem = k.machine.memory;
    tableAddress = (mem.readHi(dev.pasidDir) & 0xf_ffff) * 0x1_0000_0000 + ((mem.readLo(dev.pasidDir) & 0xffff_f000) >>> 0);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Whether the walk read PASID 5's entry from the table where the kernel put it. */
  const readRealTable = (w: WalkResultOutcome) => w.ok && w.text.some((l) => l.includes(`pasid-entry[5] @ 0x${(tableAddress + 5 * 64).toString(16)}`));

  it('uses a dmesg in the parent of the dump folder, says so, and walks through the real PASID table', async () => {
    writeDump(join(dir, 'box1/intel'));
    writeFileSync(join(dir, 'box1/dmesg.txt'), dmesgText);
    // A log without a table dump is not taken, even where it comes first (the dump's folder, then its parent).
    writeFileSync(join(dir, 'box1/boot.log'), '[    0.1] DMAR: IOMMU enabled\n');
    writeFileSync(join(dir, 'box1/intel/dmesg-old'), '[    0.1] DMAR: IOMMU enabled\n');
    const outcome = await importDump(vscode.Uri.file(join(dir, 'box1/intel')));
    assert.equal(outcome.ok, true, outcome.message);
    assert.equal(outcome.kernelLog, '../dmesg.txt');
    // One PASID table per device with PASID entries (all below PASID 64); the log's fault dump gives 6a:01.0's.
    const tables = outcome.devices.filter((d) => d.pasids.length > 0).length;
    assert.ok(tables > 1);
    assert.deepEqual(outcome.pasidTables, { fromLog: 1, placed: tables - 1 });
    assert.match(outcome.message, /; 1 PASID table where the kernel log \.\.\/dmesg\.txt puts it; \d+ PASID tables placed by the import \(debugfs does not print the PASID directory, and \.\.\/dmesg\.txt has no table dump for them: add the kernel log/);
    const w = await walk({ device: '6a:01.0', pasid: 5, write: true, address: '0x100abc' });
    assert.ok(w.ok && w.translated && w.output === '0x100005abc', JSON.stringify(w));
    assert.ok(w.text.some((l) => l.includes('is from the kernel log (../dmesg.txt:2); debugfs does not print it')), w.text.join('\n'));
    assert.ok(readRealTable(w), w.text.join('\n'));
  });

  it('skips a side file it cannot read (a dangling link named dmesg.txt, a file no one may read), says which, and imports with the next log', async () => {
    writeDump(join(dir, 'box3/intel'));
    // In the order they are tried (dmesg*, kern.log*, *.log): a link to nothing, a link to a file that even
    // root may not read (a sysctl of mode 0200: Linux only, as this suite is), then the log.
    symlinkSync(join(dir, 'box3/gone.txt'), join(dir, 'box3/dmesg.txt'));
    symlinkSync('/proc/sys/vm/drop_caches', join(dir, 'box3/kern.log.1'));
    writeFileSync(join(dir, 'box3/boot.log'), dmesgText);
    const outcome = await importDump(vscode.Uri.file(join(dir, 'box3/intel')));
    assert.equal(outcome.ok, true, outcome.message);
    assert.equal(outcome.kernelLog, '../boot.log');
    assert.equal(outcome.pasidTables?.fromLog, 1);
    assert.deepEqual(outcome.skippedLogs, [{ file: '../kern.log.1', why: 'permission denied' }]);
  });

  it('places the PASID tables without a log, offers to add one, and re-imports with the log picked', async () => {
    writeDump(join(dir, 'box2/dump/intel'));
    // A rotated, compressed log is not read, whatever it holds.
    writeFileSync(join(dir, 'box2/dump/kern.log.1.gz'), dmesgText);
    writeFileSync(join(dir, 'box2/elsewhere.txt'), dmesgText);
    const outcome = await importDump(vscode.Uri.file(join(dir, 'box2/dump/intel')));
    assert.equal(outcome.ok, true, outcome.message);
    assert.equal(outcome.kernelLog, undefined);
    const tables = outcome.devices.filter((d) => d.pasids.length > 0).length;
    assert.deepEqual(outcome.pasidTables, { fromLog: 0, placed: tables });
    assert.match(outcome.message, /; \d+ PASID tables placed by the import \(debugfs does not print the PASID directory: add the kernel log of the same boot for the real addresses\)/);
    const placed = await walk({ device: '6a:01.0', pasid: 5, write: true, address: '0x100abc' });
    assert.ok(placed.ok && placed.output === '0x100005abc', JSON.stringify(placed));
    assert.ok(placed.text.some((l) => l.startsWith('Note: debugfs does not print the PASID directory')));
    assert.ok(!readRealTable(placed));

    // "Add Kernel Log…" with the file the dialog would give.
    const again = await api().debugfs.addKernelLog(vscode.Uri.file(join(dir, 'box2/elsewhere.txt')));
    assert.equal(again.ok, true, again.message);
    assert.equal(again.kernelLog, 'elsewhere.txt');
    assert.deepEqual(again.pasidTables, { fromLog: 1, placed: tables - 1 });
    assert.deepEqual(again.devices, outcome.devices);
    const real = await walk({ device: '6a:01.0', pasid: 5, write: true, address: '0x100abc' });
    assert.ok(real.ok && real.output === '0x100005abc', JSON.stringify(real));
    assert.ok(real.text.some((l) => l.includes('is from the kernel log (elsewhere.txt:2)')), real.text.join('\n'));
    assert.ok(readRealTable(real), real.text.join('\n'));
  });
});
