import { fail } from '../driver/errors';
import { readBytes, writeBytes } from './access';
import { IoctlError } from './ioctl-error';
import type { Iommufd, VtdS1Invalidate } from './iommufd';
import type { VtdS1Data } from './hwpt-alloc';
import { SIZEOF } from './uapi';
import { userPagePhysical } from './user-pages';

/**
 * The binary ioctl ABI of /dev/iommu (iommufd_fops_ioctl): the argument is the user's struct as bytes,
 * starting with its `size`. The envelope rules come first (an unknown number is ENOTTY, a NULL argument
 * EFAULT, a size below the struct's first version EINVAL, non-zero bytes beyond the kernel's struct E2BIG),
 * then the command runs on the decoded fields and its output fields are written back into `arg`, up to
 * the smaller of the two sizes. Pointer fields point into the memory of the context's process.
 */

/** `_IOC_NR` of the iommufd ioctls (type ';'). */
export const IOMMUFD_CMD = {
  DESTROY: 0x80,
  IOAS_ALLOC: 0x81,
  IOAS_ALLOW_IOVAS: 0x82,
  IOAS_COPY: 0x83,
  IOAS_IOVA_RANGES: 0x84,
  IOAS_MAP: 0x85,
  IOAS_UNMAP: 0x86,
  OPTION: 0x87,
  VFIO_IOAS: 0x88,
  HWPT_ALLOC: 0x89,
  GET_HW_INFO: 0x8a,
  HWPT_SET_DIRTY_TRACKING: 0x8b,
  HWPT_GET_DIRTY_BITMAP: 0x8c,
  HWPT_INVALIDATE: 0x8d,
  FAULT_QUEUE_ALLOC: 0x8e,
  IOAS_MAP_FILE: 0x8f,
  VIOMMU_ALLOC: 0x90,
  VDEVICE_ALLOC: 0x91,
  IOAS_CHANGE_PROCESS: 0x92,
  VEVENTQ_ALLOC: 0x93,
  HW_QUEUE_ALLOC: 0x94,
} as const;
export const IOMMUFD_CMD_BASE = IOMMUFD_CMD.DESTROY;

/** A decoded struct: little-endian fields at byte offsets, over a zero-extended copy of the user's bytes. */
class Fields {
  readonly view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  u16(at: number): number {
    return this.view.getUint16(at, true);
  }
  u32(at: number): number {
    return this.view.getUint32(at, true);
  }
  u64(at: number): bigint {
    return this.view.getBigUint64(at, true);
  }
  /** Non-zero if any of `n` bytes at `at` is (for `__u8 __reserved[n]`). */
  u8s(at: number, n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v |= this.view.getUint8(at + i);
    return v;
  }
  set32(at: number, v: number): void {
    this.view.setUint32(at, v >>> 0, true);
  }
  set8(at: number, v: number): void {
    this.view.setUint8(at, v);
  }
  set64(at: number, v: bigint): void {
    this.view.setBigUint64(at, v, true);
  }
}

interface Op {
  /** sizeof the kernel's struct, and offsetofend of the last member of its first version. */
  readonly size: number;
  readonly min: number;
  /** Runs the command; null for commands the model does not implement. */
  readonly run: ((fd: Iommufd, f: Fields) => void) | null;
}

/** copy_from_user of `n` bytes of the process's memory. */
function readUser(fd: Iommufd, va: bigint, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; ) {
    const at = va + BigInt(i);
    const off = Number(at % 4096n);
    const k = Math.min(4096 - off, n - i);
    out.set(readBytes(fd.kernel.machine.memory, userPagePhysical(fd.mm, at, false) + off, k), i);
    i += k;
  }
  return out;
}

/** copy_to_user. */
function writeUser(fd: Iommufd, va: bigint, bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; ) {
    const at = va + BigInt(i);
    const off = Number(at % 4096n);
    const k = Math.min(4096 - off, bytes.length - i);
    writeBytes(fd.kernel.machine.memory, userPagePhysical(fd.mm, at, true) + off, bytes.subarray(i, i + k));
    i += k;
  }
}

function decodeS1(b: Uint8Array): VtdS1Data {
  const f = new Fields(b);
  return { flags: Number(f.u64(0) & 0xffff_ffffn), pgtblAddr: f.u64(8), addrWidth: f.u32(16), reserved: f.u32(20) };
}

function decodeInvalidate(b: Uint8Array): VtdS1Invalidate {
  const f = new Fields(b);
  return { addr: f.u64(0), npages: f.u64(8), flags: f.u32(16), reserved: f.u32(20) };
}

