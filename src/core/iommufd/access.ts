import { fail } from '../driver/errors';
import type { PhysicalMemory } from '../hw/memory';
import type { AccessUser, Area } from './io-pagetable';
import type { Ioas } from './ioas';
import type { IommufdObject, ObjectTable } from './objects';
import { PAGE_SIZE, ULONG_MAX } from './uapi';

/**
 * An in-kernel user of an IOAS without a hardware domain (`struct iommufd_access`): an emulated or mdev
 * device, or a VMM's emulated DMA, that pins pages by IOVA or reads and writes IOAS memory with the CPU.
 * When userspace unmaps what it pinned, the access is told (its driver's `unmap` callback) and must unpin.
 */

export interface AccessPin {
  readonly id: number;
  readonly iova: bigint;
  readonly length: bigint;
  /** The physical pages, one per 4 KiB of the range. */
  readonly pages: readonly number[];
}

interface PinRecord extends AccessPin {
  readonly pieces: readonly { area: Area; first: number; count: number }[];
}

/** `struct iommufd_access_ops.unmap`: [iova, iova + length) is going away; unpin what lies there. */
export type AccessUnmapHandler = (access: IommufdAccess, iova: bigint, length: bigint) => void;

export interface AccessEnv {
  readonly objects: ObjectTable;
  readonly memory: PhysicalMemory;
}

const PAGE = Number(PAGE_SIZE);

export class IommufdAccess implements IommufdObject, AccessUser {
  readonly type = 'ACCESS';
  id = 0;
  /** The table's reference and the creating driver's: only `destroy()` removes it. */
  users = 2;
  ioas: Ioas | undefined;
  readonly iovaAlignment: bigint;
  private readonly pinned = new Map<number, PinRecord>();
  private nextPinId = 1;

  constructor(
    private readonly env: AccessEnv,
    /** ops->needs_pin_pages: such an access pins whole pages, so the IOAS gets page alignment. */
    readonly needsPinPages: boolean,
    private readonly onUnmap: AccessUnmapHandler = (a, iova, length) => a.unpinOverlapping(iova, length),
  ) {
    this.iovaAlignment = needsPinPages ? PAGE_SIZE : 1n;
  }

  get pins(): readonly AccessPin[] {
    return [...this.pinned.values()];
  }

  /** iommufd_access_attach. */
  attach(ioasId: number): void {
    if (this.ioas) fail('EINVAL', `access ${this.id} is already attached to IOAS ${this.ioas.id}`);
    const ioas = this.env.objects.get(ioasId, 'IOAS') as Ioas;
    ioas.iopt.addAccess(this);
    ioas.users++;
    this.ioas = ioas;
  }

  /** iommufd_access_replace: the driver is told to unmap everything of the old IOAS first. */
  replace(ioasId: number): void {
    if (!this.ioas) fail('EINVAL', `access ${this.id} is not attached`);
    const next = this.env.objects.get(ioasId, 'IOAS') as Ioas;
    if (next === this.ioas) return;
    next.iopt.addAccess(this);
    next.users++;
    this.leave();
    this.ioas = next;
  }

  /** iommufd_access_detach. */
  detach(): void {
    if (!this.ioas) return;
    this.leave();
    this.ioas = undefined;
  }

  private leave(): void {
    const ioas = this.ioas!;
    this.onUnmap(this, 0n, ULONG_MAX);
    ioas.iopt.removeAccess(this);
    ioas.users--;
  }

  /**
   * iommufd_access_pin_pages: pins the pages behind [iova, iova + length), which must be mapped without a
   * gap, page aligned, and allow the access (EPERM). Returns the pin and its physical pages.
   */
  pinPages(iova: bigint, length: bigint, o: { write?: boolean } = {}): AccessPin {
    if (!this.needsPinPages) fail('EINVAL', 'this access was created without needs_pin_pages');
    if (length === 0n) fail('EINVAL', 'pin of zero bytes');
    const last = iova + length - 1n;
    if (last > ULONG_MAX) fail('EOVERFLOW', 'the range wraps');
    const ioas = this.ioas ?? fail('ENOENT', `access ${this.id} is not attached to an IOAS`);
    const pieces: { area: Area; first: number; count: number }[] = [];
    for (const { area, from, to } of ioas.iopt.contiguousAreas(iova, last)) {
      const startByte = area.startByte + (from - area.start);
      if (startByte % PAGE_SIZE) fail('EINVAL', `IOVA 0x${from.toString(16)} is not at a page boundary of the user memory`);
      if (o.write ? !area.write : !area.read) fail('EPERM', `the area at 0x${area.start.toString(16)} is not mapped ${o.write ? 'writeable' : 'readable'}`);
      const first = Number(startByte / PAGE_SIZE);
      pieces.push({ area, first, count: Number((area.startByte + (to - area.start)) / PAGE_SIZE) - first + 1 });
    }
    const pages: number[] = [];
    const done: typeof pieces = [];
    try {
      for (const p of pieces) {
        pages.push(...p.area.pages.pinRange(p.first, p.count));
        p.area.accessPins++;
        done.push(p);
      }
    } catch (e) {
      for (const p of done) this.release(p);
      throw e;
    }
    const pin: PinRecord = { id: this.nextPinId++, iova, length, pages, pieces };
    this.pinned.set(pin.id, pin);
    return { id: pin.id, iova, length, pages };
  }

