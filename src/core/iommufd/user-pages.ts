import { fail } from '../driver/errors';
import type { Process } from '../driver/process';

const PAGE = 4096;
/** User addresses end at the canonical boundary of a 4-level x86-64 address space. */
const USER_VA_END = 2n ** 47n;

/**
 * User memory behind IOAS areas (the kernel's `struct iopt_pages`): a page-aligned span of a process's
 * address space. Pages are pinned on demand (pin_user_pages: fault the page in, then hold it), so DMA
 * reaches the physical page that backed the user address at pin time, even if the process later unmaps
 * it. Areas made by IOAS_COPY share the same object.
 */
export class UserPages {
  private readonly pins = new Map<number, { pa: number; refs: number }>();

  constructor(
    readonly mm: Process,
    /** Page-aligned user VA of page 0. */
    readonly base: bigint,
    readonly npages: number,
    /** Whether the pages may be mapped writeable (mapped with IOMMU_IOAS_MAP_WRITEABLE). */
    readonly writable: boolean,
  ) {}

  /** pin_user_pages for page `index`: EFAULT when no mapping allows the access. */
  pin(index: number): number {
    const held = this.pins.get(index);
    if (held) {
      held.refs++;
      return held.pa;
    }
    const va = this.base + BigInt(index * PAGE);
    if (va >= USER_VA_END || this.mm.exited || !this.mm.handleFault(Number(va), this.writable)) {
      fail('EFAULT', `cannot pin user page 0x${va.toString(16)} of ${this.mm.name}${this.writable ? ' for writing' : ''}: not mapped`);
    }
    const pa = this.mm.pageTable.lookup(Number(va))!.output;
    this.pins.set(index, { pa, refs: 1 });
    return pa;
  }

  unpin(index: number): void {
    const held = this.pins.get(index);
    if (held && --held.refs === 0) this.pins.delete(index);
  }

  /** Pins pages [first, first + count); on failure nothing stays pinned. */
  pinRange(first: number, count: number): number[] {
    const out: number[] = [];
    try {
      for (let i = 0; i < count; i++) out.push(this.pin(first + i));
    } catch (e) {
      for (let i = 0; i < out.length; i++) this.unpin(first + i);
      throw e;
    }
    return out;
  }

  unpinRange(first: number, count: number): void {
    for (let i = 0; i < count; i++) this.unpin(first + i);
  }

  /** The physical page held for page `index`, if it is pinned. */
  pinnedPhysical(index: number): number | undefined {
    return this.pins.get(index)?.pa;
  }

  /**
   * The physical page behind page `index` for a CPU access by the kernel on the user's behalf: the pinned
   * page if there is one, else whatever the process maps there now (faulting it in). EFAULT if nothing can.
   */
  physicalForAccess(index: number, write: boolean): number {
    const held = this.pins.get(index)?.pa;
    if (held !== undefined) return held;
    return userPagePhysical(this.mm, this.base + BigInt(index * PAGE), write);
  }

  /** Pin count of the page holding user address `va` (0 when outside or not pinned). */
  pinCountAt(va: bigint): number {
    if (va < this.base) return 0;
    return this.pins.get(Number((va - this.base) / BigInt(PAGE)))?.refs ?? 0;
  }

  get pinnedPages(): number {
    return this.pins.size;
  }
}

/** copy_from_user / copy_to_user's view of a user page: fault it in, or EFAULT. */
export function userPagePhysical(mm: Process, va: bigint, write: boolean): number {
  const page = va - (va % BigInt(PAGE));
  if (page >= USER_VA_END || mm.exited || !mm.handleFault(Number(page), write)) fail('EFAULT', `user address 0x${va.toString(16)} of ${mm.name} is not mapped${write ? ' writable' : ''}`);
  return mm.pageTable.lookup(Number(page))!.output;
}
