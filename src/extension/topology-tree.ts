import * as vscode from 'vscode';
import { plural } from '../core/plural';
import { LANGUAGE_ID } from '../protocol/ids';
import { CommandIds } from './manifest';

/** A node of the IOMMU tree. For now the roots are the open topology files; the model's objects come later. */
export interface TopologyNode {
  readonly kind: 'topology-file';
  readonly uri: vscode.Uri;
}

/**
 * The "Topology" view. It returns no roots when no topology file is open, which makes VS Code show the
 * view's welcome content instead.
 */
export class TopologyTreeProvider implements vscode.TreeDataProvider<TopologyNode>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<TopologyNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly subscriptions: vscode.Disposable[];

  constructor() {
    const refreshIfTopology = (doc: vscode.TextDocument) => {
      if (doc.languageId === LANGUAGE_ID) this.refresh();
    };
    this.subscriptions = [
      this.changed,
      vscode.workspace.onDidOpenTextDocument(refreshIfTopology),
      vscode.workspace.onDidCloseTextDocument(refreshIfTopology),
      vscode.languages.onDidChangeDiagnostics((e) => {
        if (e.uris.some((uri) => this.roots().some((n) => n.uri.toString() === uri.toString()))) this.refresh();
      }),
    ];
  }

  refresh(): void {
    this.changed.fire(undefined);
  }

  roots(): TopologyNode[] {
    return vscode.workspace.textDocuments
      .filter((d) => d.languageId === LANGUAGE_ID && !d.isClosed)
      .sort((a, b) => a.uri.toString().localeCompare(b.uri.toString()))
      .map((d) => ({ kind: 'topology-file', uri: d.uri }));
  }

  getChildren(element?: TopologyNode): TopologyNode[] {
    return element ? [] : this.roots();
  }

  getTreeItem(node: TopologyNode): vscode.TreeItem {
    const item = new vscode.TreeItem(labelOf(node.uri), vscode.TreeItemCollapsibleState.None);
    const problems = vscode.languages.getDiagnostics(node.uri);
    const errors = problems.filter((d) => d.severity === vscode.DiagnosticSeverity.Error).length;
    item.description = problems.length === 0 ? 'no problems' : plural(problems.length, 'problem');
    item.iconPath = new vscode.ThemeIcon(errors > 0 ? 'error' : 'circuit-board');
    item.tooltip = node.uri.scheme === 'file' ? node.uri.fsPath : node.uri.toString();
    item.resourceUri = node.uri;
    item.contextValue = node.kind;
    item.command = { command: CommandIds.revealTopologyItem, title: 'Open', arguments: [node.uri] };
    return item;
  }

  dispose(): void {
    for (const s of this.subscriptions) s.dispose();
  }
}

function labelOf(uri: vscode.Uri): string {
  const path = uri.path;
  return path.slice(path.lastIndexOf('/') + 1);
}