  /** iommufd_access_unpin_pages for a pin made earlier: ENOENT when it is gone (unpinned on an unmap). */
  unpinPages(pinId: number): void {
    const pin = this.pinned.get(pinId) ?? fail('ENOENT', `access ${this.id} has no pin ${pinId}`);
    this.pinned.delete(pinId);
    for (const p of pin.pieces) this.release(p);
  }

  private release(p: { area: Area; first: number; count: number }): void {
    p.area.pages.unpinRange(p.first, p.count);
    p.area.accessPins--;
  }

  /** What a well-behaved driver does on unmap: drop every pin that meets the range. */
  unpinOverlapping(iova: bigint, length: bigint): void {
    const last = iova + length - 1n;
    for (const pin of [...this.pinned.values()]) if (pin.iova <= last && iova <= pin.iova + pin.length - 1n) this.unpinPages(pin.id);
  }

  unmapNotify(iova: bigint, length: bigint): void {
    this.onUnmap(this, iova, length);
  }

  /**
   * iommufd_access_rw: the CPU reads into `data` (or writes `data`) at [iova, iova + data.length), through
   * the pinned pages where there are some and the process's memory otherwise.
   */
  rw(iova: bigint, data: Uint8Array, o: { write?: boolean } = {}): void {
    if (data.length === 0) fail('EINVAL', 'access of zero bytes');
    const last = iova + BigInt(data.length) - 1n;
    if (last > ULONG_MAX) fail('EOVERFLOW', 'the range wraps');
    const ioas = this.ioas ?? fail('ENOENT', `access ${this.id} is not attached to an IOAS`);
    let at = 0;
    for (const { area, from, to } of ioas.iopt.contiguousAreas(iova, last)) {
      if (o.write ? !area.write : !area.read) fail('EPERM', `the area at 0x${area.start.toString(16)} is not mapped ${o.write ? 'writeable' : 'readable'}`);
      for (let byte = area.startByte + (from - area.start), end = area.startByte + (to - area.start); byte <= end; ) {
        const index = Number(byte / PAGE_SIZE);
        const offset = Number(byte % PAGE_SIZE);
        const n = Math.min(PAGE - offset, Number(end - byte) + 1);
        const pa = area.pages.physicalForAccess(index, o.write ?? false) + offset;
        if (o.write) writeBytes(this.env.memory, pa, data.subarray(at, at + n));
        else data.set(readBytes(this.env.memory, pa, n), at);
        at += n;
        byte += BigInt(n);
      }
    }
  }

  /** iommufd_access_destroy: unpins everything and leaves the IOAS. */
  destroy(): void {
    for (const id of [...this.pinned.keys()]) this.unpinPages(id);
    if (this.ioas) {
      this.ioas.iopt.removeAccess(this);
      this.ioas.users--;
      this.ioas = undefined;
    }
    this.env.objects.remove(this);
  }
}

/** Bytes of simulated memory (which is addressed in 32-bit words). */
export function readBytes(mem: PhysicalMemory, addr: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const a = addr + i;
    out[i] = (mem.read32(a - (a % 4)) >>> ((a % 4) * 8)) & 0xff;
  }
  return out;
}

export function writeBytes(mem: PhysicalMemory, addr: number, bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i++) {
    const a = addr + i;
    const word = a - (a % 4);
    const shift = (a % 4) * 8;
    const old = mem.read32(word);
    mem.write32(word, ((old & ~(0xff << shift)) | (bytes[i]! << shift)) >>> 0, 'user-data');
  }
}