const OPS: Record<number, Op> = {
  [IOMMUFD_CMD.DESTROY]: { size: 8, min: 8, run: (fd, f) => fd.destroy(f.u32(4)) },
  [IOMMUFD_CMD.IOAS_ALLOC]: { size: 12, min: 12, run: (fd, f) => f.set32(8, fd.ioasAlloc({ flags: f.u32(4) }).ioasId) },
  [IOMMUFD_CMD.IOAS_ALLOW_IOVAS]: {
    size: 24,
    min: 24,
    run: (fd, f) => {
      const n = f.u32(8);
      const raw = n ? readUser(fd, f.u64(16), n * 16) : new Uint8Array(0);
      const r = new Fields(raw);
      const iovas = Array.from({ length: n }, (_, i) => ({ start: r.u64(i * 16), last: r.u64(i * 16 + 8) }));
      fd.ioasAllowIovas({ ioasId: f.u32(4), iovas, reserved: f.u32(12) });
    },
  },
  [IOMMUFD_CMD.IOAS_COPY]: {
    size: 40,
    min: 40,
    run: (fd, f) => f.set64(24, fd.ioasCopy({ flags: f.u32(4), dstIoasId: f.u32(8), srcIoasId: f.u32(12), length: f.u64(16), dstIova: f.u64(24), srcIova: f.u64(32) }).dstIova),
  },
  [IOMMUFD_CMD.IOAS_IOVA_RANGES]: {
    size: 32,
    min: 32,
    run: (fd, f) => {
      const cap = f.u32(8);
      const put = (out: { numIovas: number; ranges: readonly { start: bigint; last: bigint }[]; outIovaAlignment: bigint }) => {
        const b = new Fields(new Uint8Array(out.ranges.length * 16));
        out.ranges.forEach((r, i) => (b.set64(i * 16, r.start), b.set64(i * 16 + 8, r.last)));
        if (out.ranges.length) writeUser(fd, f.u64(16), b.bytes);
        f.set32(8, out.numIovas);
        f.set64(24, out.outIovaAlignment);
      };
      try {
        put(fd.ioasIovaRanges({ ioasId: f.u32(4), numIovas: cap, reserved: f.u32(12) }));
      } catch (e) {
        if (e instanceof IoctlError) put(e.out as Parameters<typeof put>[0]);
        throw e;
      }
    },
  },
  [IOMMUFD_CMD.IOAS_MAP]: {
    size: 40,
    min: 40,
    run: (fd, f) => f.set64(32, fd.ioasMap({ flags: f.u32(4), ioasId: f.u32(8), reserved: f.u32(12), userVa: f.u64(16), length: f.u64(24), iova: f.u64(32) }).iova),
  },
  [IOMMUFD_CMD.IOAS_UNMAP]: { size: 24, min: 24, run: (fd, f) => f.set64(16, fd.ioasUnmap({ ioasId: f.u32(4), iova: f.u64(8), length: f.u64(16) }).length) },
  [IOMMUFD_CMD.OPTION]: {
    size: 24,
    min: 24,
    run: (fd, f) => f.set64(16, fd.option({ optionId: f.u32(4), op: f.u16(8), reserved: f.u16(10), objectId: f.u32(12), val64: f.u64(16) }).val64),
  },
  [IOMMUFD_CMD.VFIO_IOAS]: { size: 12, min: 12, run: (fd, f) => f.set32(4, fd.vfioIoas({ op: f.u16(8), ioasId: f.u32(4) }).ioasId) },
  [IOMMUFD_CMD.HWPT_ALLOC]: {
    size: 48,
    min: 24,
    run: (fd, f) => {
      const len = f.u32(28);
      const uptr = f.u64(32);
      const data = len === 0 ? undefined : uptr === 0n ? null : decodeS1(readUser(fd, uptr, Math.min(len, SIZEOF.HWPT_VTD_S1)));
      const out = fd.hwptAlloc({ flags: f.u32(4), devId: f.u32(8), ptId: f.u32(12), reserved: f.u32(20), dataType: f.u32(24), dataLen: len, data, faultId: f.u32(40) });
      f.set32(16, out.hwptId);
    },
  },
  [IOMMUFD_CMD.GET_HW_INFO]: {
    size: 40,
    min: 32,
    run: (fd, f) => {
      const dataLen = f.u32(12);
      const out = fd.getHwInfo({ flags: f.u32(4), devId: f.u32(8), dataLen, inDataType: f.u32(24), reserved: f.u8s(29, 3) });
      if (dataLen) writeUser(fd, f.u64(16), out.data);
      f.set32(12, out.dataLen);
      f.set32(24, out.outDataType);
      f.set8(28, out.outMaxPasidLog2);
      f.set64(32, BigInt(out.outCapabilities));
    },
  },
  [IOMMUFD_CMD.HWPT_SET_DIRTY_TRACKING]: { size: 16, min: 16, run: (fd, f) => fd.hwptSetDirtyTracking({ flags: f.u32(4), hwptId: f.u32(8), reserved: f.u32(12) }) },
  [IOMMUFD_CMD.HWPT_GET_DIRTY_BITMAP]: {
    size: 48,
    min: 48,
    run: (fd, f) => fd.hwptGetDirtyBitmap({ hwptId: f.u32(4), flags: f.u32(8), reserved: f.u32(12), iova: f.u64(16), length: f.u64(24), pageSize: f.u64(32), data: f.u64(40) }),
  },
  [IOMMUFD_CMD.HWPT_INVALIDATE]: {
    size: 32,
    min: 32,
    run: (fd, f) => {
      const uptr = f.u64(8);
      const entryLen = f.u32(20);
      const entryNum = f.u32(24);
      // Entries are read as the driver reaches them: the array ends where user memory does.
      const entries: VtdS1Invalidate[] = [];
      if (uptr !== 0n && entryLen === SIZEOF.HWPT_VTD_S1_INVALIDATE) {
        for (let i = 0; i < entryNum; i++) {
          try {
            entries.push(decodeInvalidate(readUser(fd, uptr + BigInt(i * entryLen), entryLen)));
          } catch {
            break;
          }
        }
      } else if (uptr !== 0n) {
        for (let i = 0; i < entryNum; i++) entries.push({ addr: 0, npages: 0 });
      }
      try {
        f.set32(24, fd.hwptInvalidate({ hwptId: f.u32(4), entries: uptr === 0n ? null : entries, dataType: f.u32(16), entryLen, entryNum, reserved: f.u32(28) }).entryNum);
      } catch (e) {
        if (e instanceof IoctlError) f.set32(24, (e.out as { entryNum: number }).entryNum);
        throw e;
      }
    },
  },
  [IOMMUFD_CMD.FAULT_QUEUE_ALLOC]: { size: 16, min: 16, run: null },
  [IOMMUFD_CMD.IOAS_MAP_FILE]: { size: 48, min: 48, run: null },
  [IOMMUFD_CMD.VIOMMU_ALLOC]: {
    size: 40,
    min: 24,
    run: (fd, f) => f.set32(20, fd.viommuAlloc({ flags: f.u32(4), type: f.u32(8), devId: f.u32(12), hwptId: f.u32(16) }).viommuId),
  },
  [IOMMUFD_CMD.VDEVICE_ALLOC]: { size: 24, min: 24, run: (fd, f) => f.set32(12, fd.vdeviceAlloc({ viommuId: f.u32(4), devId: f.u32(8), virtId: f.u64(16) }).vdeviceId) },
  [IOMMUFD_CMD.IOAS_CHANGE_PROCESS]: { size: 8, min: 8, run: null },
  [IOMMUFD_CMD.VEVENTQ_ALLOC]: { size: 24, min: 24, run: null },
  [IOMMUFD_CMD.HW_QUEUE_ALLOC]: { size: 40, min: 40, run: null },
};

