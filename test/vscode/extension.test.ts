import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { IommuLabApi } from '../../src/extension/main';
import { waitFor, waitUntil } from './wait';

const EXTENSION_ID = 'iommu-lab.iommu-lab';

function fixture(name: string): vscode.Uri {
  const folder = vscode.workspace.workspaceFolders?.[0];
  assert.ok(folder, 'the test workspace (test/fixtures/workspace) is open');
  return vscode.Uri.joinPath(folder.uri, name);
}

function diagnosticsFor(uri: vscode.Uri): Promise<vscode.Diagnostic[]> {
  return waitFor(`diagnostics for ${uri.path}`, vscode.languages.onDidChangeDiagnostics, () => {
    const d = vscode.languages.getDiagnostics(uri);
    return d.length > 0 ? d : undefined;
  });
}

describe('IOMMU Lab in a real VS Code', () => {
  let api: IommuLabApi;
  const pkg = vscode.extensions.getExtension(EXTENSION_ID)?.packageJSON;

  it('is loaded and stays inactive until one of its own activation events', () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext, `${EXTENSION_ID} is loaded in the extension development host`);
    assert.equal(ext.isActive, false, 'nothing has asked for the extension yet');
  });

  it('activates when its view is opened', async () => {
    const ext = vscode.extensions.getExtension<IommuLabApi>(EXTENSION_ID)!;
    await vscode.commands.executeCommand('iommu.topology.focus');
    api = await waitUntil('activation by the onView event', () => ext.isActive && ext.exports);
    assert.ok(api.topologyTree);
    await api.languageServerReady;
  });

  it('registers every command that package.json declares', async () => {
    const registered = new Set(await vscode.commands.getCommands(true));
    const declared: string[] = pkg.contributes.commands.map((c: { command: string }) => c.command);
    assert.ok(declared.length >= 6);
    assert.deepEqual(declared.filter((c) => !registered.has(c)), []);
  });

  it('registers the Topology tree view, which is empty (welcome content) with no topology open', async () => {
    const registered = new Set(await vscode.commands.getCommands(true));
    assert.ok(registered.has('iommu.topology.focus'), 'VS Code creates <view>.focus for every registered view');
    assert.ok(registered.has('workbench.view.extension.iommu'), 'the IOMMU view container is registered');
    assert.deepEqual(api.topologyTree.getChildren(), []);
  });

  it('shows a lexical error from the language server as a located diagnostic', async () => {
    const uri = fixture('lexical-error.iommu');
    const doc = await vscode.workspace.openTextDocument(uri);
    assert.equal(doc.languageId, 'iommu-topology');
    await vscode.window.showTextDocument(doc);
    const diagnostics = await diagnosticsFor(uri);
    const summary = diagnostics.map((d) => `${d.range.start.line + 1}:${d.range.start.character + 1} ${d.source} ${d.code} ${d.message}`);
    assert.deepEqual(summary, [
      "3:8 iommu-lab bad-pci-address device 0x20 is out of range (00-1f) in PCI address '00:20.0'",
      "4:13 iommu-lab bad-number malformed hexadecimal number '0xZZ'",
    ]);
    assert.ok(diagnostics.every((d) => d.severity === vscode.DiagnosticSeverity.Error));
  });

  it('lists the open topology file in the tree with its problem count', async () => {
    const uri = fixture('lexical-error.iommu');
    const nodes = await waitFor('the tree to list the file', api.topologyTree.onDidChangeTreeData, () => {
      const n = api.topologyTree.getChildren();
      return n.length > 0 ? n : undefined;
    });
    assert.equal(nodes.length, 1);
    assert.equal(nodes[0]!.uri.toString(), uri.toString());
    const item = api.topologyTree.getTreeItem(nodes[0]!);
    assert.equal(item.label, 'lexical-error.iommu');
    assert.equal(item.description, '2 problems');
  });

  it('clears the diagnostic when the user fixes the text (an undoable edit)', async () => {
    const editor = vscode.window.activeTextEditor!;
    const uri = editor.document.uri;
    // 00:20.0 -> 00:10.0 and 0xZZ -> 0x10
    await editor.edit((b) => {
      b.replace(new vscode.Range(2, 10, 2, 11), '1');
      b.replace(new vscode.Range(3, 12, 3, 16), '0x10');
    });
    await waitFor('diagnostics to clear', vscode.languages.onDidChangeDiagnostics, () => vscode.languages.getDiagnostics(uri).length === 0);
    await vscode.commands.executeCommand('undo');
    const back = await diagnosticsFor(uri);
    assert.equal(back.length, 2);
    await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
  });

  it('opens a new untitled topology from the template, free of problems', async () => {
    await vscode.commands.executeCommand('iommu.newTopology');
    const doc = vscode.window.activeTextEditor!.document;
    assert.equal(doc.languageId, 'iommu-topology');
    assert.equal(doc.isUntitled, true);
    assert.match(doc.getText(), /^iommu dmar0 scalable/m);
    // The server answers for untitled documents too: an empty report, then a real one after a typo.
    await vscode.window.activeTextEditor!.edit((b) => b.insert(new vscode.Position(0, 0), '$'));
    const d = await diagnosticsFor(doc.uri);
    assert.equal(d[0]!.code, 'unexpected-character');
    await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
  });

  it('restarts the language server on request and keeps serving diagnostics', async () => {
    await vscode.commands.executeCommand('iommu.restartLanguageServer');
    const uri = fixture('lexical-error.iommu');
    const editor = await vscode.window.showTextDocument(uri);
    // A fresh edit only the restarted server can have seen: a third problem on line 1.
    await editor.edit((b) => b.insert(new vscode.Position(0, 0), '$ '));
    const d = await waitFor('three diagnostics from the restarted server', vscode.languages.onDidChangeDiagnostics, () => {
      const all = vscode.languages.getDiagnostics(uri);
      return all.length === 3 ? all : undefined;
    });
    assert.deepEqual(d.map((x) => x.range.start.line), [0, 2, 3]);
    await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
  });
});
