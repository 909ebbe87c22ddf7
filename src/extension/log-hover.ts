import * as vscode from 'vscode';
import { hoverMarkdown } from './log-explanation';
import { isLogDocument, type LogDocuments } from './log-documents';

/**
 * Hovers on kernel logs: every line of a recognised event explains it in plain words (what the device
 * tried, why the IOMMU refused, what to check next), with the format and the kernel versions that print it.
 * The document is decoded up to the hovered line only, in slices, and cancelled with the hover.
 */
export class LogHoverProvider implements vscode.HoverProvider {
  constructor(private readonly logs: LogDocuments) {}

  async provideHover(doc: vscode.TextDocument, position: vscode.Position, token: vscode.CancellationToken): Promise<vscode.Hover | undefined> {
    if (!isLogDocument(doc)) return undefined;
    const log = this.logs.decoded(doc);
    const line = position.line + 1;
    if (!(await log.through(line, token))) return undefined;
    const events = log.eventsAt(line);
    if (events.length === 0 || token.isCancellationRequested) return undefined;
    const first = Math.min(...events.map((e) => e.line)) - 1;
    const last = Math.min(doc.lineCount - 1, Math.max(...events.map((e) => e.endLine)) - 1);
    return new vscode.Hover(hoverMarkdown(events), new vscode.Range(first, 0, last, doc.lineAt(last).text.length));
  }
}
