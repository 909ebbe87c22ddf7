/** A position in a source text: 0-based line and UTF-16 column, as LSP counts them. */
export interface Position {
  readonly line: number;
  readonly character: number;
}

/** A half-open source range [start, end) with the matching UTF-16 offsets. */
export interface Range {
  readonly start: Position;
  readonly end: Position;
  readonly startOffset: number;
  readonly endOffset: number;
}

/**
 * The Range the lexer makes for every token: four numbers in one object, positions built on request.
 * A topology file has hundreds of thousands of tokens at most; allocating two Position objects for each
 * was most of the lexer's time.
 */
export class SourceRange implements Range {
  constructor(
    readonly startOffset: number,
    readonly endOffset: number,
    readonly startLine: number,
    readonly startCharacter: number,
    readonly endLine: number,
    readonly endCharacter: number,
  ) {}
  get start(): Position {
    return { line: this.startLine, character: this.startCharacter };
  }
  get end(): Position {
    return { line: this.endLine, character: this.endCharacter };
  }
  toJSON(): Range {
    return { start: this.start, end: this.end, startOffset: this.startOffset, endOffset: this.endOffset };
  }
}

export type Severity = 'error' | 'warning' | 'information' | 'hint';

/**
 * A problem found in a topology file. Plain data so that the language server, the CLI and tests
 * all present the same finding; `code` is stable and documented so users can search for it.
 */
export interface Diagnostic {
  readonly range: Range;
  readonly severity: Severity;
  readonly code: string;
  readonly message: string;
}

/** `file:line:col: severity: message [code]`, 1-based like gcc, so editors and terminals can jump to it. */
export function formatDiagnostic(file: string, d: Diagnostic): string {
  return `${file}:${d.range.start.line + 1}:${d.range.start.character + 1}: ${d.severity}: ${d.message} [${d.code}]`;
}
