import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { ImportOutcome, WalkResultOutcome } from '../../src/extension/debugfs-commands';
import type { IommuLabApi } from '../../src/extension/main';
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
