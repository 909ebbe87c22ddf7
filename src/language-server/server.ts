import {
  type Connection,
  type Diagnostic as LspDiagnostic,
  DiagnosticSeverity,
  DocumentDiagnosticReportKind,
  type InitializeResult,
  TextDocuments,
  TextDocumentSyncKind,
  MarkupKind,
} from 'vscode-languageserver';
import { TextDocument } from 'vscode-languageserver-textdocument';
import type { Diagnostic, Range, Severity } from '../dsl/diagnostic';
import { hoverAt } from '../dsl/hover';
import { lex, type LexResult } from '../dsl/lexer';
import { DIAGNOSTIC_SOURCE, LANGUAGE_SERVER_NAME } from '../protocol/ids';

const SEVERITY: Record<Severity, DiagnosticSeverity> = {
  error: DiagnosticSeverity.Error,
  warning: DiagnosticSeverity.Warning,
  information: DiagnosticSeverity.Information,
  hint: DiagnosticSeverity.Hint,
};

/**
 * The language server proper, independent of the transport: main.ts picks node IPC or stdio.
 * All knowledge of the language lives in src/dsl; this file only maps its results onto LSP.
 */
export function startServer(connection: Connection, version: string): void {
  const documents = new TextDocuments(TextDocument);
  // Lexing is cheap, but hovers and diagnostics ask for the same version of a document repeatedly.
  const cache = new Map<string, { version: number; result: LexResult }>();
  const analyse = (doc: TextDocument): LexResult => {
    const hit = cache.get(doc.uri);
    if (hit && hit.version === doc.version) return hit.result;
    const result = lex(doc.getText());
    cache.set(doc.uri, { version: doc.version, result });
    return result;
  };

  connection.onInitialize(
    (): InitializeResult => ({
      capabilities: {
        textDocumentSync: TextDocumentSyncKind.Incremental,
        hoverProvider: true,
        diagnosticProvider: { interFileDependencies: false, workspaceDiagnostics: false },
      },
      serverInfo: { name: LANGUAGE_SERVER_NAME, version },
    }),
  );

  connection.languages.diagnostics.on((params) => {
    const doc = documents.get(params.textDocument.uri);
    return {
      kind: DocumentDiagnosticReportKind.Full,
      items: doc ? analyse(doc).diagnostics.map(toLsp) : [],
    };
  });

  connection.onHover((params) => {
    const doc = documents.get(params.textDocument.uri);
    if (!doc) return null;
    const info = hoverAt(analyse(doc), doc.offsetAt(params.position));
    if (!info) return null;
    return { contents: { kind: MarkupKind.Markdown, value: info.contents }, range: toLspRange(info.range) };
  });

  documents.onDidClose((e) => cache.delete(e.document.uri));
  documents.listen(connection);
  connection.listen();
}

function toLsp(d: Diagnostic): LspDiagnostic {
  return {
    range: toLspRange(d.range),
    severity: SEVERITY[d.severity],
    code: d.code,
    source: DIAGNOSTIC_SOURCE,
    message: d.message,
  };
}

function toLspRange(r: Range) {
  return { start: r.start, end: r.end };
}
