import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { ExplainOutcome } from '../../src/extension/log-explain-command';
import type { IommuLabApi } from '../../src/extension/main';
import { waitFor } from './wait';

const EXTENSION_ID = 'iommu-lab.iommu-lab';

function fixture(name: string): vscode.Uri {
  const folder = vscode.workspace.workspaceFolders?.[0];
  assert.ok(folder, 'the test workspace (test/fixtures/workspace) is open');
  return vscode.Uri.joinPath(folder.uri, name);
}

/** Hover text (ours is the only provider for logs) as the user reads it: without emphasis and escapes. */
async function hoverText(uri: vscode.Uri, line: number, character = 20): Promise<string> {
  const hovers = (await vscode.commands.executeCommand<vscode.Hover[]>('vscode.executeHoverProvider', uri, new vscode.Position(line, character))) ?? [];
  return hovers
    .flatMap((h) => h.contents.map((c) => (typeof c === 'string' ? c : c.value)))
    .join('\n')
    .replace(/(?<!\\)\*/g, '')
    .replace(/\\([\\`*_{}[\]()#+\-.!<>~|&])/g, '$1');
}

/** The explained events on a document (the debugfs import's notes have code `debugfs`). */
function ourDiagnostics(uri: vscode.Uri): vscode.Diagnostic[] {
  return vscode.languages.getDiagnostics(uri).filter((d) => d.source === 'IOMMU Lab' && d.code !== 'debugfs');
}

/** A generated dmesg: `total` lines, a DMA fault every `every` lines, routine kernel chatter in between. */
function bigLog(total: number, every: number): string {
  const out: string[] = [];
  for (let i = 1; i <= total; i++) {
    const ts = `[${(i / 1000).toFixed(6).padStart(12)}]`;
    if (i % every === 0) out.push(`${ts} DMAR: [DMA Write NO_PASID] Request device [6a:01.0] fault addr 0x${(0x7f000000 + i * 4096).toString(16)} [fault reason 0x05] PTE Write access is not set`);
    else out.push(`${ts} e1000e 0000:00:19.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx (line ${i})`);
  }
  return out.join('\n') + '\n';
}

describe('kernel logs in the editor: hovers and "Explain Faults in This Log"', () => {
  let api: IommuLabApi;

  before(async () => {
    const ext = vscode.extensions.getExtension<IommuLabApi>(EXTENSION_ID)!;
    api = await ext.activate();
  });

  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  it('opens .log files in VS Code\'s log language and explains a current-format DMA fault on hover', async () => {
    const uri = fixture('kernel-faults.log');
    const doc = await vscode.workspace.openTextDocument(uri);
    assert.equal(doc.languageId, 'log');
    await vscode.window.showTextDocument(doc);
    const text = await hoverText(uri, 3);
    assert.match(text, /Intel VT-d DMA fault at 3713481\.750962/);
    assert.match(text, /What: device 0000:2f:00\.1 tried to read 0x7ebb0000 without a PASID, and the IOMMU blocked it\./);
    assert.match(text, /Why: fault reason 0x06 "PTE Read access is not set"/);
    assert.match(text, /Check next: Check that the IOVA was mapped/);
    assert.match(text, /Format `vtd-dma-5\.15`: Linux 5\.15 and later/);
    // The versions are in the format line only: the title stays short.
    assert.equal(text.split('Linux 5.15 and later').length, 2, text);
    assert.match(text, /^Intel VT-d DMA fault at 3713481\.750962 \(line 4\)$/m);
  });

  it('explains every line of a two-line fault, the older formats and AMD-Vi, and nothing else', async () => {
    const uri = fixture('kernel-faults.log');
    const first = await hoverText(uri, 7);
    const second = await hoverText(uri, 8);
    assert.equal(first, second, 'both lines of the event give the same hover');
    assert.match(first, /lines 8-9/);
    assert.match(first, /vtd-dma-two-line`: Linux <= 4\.6/);
    assert.match(first, /this kernel printed the reason in decimal/);
    assert.match(await hoverText(uri, 6), /vtd-dma-pasid-decimal`: Linux 5\.4-5\.13/);
    assert.match(await hoverText(uri, 5), /device 0000:00:1a\.0 tried to write to 0x0/);
    assert.match(await hoverText(uri, 9), /AMD-Vi DMA fault.*\n[^]*IO_PAGE_FAULT/);
    assert.match(await hoverText(uri, 0), /unit capabilities on dmar0/);
    for (const line of [1, 10, 11]) assert.equal(await hoverText(uri, line), '', `no hover on line ${line + 1}`);
  });

  it('lists the events in the Problems panel with ranges, severities and format ids', async () => {
    const uri = fixture('kernel-faults.log');
    const outcome = await vscode.commands.executeCommand<ExplainOutcome>('iommu.explainLog');
    assert.equal(outcome.ok, true, outcome.message);
    assert.equal(outcome.uri, uri.toString());
    assert.deepEqual([outcome.lines, outcome.events, outcome.problems], [12, 7, 6]);
    const diagnostics = await waitFor('the explained events', vscode.languages.onDidChangeDiagnostics, () => {
      const d = ourDiagnostics(uri);
      return d.length === 7 ? d : undefined;
    });
    const W = vscode.DiagnosticSeverity.Warning;
    const I = vscode.DiagnosticSeverity.Information;
    assert.deepEqual(
      diagnostics.map((d) => [d.range.start.line + 1, d.range.end.line + 1, d.severity, d.code]),
      [
        [1, 1, I, 'vtd-cap'],
        [4, 4, W, 'vtd-dma-5.15'],
        [5, 5, W, 'vtd-dma-5.15'],
        [6, 6, W, 'vtd-dma-5.14'],
        [7, 7, W, 'vtd-dma-pasid-decimal'],
        [8, 9, W, 'vtd-dma-two-line'],
        [10, 10, W, 'amd-event-bdf'],
      ],
    );
    const doc = await vscode.workspace.openTextDocument(uri);
    assert.equal(diagnostics[1]!.range.end.character, doc.lineAt(3).text.length, 'the whole line');
    assert.equal(diagnostics[1]!.message, 'Intel VT-d DMA fault at 3713481.750962: device 0000:2f:00.1 tried to read 0x7ebb0000 without a PASID, and the IOMMU blocked it.');
    assert.match(diagnostics[4]!.message, /device 0000:00:03\.0 tried to read 0xffff8880fe000 without a PASID/);
  });

  it('says so, without failing, when a log has no IOMMU line it can read', async () => {
    const uri = fixture('garbled.log');
    const outcome = await vscode.commands.executeCommand<ExplainOutcome>('iommu.explainLog', uri);
    assert.equal(outcome.ok, true);
    assert.equal(outcome.events, 0);
    assert.match(outcome.message, /^No IOMMU event recognised in garbled\.log: 2 of its 5 lines mention an IOMMU in a format IOMMU Lab does not know/);
    assert.deepEqual(ourDiagnostics(uri), []);
    assert.equal(await hoverText(uri, 2), '');

    const plain = await vscode.workspace.openTextDocument({ language: 'plaintext', content: 'just some notes\nnothing about remapping here\n' });
    await vscode.window.showTextDocument(plain);
    const none = await vscode.commands.executeCommand<ExplainOutcome>('iommu.explainLog');
    assert.match(none.message, /has no IOMMU lines \(2 lines read\): nothing to explain\.$/);
    await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
  });

  it('reads pasted dmesg in an untitled plain-text editor, and follows its edits', async () => {
    const doc = await vscode.workspace.openTextDocument({ language: 'plaintext', content: 'pasted from a bug report:\n\n' });
    const editor = await vscode.window.showTextDocument(doc);
    assert.equal(await hoverText(doc.uri, 1, 0), '');
    await editor.edit((b) =>
      b.insert(new vscode.Position(2, 0), 'DMAR: [DMA Read PASID 0x3] Request device [6a:01.0] fault addr 0x7f3a12345000 [fault reason 0x71] SM: Present bit in first-level paging entry is clear\n'),
    );
    assert.match(await hoverText(doc.uri, 2), /device 0000:6a:01\.0 tried to read 0x7f3a12345000 with PASID 3 \(0x03\)/);
    const outcome = await vscode.commands.executeCommand<ExplainOutcome>('iommu.explainLog');
    assert.deepEqual([outcome.events, outcome.problems], [1, 1]);
    assert.deepEqual(ourDiagnostics(doc.uri).map((d) => [d.range.start.line, d.code]), [[2, 'vtd-dma-5.15']]);
    await editor.edit((b) => b.insert(new vscode.Position(0, 0), 'moved down by one line\n'));
    await waitFor('the stale events to be dropped', vscode.languages.onDidChangeDiagnostics, () => ourDiagnostics(doc.uri).length === 0);
    assert.match(await hoverText(doc.uri, 3), /device 0000:6a:01\.0/, 'the hover follows the edit');
    await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
  });

  it('a traced fault QEMU did not record is information, not another warning, and its hover says why', async () => {
    // Lines 1343-1344 and 1348-1349 of the real trace (test/fixtures/real-vm): a fault and its record, then a
    // fault of the same source id with no vtd_frr_new after it (QEMU compressed it).
    const content = [
      'vtd_dmar_fault sid 0x8 fault 6 addr 0x1234000 write 0',
      'vtd_frr_new index 0 high 0x40ffff0600000008 low 0x1234000',
      'vtd_dmar_fault sid 0x8 fault 6 addr 0x1234004 write 0',
      'vtd_iotlb_cc_hit IOTLB context hit bus 0x0 devfn 0x8 high 0x302 low 0x18f9001 gen 1',
      '',
    ].join('\n');
    const doc = await vscode.workspace.openTextDocument({ language: 'log', content });
    await vscode.window.showTextDocument(doc);
    const outcome = await vscode.commands.executeCommand<ExplainOutcome>('iommu.explainLog');
    assert.deepEqual([outcome.events, outcome.problems], [3, 1]);
    const diagnostics = await waitFor('the explained events', vscode.languages.onDidChangeDiagnostics, () => {
      const d = ourDiagnostics(doc.uri);
      return d.length === 3 ? d : undefined;
    });
    const W = vscode.DiagnosticSeverity.Warning;
    const I = vscode.DiagnosticSeverity.Information;
    assert.deepEqual(diagnostics.map((d) => [d.range.start.line + 1, d.severity]), [[1, W], [3, I], [4, I]]);
    assert.match(await hoverText(doc.uri, 2), /not recorded by QEMU: .* the guest does not see it\./);
    assert.match(await hoverText(doc.uri, 0), /QEMU recorded it in fault recording register 0/);
    await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
  });

  it('decodes a large log lazily: a hover near the top reads only the first slices', async () => {
    const total = 100_000;
    const doc = await vscode.workspace.openTextDocument({ language: 'log', content: bigLog(total, 100) });
    await vscode.window.showTextDocument(doc);
    const t0 = performance.now();
    assert.match(await hoverText(doc.uri, 99), /device 0000:6a:01\.0 tried to write to 0x7f064000/);
    const firstHoverMs = performance.now() - t0;
    const t3 = performance.now();
    await hoverText(doc.uri, 199);
    const nextHoverMs = performance.now() - t3;
    const decoded = api.logs.decoded(doc);
    assert.ok(decoded.lines < total, `the hover on line 100 read ${decoded.lines} of ${total} lines`);

    const t1 = performance.now();
    const lastAddress = (0x7f00_0000 + total * 4096).toString(16);
    assert.match(await hoverText(doc.uri, total - 1), new RegExp(`tried to write to 0x${lastAddress} without a PASID`));
    const lastHoverMs = performance.now() - t1;
    assert.equal(decoded.done, true);
    assert.strictEqual(api.logs.decoded(doc), decoded, 'one decode per document version');

    const t2 = performance.now();
    const outcome = await vscode.commands.executeCommand<ExplainOutcome>('iommu.explainLog');
    const explainMs = performance.now() - t2;
    assert.deepEqual([outcome.lines, outcome.events, outcome.diagnostics], [total, total / 100, total / 100]);
    console.log(`100k-line log: hover line 100 ${firstHoverMs.toFixed(0)} ms, line 200 ${nextHoverMs.toFixed(0)} ms, hover last line ${lastHoverMs.toFixed(0)} ms (decode ${decoded.busyMs.toFixed(0)} ms busy), explainLog ${explainMs.toFixed(0)} ms`);
    await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
  });

  it('explains a log too large for VS Code to share with extensions by reading it from disk, in slices', async () => {
    // VS Code keeps documents above 50 MB from extensions: no TextDocument, no hovers; the command reads the file.
    const dir = mkdtempSync(join(tmpdir(), 'iommu-lab-big-log-'));
    try {
      const file = join(dir, 'big.log');
      const total = 600_000;
      writeFileSync(file, bigLog(total, 1000));
      const uri = vscode.Uri.file(file);
      let longestPause = 0;
      let last = performance.now();
      let ticking = true;
      const tick = () => {
        const now = performance.now();
        longestPause = Math.max(longestPause, now - last);
        last = now;
        if (ticking) setTimeout(tick, 1);
      };
      setTimeout(tick, 1);
      const t0 = performance.now();
      const outcome = await vscode.commands.executeCommand<ExplainOutcome>('iommu.explainLog', uri);
      const ms = performance.now() - t0;
      ticking = false;
      assert.deepEqual([outcome.ok, outcome.lines, outcome.events, outcome.diagnostics], [true, total, total / 1000, total / 1000]);
      const d = ourDiagnostics(uri);
      assert.equal(d.length, total / 1000);
      assert.deepEqual([d[0]!.range.start.line, d[0]!.range.end.line, d[0]!.code], [999, 999, 'vtd-dma-5.15']);
      assert.ok(d[0]!.range.end.character > 100, 'the range ends where the line ends');
      assert.ok(!vscode.workspace.textDocuments.some((doc) => doc.uri.toString() === uri.toString()), 'read from disk, not opened');
      console.log(`${total}-line log from disk: explainLog ${ms.toFixed(0)} ms, longest pause of the extension host ${longestPause.toFixed(0)} ms`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