/** The struct sizes the kernel knows, for callers that build arguments. */
export function ioctlStructSize(nr: number): { size: number; min: number } | undefined {
  const op = OPS[nr];
  return op ? { size: op.size, min: op.min } : undefined;
}

/**
 * ioctl(iommufd, nr, arg): 0 on success (outputs written into `arg`), or the kernel's error. Commands the
 * model has no implementation for pass the envelope checks and then throw a RangeError (not a kernel errno).
 */
export function iommufdIoctl(fd: Iommufd, nr: number, arg: Uint8Array | null): 0 {
  const op = OPS[nr];
  if (!op) fail('ENOTTY', `ioctl number 0x${nr.toString(16)} is not an iommufd command`);
  if (!arg || arg.length < 4) fail('EFAULT', 'the argument pointer is NULL or too short for its size field');
  const size = new DataView(arg.buffer, arg.byteOffset, arg.byteLength).getUint32(0, true);
  if (size < op.min) fail('EINVAL', `size ${size} is below the smallest version of the struct (${op.min} bytes)`);
  if (arg.length < size) fail('EFAULT', `size ${size} runs past the ${arg.length}-byte argument`);
  for (let i = op.size; i < size; i++) if (arg[i] !== 0) fail('E2BIG', `the struct is ${op.size} bytes; byte ${i} of the user's ${size} is not zero`);
  if (!op.run) throw new RangeError(`ioctl 0x${nr.toString(16)} passes the envelope checks but is not modelled`);
  const fields = new Fields(new Uint8Array(op.size));
  fields.bytes.set(arg.subarray(0, Math.min(size, op.size)));
  const respond = () => arg.set(fields.bytes.subarray(0, Math.min(size, op.size)));
  try {
    op.run(fd, fields);
  } catch (e) {
    if (e instanceof IoctlError) respond();
    throw e;
  }
  respond();
  return 0;
}
