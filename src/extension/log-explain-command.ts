import { readFile } from 'node:fs/promises';
import * as vscode from 'vscode';
import { agree, plural } from '../core/plural';
import type { LogEvent, LogSummary } from '../readers/log-event';
import { describeSummary, explainEvent } from '../readers/log-explain';
import { byteLines, DecodedLog } from './log-decoding';
import { diagnosticMessage, isProblem } from './log-explanation';
import type { LogDocuments } from './log-documents';
import { OutputChannelNames } from './manifest';

/**
 * "IOMMU: Explain Faults in This Log": decodes the active editor's log (or a file given as argument, from
 * the explorer or a test), lists the events in the Problems panel (faults as Warnings, the rest as
 * Information, `code` = the format id) and writes every event explained, with the summary, to the
 * "IOMMU Lab: Log" output channel.
 */

/** What the command did; returned to the caller (tests, other extensions). */
export interface ExplainOutcome {
  readonly ok: boolean;
  readonly uri?: string;
  readonly lines: number;
  readonly events: number;
  readonly problems: number;
  readonly diagnostics: number;
  readonly cancelled?: boolean;
  /** The message the user was shown. */
  readonly message: string;
}

/** VS Code does not share documents above this size with extensions; such files are read from disk. */
const EDITOR_SYNC_LIMIT = 50 * 1024 * 1024;
/** Above this the extension host would hold too much; the CLI streams any size. */
const MAX_FILE_BYTES = 512 * 1024 * 1024;
/** The Problems panel gets at most this many events per log; the output lists more. */
export const MAX_DIAGNOSTICS = 10_000;
/** The output explains at most this many events in full; the summary counts all of them. */
export const MAX_EXPLAINED = 20_000;

const nameOf = (uri: vscode.Uri) => uri.path.slice(uri.path.lastIndexOf('/') + 1) || uri.toString();

export class LogExplainer implements vscode.Disposable {
  readonly diagnostics = vscode.languages.createDiagnosticCollection('iommu-log');
  // The log language colours the listing's addresses, numbers and dates; hovers skip output documents.
  readonly output = vscode.window.createOutputChannel(OutputChannelNames.log, 'log');
  private readonly subscriptions: vscode.Disposable[];

  constructor(private readonly logs: LogDocuments) {
    this.subscriptions = [
      // Explained events do not follow edits: drop them rather than point at the wrong lines.
      vscode.workspace.onDidChangeTextDocument((e) => {
        if (e.contentChanges.length > 0 && this.diagnostics.has(e.document.uri)) this.diagnostics.delete(e.document.uri);
      }),
      vscode.workspace.onDidCloseTextDocument((doc) => {
        if (doc.isUntitled) this.diagnostics.delete(doc.uri);
      }),
    ];
  }

  dispose(): void {
    for (const s of this.subscriptions) s.dispose();
    this.diagnostics.dispose();
    this.output.dispose();
  }

  /** The command. `target`: a file (explorer context menu, tests); by default the active editor's document. */
  async explain(target?: unknown): Promise<ExplainOutcome> {
    try {
      const source = await this.sourceFor(target instanceof vscode.Uri ? target : undefined);
      if ('message' in source) return this.tell('info', { ok: false, lines: 0, events: 0, problems: 0, diagnostics: 0, message: source.message });
      return await this.run(source.uri, source.log, source.lineLength);
    } catch (e) {
      // Reading the file can fail (permissions, a vanished file); decoding itself never throws.
      const message = `Could not explain the log: ${e instanceof Error ? e.message : String(e)}`;
      return this.tell('error', { ok: false, lines: 0, events: 0, problems: 0, diagnostics: 0, message });
    }
  }

