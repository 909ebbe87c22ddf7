import type { U64 } from '../core/u64';

/**
 * The most a whole debugfs dump may hold, for every reader of one (CLI and extension). The import keeps every
 * row it loads (measured: a million page-table rows, 113 MB, take 620 MB of memory), so this is also about
 * memory: 256 MiB is 2.4 million 4 KiB mappings, 9 GiB mapped page by page, in about 1.4 GB (real dumps use
 * 2 MiB and 1 GiB pages and are far smaller).
 */
export const MAX_DUMP_BYTES = 256 * 1024 * 1024;

// What the debugfs parser (debugfs.ts) makes of a dump: its inputs, the locations and diagnostics it reports,
// and each file's sections as the kernel printed them.

export interface DebugfsInput {
  /** Path as the user gave it (relative to the debugfs root when it came from a directory); '' for stdin. */
  readonly path: string;
  readonly text: string;
}

/** Where something was read: the input's path (or the file a banner in it named) and its line; line 0 for the whole input. */
export interface Location {
  readonly file: string;
  readonly line: number;
}

export interface DebugfsDiagnostic extends Location {
  readonly severity: 'error' | 'warning' | 'info';
  readonly message: string;
}

/**
 * A diagnostic as one line, `FILE:LINE: severity: message`: a problem of a whole input (line 0) has no
 * line, and one of no input in particular (a dump read as a whole) is named `input`, what the caller
 * calls the dump (its directory, `<stdin>`).
 */
export function diagnosticText(d: DebugfsDiagnostic, input: string): string {
  return `${d.file || input}${d.line > 0 ? `:${d.line}` : ''}: ${d.severity}: ${d.message}`;
}

export interface RegsetDump {
  readonly unit: string;
  readonly base: number;
  readonly at: Location;
  readonly registers: { readonly name: string; readonly offset: number; readonly value: U64; readonly at: Location }[];
}

export interface TranslationRow {
  readonly bus: number;
  readonly devfn: number;
  readonly root: readonly [hi: U64, lo: U64];
  readonly context: readonly [hi: U64, lo: U64];
  /** -1 in legacy mode. */
  readonly pasid: number;
  /** val[0], val[1], val[2] (printed val[2]:val[1]:val[0]); null in legacy mode. */
  readonly pasidEntry: readonly [U64, U64, U64] | null;
  readonly at: Location;
}

export interface TranslationDump {
  readonly unit: string;
  readonly rootTable: number;
  readonly at: Location;
  readonly rows: TranslationRow[];
}

export interface QueueDump {
  readonly unit: string;
  readonly at: Location;
  base: number;
  head: number;
  tail: number;
  /** 256-bit descriptors (scalable-mode capable unit) or 128-bit. */
  wide: boolean | undefined;
  readonly rows: { readonly index: number; readonly qwords: readonly U64[]; readonly status: number; readonly at: Location }[];
}

export interface IrteRow {
  readonly index: number;
  readonly sid: number;
  readonly low: U64;
  readonly high: U64;
  readonly at: Location;
}

export interface InterruptDump {
  readonly unit: string;
  readonly kind: 'remapped' | 'posted';
  readonly at: Location;
  /** IR table address; undefined when the kernel printed "Interrupt Remapping is not enabled". */
  table: number | undefined;
  readonly entries: IrteRow[];
}

export interface DomainRow {
  /** Input page frame (IOVA >> 12). */
  readonly pfn: number;
  /** Entry values by level (index 5 = PML5E ... 1 = PTE); undefined for levels the row does not show or shows as zero. */
  readonly path: readonly (U64 | undefined)[];
  readonly at: Location;
}

export interface DomainDump {
  readonly segment: number;
  readonly sid: number;
  /** The PASID the header names; undefined when it names none (legacy mode). */
  readonly pasid: number | undefined;
  readonly pgd: number;
  readonly at: Location;
  readonly rows: DomainRow[];
}

export interface DebugfsDump {
  readonly regsets: RegsetDump[];
  readonly translations: TranslationDump[];
  readonly queues: QueueDump[];
  readonly interrupts: InterruptDump[];
  readonly domains: DomainDump[];
  /** Units with a `dmar_perf_latency` section (statistics only: nothing of it is loaded). */
  readonly latencies: { readonly unit: string; readonly at: Location }[];
  /** Units the kernel said have DMA remapping disabled. */
  readonly disabled: { readonly unit: string; readonly at: Location }[];
  readonly diagnostics: DebugfsDiagnostic[];
  lines: number;
  unrecognisedLines: number;
}
