import type { EventStream } from '../hw/events';
import { U64 } from '../u64';
import { Reg, REG64, type RegName } from './registers';
import type { VtdRegisterWrite, VtdTraps } from './traps';

/** A register's value: 32-bit registers use `lo` only. */
export interface RegValue {
  hi: number;
  lo: number;
}

/** What a block does when software writes one of its registers (the value as written, and where). */
export type RegisterWriter = (value: U64, offset: number) => void;

const ZERO: Readonly<RegValue> = Object.freeze({ hi: 0, lo: 0 });
const NAME_OF = new Map<number, RegName>((Object.keys(Reg) as RegName[]).map((n) => [Reg[n], n]));

/**
 * The register file of a unit: the storage every block keeps its registers in, and the dispatch of software
 * writes to the block that owns a register. A register no block claims is plain storage (written as is, read
 * back as written), which is what an unimplemented or reserved register of the model does. Blocks change
 * their registers with `set` (hardware-side: no write semantics); only `write` is a software write.
 */
export class RegisterFile {
  private readonly values = new Map<number, RegValue>();
  private readonly writers = new Map<number, RegisterWriter>();
  private readonly readers = new Map<number, () => U64>();
  private readonly ranges: { base: number; end: number; write: RegisterWriter; name: (offset: number) => string; width: 32 | 64 }[] = [];
  private readonly extraNames = new Map<number, { name: string; width: 32 | 64 }>();
  /** The VMM's hooks (traps.ts), or null: then a write costs one null check more. */
  traps: VtdTraps | null = null;

  constructor(
    private readonly unitName: string,
    private readonly events: EventStream,
  ) {}

  // ---- storage (hardware side) ----

  get(offset: number): Readonly<RegValue> {
    return this.values.get(offset) ?? ZERO;
  }

  set(offset: number, hi: number, lo: number): void {
    this.values.set(offset, { hi: hi >>> 0, lo: lo >>> 0 });
  }

  bit(offset: number, bit: number): boolean {
    return ((this.get(offset).lo >>> bit) & 1) === 1;
  }

  setBit(offset: number, bit: number, on: boolean): void {
    const r = this.get(offset);
    this.set(offset, r.hi, on ? r.lo | (1 << bit) : r.lo & ~(1 << bit));
  }

  // ---- what the blocks claim ----

  /** `offset` is written through `write` (a block's register with side effects). */
  claim(offset: number, write: RegisterWriter): void {
    this.writers.set(offset, write);
  }

  /** Software writes to these registers are ignored. */
  readOnly(...offsets: number[]): void {
    for (const o of offsets) this.writers.set(o, () => {});
  }

  /** Reads of `offset` are computed (e.g. FSTS.PPF from the fault records) instead of read from storage. */
  computed(offset: number, read: () => U64): void {
    this.readers.set(offset, read);
  }

  /** A block of registers at `base` (e.g. the fault recording registers at CAP.FRO), with their names. */
  claimRange(base: number, size: number, write: RegisterWriter, name: (offset: number) => string, width: 32 | 64): void {
    this.ranges.push({ base, end: base + size, write, name, width });
  }

  /** Names a register outside the architectural list (e.g. IVA and IOTLB at ECAP.IRO). */
  nameRegister(offset: number, name: string, width: 32 | 64): void {
    this.extraNames.set(offset, { name, width });
  }

  // ---- software access ----

  read(offset: number): U64 {
    const f = this.readers.get(offset);
    if (f !== undefined) return f();
    const r = this.get(offset);
    return new U64(r.hi, r.lo);
  }

  /**
   * A software write: the `register-write` event, then the owning block's semantics (or plain storage). A
   * trapper sees it first and may take it over ('handled': nothing else happens), and sees it again once it
   * took effect.
   */
  write(offset: number, v: U64): void {
    if (this.events.active) this.events.emit({ type: 'register-write', unit: this.unitName, register: this.nameOf(offset), offset, value: v.toString() });
    const traps = this.traps;
    if (traps === null) return this.dispatch(offset, v);
    const w: VtdRegisterWrite = { offset, name: this.nameOf(offset), width: this.widthOf(offset), value: v };
    if (traps.registerWrite?.(w) === 'handled') return;
    this.dispatch(offset, v);
    traps.registerWritten?.(w);
  }

  private dispatch(offset: number, v: U64): void {
    for (const r of this.ranges) if (offset >= r.base && offset < r.end) return r.write(v, offset);
    const w = this.writers.get(offset);
    if (w !== undefined) return w(v, offset);
    this.set(offset, v.hi, v.lo);
  }

  nameOf(offset: number): string {
    const arch = NAME_OF.get(offset);
    if (arch !== undefined) return arch;
    for (const r of this.ranges) if (offset >= r.base && offset < r.end) return r.name(offset);
    return this.extraNames.get(offset)?.name ?? `0x${offset.toString(16)}`;
  }

  widthOf(offset: number): 32 | 64 {
    const arch = NAME_OF.get(offset);
    if (arch !== undefined) return REG64.has(arch) ? 64 : 32;
    for (const r of this.ranges) if (offset >= r.base && offset < r.end) return r.width;
    return this.extraNames.get(offset)?.width ?? 64;
  }

  // ---- whole-file access (imports, snapshots) ----

  entries(): [number, RegValue][] {
    return [...this.values.entries()].map(([k, v]) => [k, { ...v }]);
  }

  replace(entries: Iterable<readonly [number, RegValue]>): void {
    this.values.clear();
    for (const [k, v] of entries) this.values.set(k, { ...v });
  }
}
