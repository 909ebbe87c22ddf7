import * as vscode from 'vscode';
import { LogLanguageIds } from './manifest';
import { DecodedLog, documentLines } from './log-decoding';

/** Documents that show other text than a file's: the Output view (our own listings among them). */
const NOT_LOGS: ReadonlySet<string> = new Set(['output', 'debug', 'vscode-scm']);

/** Whether log hovers and "Explain Faults in This Log" apply to `doc` by default. */
export function isLogDocument(doc: vscode.TextDocument): boolean {
  return (LogLanguageIds as readonly string[]).includes(doc.languageId) && !NOT_LOGS.has(doc.uri.scheme);
}

/** The document selector for log hovers. */
export const LOG_SELECTOR: vscode.DocumentSelector = LogLanguageIds.map((language) => ({ language }));

/**
 * One decoded log per open document and version: every hover and the explain command share it, so a
 * document is decoded once per version however often it is hovered. An edit or closing the document
 * stops and drops its decode.
 */
export class LogDocuments implements vscode.Disposable {
  private readonly logs = new Map<string, { version: number; log: DecodedLog }>();
  private readonly subscriptions: vscode.Disposable[];

  constructor() {
    this.subscriptions = [
      vscode.workspace.onDidChangeTextDocument((e) => {
        if (e.contentChanges.length > 0) this.drop(e.document.uri);
      }),
      vscode.workspace.onDidCloseTextDocument((doc) => this.drop(doc.uri)),
    ];
  }

  decoded(doc: vscode.TextDocument): DecodedLog {
    const key = doc.uri.toString();
    const known = this.logs.get(key);
    if (known && known.version === doc.version) return known.log;
    known?.log.dispose();
    const log = new DecodedLog(documentLines(doc));
    this.logs.set(key, { version: doc.version, log });
    return log;
  }

  private drop(uri: vscode.Uri): void {
    const key = uri.toString();
    this.logs.get(key)?.log.dispose();
    this.logs.delete(key);
  }

  dispose(): void {
    for (const s of this.subscriptions) s.dispose();
    for (const { log } of this.logs.values()) log.dispose();
    this.logs.clear();
  }
}