  /** The decoded log to explain, shared with the hovers when it is an open document. */
  private async sourceFor(arg: vscode.Uri | undefined): Promise<{ uri: vscode.Uri; log: DecodedLog; lineLength: (line: number) => number } | { message: string }> {
    let uri = arg;
    if (!uri) {
      const doc = vscode.window.activeTextEditor?.document;
      if (doc) return this.fromDocument(doc);
      // A file too large for VS Code to share with extensions is open in a tab without a document here.
      const input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
      if (input instanceof vscode.TabInputText) uri = input.uri;
    }
    if (!uri) return { message: 'Open a kernel log (dmesg, journalctl, a serial console capture) in the editor first.' };
    const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri!.toString());
    if (open) return this.fromDocument(open);
    const size = (await vscode.workspace.fs.stat(uri)).size;
    if (size > MAX_FILE_BYTES) {
      return { message: `${nameOf(uri)} is ${Math.round(size / 2 ** 20)} MiB, too large to decode in the editor. Run \`iommu-lab decode-log ${uri.fsPath}\`, which streams any size.` };
    }
    if (size <= EDITOR_SYNC_LIMIT) return this.fromDocument(await vscode.workspace.openTextDocument(uri));
    // Local files straight from disk: through workspace.fs the bytes would cross a process boundary in one piece.
    const bytes = uri.scheme === 'file' ? await readFile(uri.fsPath) : await vscode.workspace.fs.readFile(uri);
    const lines = byteLines(bytes);
    // The diagnostics' ranges end where their last line ends. The decoder completes an event at most a few
    // lines after its last line, so the lengths of the latest lines are enough; the text is not kept.
    const RECENT = 256;
    const recent = new Uint32Array(RECENT);
    const lengths = new Map<number, number>();
    let n = 0;
    const source = {
      next: () => {
        const l = lines.next();
        if (l !== undefined) recent[++n % RECENT] = l.length;
        return l;
      },
      get progress() {
        return lines.progress;
      },
      head: () => lines.head(),
    };
    const log = new DecodedLog(source, (events) => {
      for (const e of events) if (n - e.endLine < RECENT) lengths.set(e.endLine, recent[e.endLine % RECENT]!);
    });
    return { uri, log, lineLength: (line) => lengths.get(line + 1) ?? 0 };
  }

  private fromDocument(doc: vscode.TextDocument) {
    return { uri: doc.uri, log: this.logs.decoded(doc), lineLength: (line: number) => (line < doc.lineCount ? doc.lineAt(line).text.length : 0) };
  }

  private async run(uri: vscode.Uri, log: DecodedLog, lineLength: (line: number) => number): Promise<ExplainOutcome> {
    const name = nameOf(uri);
    const done = log.done
      ? true
      : await vscode.window.withProgress(
          { location: vscode.ProgressLocation.Notification, title: `Explaining IOMMU faults in ${name}`, cancellable: true },
          async (progress, token) => {
            let reported = 0;
            return log.through(Infinity, token, (fraction) => {
              const pct = Math.floor(fraction * 100);
              if (pct > reported) {
                progress.report({ increment: pct - reported, message: plural(log.lines, 'line') });
                reported = pct;
              }
            });
          },
        );
    const summary = log.summary();
    if (!done) {
      return this.tell('info', { ok: false, uri: uri.toString(), lines: log.lines, events: log.events.length, problems: 0, diagnostics: 0, cancelled: true, message: `Stopped explaining ${name} after ${plural(log.lines, 'line')}.` });
    }
    const events = [...log.events].sort((a, b) => a.line - b.line);
    const problems = events.filter(isProblem).length;
    this.writeListing(uri, events, summary, log.busyMs);
    if (events.length === 0) {
      this.diagnostics.delete(uri);
      const message =
        summary.unrecognisedIommuLines > 0
          ? `No IOMMU event recognised in ${name}: ${summary.unrecognisedIommuLines} of its ${plural(summary.lines, 'line')} ${agree(summary.unrecognisedIommuLines, 'mentions', 'mention')} an IOMMU in a format IOMMU Lab does not know (see the "${OutputChannelNames.log}" output).`
          : `${name} has no IOMMU lines (${plural(summary.lines, 'line')} read): nothing to explain.`;
      return this.tell('info', { ok: true, uri: uri.toString(), lines: summary.lines, events: 0, problems: 0, diagnostics: 0, message });
    }
    const diagnostics = events.slice(0, MAX_DIAGNOSTICS).map((e) => toDiagnostic(e, lineLength));
    this.diagnostics.set(uri, diagnostics);
    const capped = events.length > MAX_DIAGNOSTICS ? ` (the first ${MAX_DIAGNOSTICS.toLocaleString('en-US')} in the Problems panel)` : '';
    const message = `${name}: ${events.length} IOMMU events, ${problems} of them faults or errors${capped}. Each is explained in the Problems panel and the "${OutputChannelNames.log}" output.`;
    return this.tell('info', { ok: true, uri: uri.toString(), lines: summary.lines, events: events.length, problems, diagnostics: diagnostics.length, message }, 'Show Problems');
  }

  private writeListing(uri: vscode.Uri, events: readonly LogEvent[], summary: LogSummary, busyMs: number): void {
    const out = this.output;
    out.clear();
    out.appendLine(`Explain Faults in This Log: ${uri.scheme === 'file' ? uri.fsPath : uri.toString()}`);
    out.appendLine('');
    let chunk: string[] = [];
    const flush = () => {
      if (chunk.length > 0) out.append(chunk.join('\n') + '\n');
      chunk = [];
    };
    for (const e of events.slice(0, MAX_EXPLAINED)) {
      chunk.push(...explainEvent(e), '');
      if (chunk.length > 2000) flush();
    }
    flush();
    if (events.length > MAX_EXPLAINED) {
      out.appendLine(`... and ${events.length - MAX_EXPLAINED} more events, counted below but not explained here; \`iommu-lab decode-log\` lists them all.`);
      out.appendLine('');
    }
    for (const l of describeSummary(summary)) out.appendLine(l);
    out.appendLine(`(decoded in ${Math.round(busyMs)} ms)`);
    out.show(true);
  }

  private tell(level: 'info' | 'error', outcome: ExplainOutcome, action?: string): ExplainOutcome {
    const items = action ? [action] : [];
    const shown = level === 'error' ? vscode.window.showErrorMessage(outcome.message, ...items) : vscode.window.showInformationMessage(outcome.message, ...items);
    // Not awaited: the message stays up while the command returns its outcome.
    void shown.then((choice) => {
      if (choice === 'Show Problems') void vscode.commands.executeCommand('workbench.actions.view.problems');
    });
    return outcome;
  }
}

function toDiagnostic(e: LogEvent, lineLength: (line: number) => number): vscode.Diagnostic {
  const range = new vscode.Range(e.line - 1, 0, e.endLine - 1, lineLength(e.endLine - 1));
  const d = new vscode.Diagnostic(range, diagnosticMessage(e), isProblem(e) ? vscode.DiagnosticSeverity.Warning : vscode.DiagnosticSeverity.Information);
  d.source = 'IOMMU Lab';
  d.code = e.format;
  return d;
}

