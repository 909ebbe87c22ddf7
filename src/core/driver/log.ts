import { linuxFaultReason } from '../vtd/fault-reasons';

/**
 * The kernel log the driver model writes, in the exact formats Linux prints (drivers/iommu/intel/dmar.c,
 * prq.c). Timestamps come from a simulated clock that advances a fixed step per line, so the output is
 * deterministic; `dmesg()` renders it the way `dmesg` does.
 */

export type LogLevel = 'err' | 'warn' | 'info' | 'debug';

export interface LogLine {
  readonly seconds: number;
  readonly level: LogLevel;
  readonly text: string;
}

/**
 * The state behind one `*_ratelimited` call site (`___ratelimit`, DEFAULT_RATELIMIT_INTERVAL 5 s and
 * DEFAULT_RATELIMIT_BURST 10): at most 10 messages per 5 s window; the first call after a window that
 * dropped messages prints "<func>: N callbacks suppressed" first.
 */
export class Ratelimit {
  private begin = -1;
  private printed = 0;
  private missed = 0;

  constructor(
    readonly func: string,
    private readonly interval = 5,
    private readonly burst = 10,
  ) {}

  allow(log: KernelLog): boolean {
    const now = log.now;
    if (this.begin < 0) this.begin = now;
    if (now - this.begin > this.interval) {
      if (this.missed) {
        log.warn(`${this.func}: ${this.missed} callbacks suppressed`);
        this.missed = 0;
      }
      this.begin = now;
      this.printed = 0;
    }
    if (this.printed < this.burst) {
      this.printed++;
      return true;
    }
    this.missed++;
    return false;
  }
}

/** A kernel version as "major.minor"; it decides which message formats are printed. */
export type KernelVersion = `${number}.${number}`;

export class KernelLog {
  readonly lines: LogLine[] = [];
  private clock = 0;
  private readonly listeners = new Set<(l: LogLine) => void>();

  /** Advances the simulated clock (seconds since boot). */
  tick(seconds: number): void {
    this.clock += seconds;
  }

  /** The simulated clock, in seconds since boot. */
  get now(): number {
    return this.clock;
  }

  private add(level: LogLevel, text: string): void {
    this.clock += 0.000013;
    const line = { seconds: Math.round(this.clock * 1e6) / 1e6, level, text };
    this.lines.push(line);
    for (const l of this.listeners) l(line);
  }

  err(text: string): void {
    this.add('err', text);
  }
  warn(text: string): void {
    this.add('warn', text);
  }
  info(text: string): void {
    this.add('info', text);
  }

  subscribe(listener: (l: LogLine) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** `[    1.234567] text` lines, as `dmesg` prints them. */
  dmesg(): string {
    return this.lines.map((l) => `[${l.seconds.toFixed(6).padStart(12)}] ${l.text}`).join('\n') + (this.lines.length ? '\n' : '');
  }

  get length(): number {
    return this.lines.length;
  }

  truncate(n: number): void {
    this.lines.length = n;
  }
}

/** Which `dmar_fault_do_one` format a kernel version prints (reference §5.1; boundaries approximate). */
export type FaultLineFormat = 'two-line' | 'decimal' | 'pasid-decimal' | 'hex-0x-bus' | 'current';

export function faultLineFormat(version: KernelVersion): FaultLineFormat {
  const [major, minor] = version.split('.').map(Number) as [number, number];
  const v = major * 100 + minor;
  if (v <= 401) return 'two-line';
  if (v <= 504) return 'decimal';
  if (v <= 513) return 'pasid-decimal';
  if (v < 600) return 'hex-0x-bus';
  return 'current';
}

export interface DmarFault {
  readonly sid: number;
  /** undefined: the request carried no PASID. */
  readonly pasid?: number;
  /** Fault address (FI): the faulting page for DMA faults, as hex without the prefix. */
  readonly address: string;
  readonly reason: number;
  readonly write: boolean;
  /** For interrupt-remapping faults: the interrupt index (FI >> 48). */
  readonly index?: number;
}

const bdf = (sid: number, prefix = '') =>
  `${prefix}${(sid >>> 8).toString(16).padStart(2, '0')}:${prefix}${((sid >>> 3) & 0x1f).toString(16).padStart(2, '0')}.${sid & 7}`;

/**
 * The line(s) `dmar_fault_do_one` prints for one fault record, without the `DMAR: ` prefix of the newer
 * formats applied twice: the result is what follows the timestamp.
 */
export function dmarFaultLines(f: DmarFault, version: KernelVersion): string[] {
  const { text, type } = linuxFaultReason(f.reason);
  const format = faultLineFormat(version);
  const dec = f.reason.toString(10).padStart(2, '0');
  const hex = '0x' + f.reason.toString(16).padStart(2, '0');
  if (type === 'interrupt-remap') {
    const idx = (f.index ?? 0).toString(16);
    switch (format) {
      case 'two-line':
        return [`INTR-REMAP: Request device [[${bdf(f.sid)}] fault index ${idx}`, `INTR-REMAP:[fault reason ${dec}] ${text}`];
      case 'decimal':
      case 'pasid-decimal':
        return [`DMAR: [INTR-REMAP] Request device [${bdf(f.sid)}] fault index ${idx} [fault reason ${dec}] ${text}`];
      case 'hex-0x-bus':
        return [`DMAR: [INTR-REMAP] Request device [${bdf(f.sid, '0x')}] fault index 0x${idx} [fault reason ${hex}] ${text}`];
      case 'current':
        return [`DMAR: [INTR-REMAP] Request device [${bdf(f.sid)}] fault index 0x${idx} [fault reason ${hex}] ${text}`];
    }
  }
  const kind = f.write ? 'DMA Write' : 'DMA Read';
  switch (format) {
    case 'two-line':
      return [`DMAR:[${kind}] Request device [${bdf(f.sid)}] fault addr ${f.address} `, `DMAR:[fault reason ${dec}] ${text}`];
    case 'decimal':
      return [`DMAR: [${kind}] Request device [${bdf(f.sid)}] fault addr ${f.address} [fault reason ${dec}] ${text}`];
    case 'pasid-decimal':
      return [`DMAR: [${kind}] Request device [${bdf(f.sid)}] PASID ${(f.pasid ?? 0xffff_ffff).toString(16)} fault addr ${f.address} [fault reason ${dec}] ${text}`];
    case 'hex-0x-bus': {
      const tag = f.pasid === undefined ? `${kind} NO_PASID` : `${kind} PASID 0x${f.pasid.toString(16)}`;
      return [`DMAR: [${tag}] Request device [${bdf(f.sid, '0x')}] fault addr 0x${f.address} [fault reason ${hex}] ${text}`];
    }
    case 'current': {
      const tag = f.pasid === undefined ? `${kind} NO_PASID` : `${kind} PASID 0x${f.pasid.toString(16)}`;
      return [`DMAR: [${tag}] Request device [${bdf(f.sid)}] fault addr 0x${f.address} [fault reason ${hex}] ${text}`];
    }
  }
}
