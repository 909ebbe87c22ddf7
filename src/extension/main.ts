import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { LANGUAGE_ID } from '../protocol/ids';
import { DebugfsImports, type WalkArgs } from './debugfs-commands';
import { createLanguageClient } from './language-client';
import { LogDocuments, LOG_SELECTOR } from './log-documents';
import { LogExplainer } from './log-explain-command';
import { LogHoverProvider } from './log-hover';
import { CommandIds, OutputChannelNames, ViewIds } from './manifest';
import { TopologyTreeProvider } from './topology-tree';

/** What activate() returns: other extensions and the integration tests reach the extension through it. */
export interface IommuLabApi {
  readonly topologyTree: TopologyTreeProvider;
  readonly languageClient: LanguageClient;
  /**
   * Resolves once the language server has answered `initialize`. The server starts with the first topology
   * document or the Topology view, not when a kernel log activates the extension.
   */
  readonly languageServerReady: Promise<void>;
  /** Decoded kernel logs, one per open document version (shared by hovers and "Explain Faults"). */
  readonly logs: LogDocuments;
  /** The last debugfs import of this window. */
  readonly debugfs: DebugfsImports;
}

const NEW_TOPOLOGY_TEMPLATE = `# IOMMU topology
# One VT-d unit in scalable mode, one device, one paging domain.

iommu dmar0 scalable {
  cap  0x09ed008c40780466   # a scalable-mode unit: 4-level tables, 2M/1G pages, first level, nesting
  ecap 0x0003ef9ea6f050df   # PASID (20 bits), PRS, device TLB, pass-through, queued invalidation
}

device 00:02.0 on dmar0 { ats pri pasid 20 }

domain dma0 paging second-level levels 4 on dmar0
map dma0 iova 0x100000 hpa 0x80000000 size 2M read write
attach 00:02.0 dma0
`;

export function activate(context: vscode.ExtensionContext): IommuLabApi {
  const output = vscode.window.createOutputChannel(OutputChannelNames.main);
  const tree = new TopologyTreeProvider();
  const client = createLanguageClient(context, output);
  const logs = new LogDocuments();
  const explainer = new LogExplainer(logs);
  const debugfs = new DebugfsImports();
  let startServer: () => void = () => undefined;
  const languageServerReady = new Promise<void>((resolve, reject) => {
    startServer = () => {
      startServer = () => undefined;
      client.start().then(resolve, (err: unknown) => {
        output.appendLine(`The language server failed to start: ${err instanceof Error ? err.message : String(err)}`);
        reject(err);
      });
    };
  });
  // A rejection is reported in the output channel; callers that await the promise see it too.
  languageServerReady.catch(() => undefined);
  const treeView = vscode.window.createTreeView(ViewIds.topology, { treeDataProvider: tree, showCollapseAll: true });
  const startForDocument = (doc: vscode.TextDocument) => {
    if (doc.languageId === LANGUAGE_ID) startServer();
  };
  vscode.workspace.textDocuments.forEach(startForDocument);
  if (treeView.visible) startServer();

  context.subscriptions.push(
    output,
    tree,
    { dispose: () => void (client.isRunning() ? client.stop() : undefined) },
    treeView,
    treeView.onDidChangeVisibility((e) => e.visible && startServer()),
    vscode.workspace.onDidOpenTextDocument(startForDocument),
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
      if (client.isRunning()) await client.restart();
      else startServer();
      output.appendLine('Language server restarted.');
    }),
    vscode.commands.registerCommand(CommandIds.showOutput, () => output.show(true)),
    logs,
    explainer,
    debugfs,
    vscode.languages.registerHoverProvider(LOG_SELECTOR, new LogHoverProvider(logs)),
    vscode.commands.registerCommand(CommandIds.explainLog, (uri?: unknown) => explainer.explain(uri)),
    vscode.commands.registerCommand(CommandIds.importDebugfs, (clicked?: unknown, selected?: unknown) => debugfs.importDump(clicked, selected)),
    vscode.commands.registerCommand(CommandIds.walkDebugfsAddress, (args?: unknown) => debugfs.walk(args as WalkArgs | undefined)),
  );

  return { topologyTree: tree, languageClient: client, languageServerReady, logs, debugfs };
}

export function deactivate(): void {
  // Disposables registered in activate() stop the language client.
}
