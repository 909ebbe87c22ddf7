import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { LANGUAGE_ID } from '../protocol/ids';
import { createLanguageClient } from './language-client';
import { CommandIds, ViewIds } from './manifest';
import { TopologyTreeProvider } from './topology-tree';

/** What activate() returns: other extensions and the integration tests reach the extension through it. */
export interface IommuLabApi {
  readonly topologyTree: TopologyTreeProvider;
  readonly languageClient: LanguageClient;
  /** Resolves once the language server has answered `initialize`. */
  readonly languageServerReady: Promise<void>;
}

const NEW_TOPOLOGY_TEMPLATE = `# IOMMU topology
# One VT-d unit in scalable mode, one device, one paging domain.

iommu dmar0 scalable {
  cap  0x00d2008c40660462
  ecap 0x00f050da
}

device 00:02.0 on dmar0 { ats pri pasid 20 }

domain dma0 paging second-level levels 4 on dmar0
map dma0 iova 0x100000 hpa 0x80000000 size 2M read write
attach 00:02.0 dma0
`;

export function activate(context: vscode.ExtensionContext): IommuLabApi {
  const output = vscode.window.createOutputChannel('IOMMU Lab');
  const tree = new TopologyTreeProvider();
  const client = createLanguageClient(context, output);
  const languageServerReady = client.start().catch((err: unknown) => {
    output.appendLine(`The language server failed to start: ${err instanceof Error ? err.message : String(err)}`);
    throw err;
  });

  context.subscriptions.push(
    output,
    tree,
    { dispose: () => void client.stop() },
    vscode.window.createTreeView(ViewIds.topology, { treeDataProvider: tree, showCollapseAll: true }),
    vscode.commands.registerCommand(CommandIds.openTopology, async () => {
      const picked = await vscode.window.showOpenDialog({
        canSelectMany: false,
        filters: { 'IOMMU topology': ['iommu'] },
        openLabel: 'Open Topology',
      });
      if (picked?.[0]) await vscode.window.showTextDocument(picked[0]);
    }),
    vscode.commands.registerCommand(CommandIds.newTopology, async () => {
      const doc = await vscode.workspace.openTextDocument({ language: LANGUAGE_ID, content: NEW_TOPOLOGY_TEMPLATE });
      await vscode.window.showTextDocument(doc);
    }),
    vscode.commands.registerCommand(CommandIds.refreshTopology, () => tree.refresh()),
    vscode.commands.registerCommand(CommandIds.revealTopologyItem, async (uri: vscode.Uri) => {
      if (uri instanceof vscode.Uri) await vscode.window.showTextDocument(uri, { preview: true });
    }),
    vscode.commands.registerCommand(CommandIds.restartLanguageServer, async () => {
      await client.restart();
      output.appendLine('Language server restarted.');
    }),
    vscode.commands.registerCommand(CommandIds.showOutput, () => output.show(true)),
  );

  return { topologyTree: tree, languageClient: client, languageServerReady };
}

export function deactivate(): void {
  // Disposables registered in activate() stop the language client.
}
