import { fail } from '../driver/errors';
import { readBytes, writeBytes } from './access';
import { IoctlError } from './ioctl-error';
import type { Iommufd, VtdS1Invalidate } from './iommufd';
import type { VtdS1Data } from './hwpt-alloc';
import { SIZEOF } from './uapi';
import { type CType, type StructLayout, UAPI_STRUCTS as S } from './uapi-layout';
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

/**
 * A decoded struct: little-endian fields by their uAPI names, over a zero-extended copy of the user's
 * bytes (copy_struct_from_user), so every offset comes from the struct's layout.
 */
class Fields {
  readonly view: DataView;
  constructor(
    readonly layout: StructLayout,
    readonly bytes: Uint8Array = new Uint8Array(layout.size),
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private at(name: string, type: CType): number {
    const f = this.layout.field(name);
    if (f.type !== type) throw new Error(`${this.layout.name}.${name} is a ${f.type}, not a ${type}`);
    return f.offset;
  }
  u16(name: string): number {
    return this.view.getUint16(this.at(name, 'u16'), true);
  }
  u32(name: string): number {
    return this.view.getUint32(this.at(name, 'u32'), true);
  }
  u64(name: string): bigint {
    return this.view.getBigUint64(this.at(name, 'u64'), true);
  }
  /** Non-zero if any byte of a `__u8 name[n]` array is. */
  u8s(name: string): number {
    const f = this.layout.field(name);
    let v = 0;
    for (let i = 0; i < f.size; i++) v |= this.view.getUint8(f.offset + i);
    return v;
  }
  set8(name: string, v: number): void {
    this.view.setUint8(this.at(name, 'u8'), v);
  }
  set32(name: string, v: number): void {
    this.view.setUint32(this.at(name, 'u32'), v >>> 0, true);
  }
  set64(name: string, v: bigint): void {
    this.view.setBigUint64(this.at(name, 'u64'), v, true);
  }
}

interface Op {
  /** The command's struct; the kernel's `op->size` is its sizeof. */
  readonly struct: StructLayout;
  /** The IOCTL_OP entry's last mandatory member: `op->min_size` is offsetofend of it. */
  readonly last: string;
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

/** A vendor struct the user's `len` bytes give, zero-extended (iommu_copy_struct_from_user). */
function decode(layout: StructLayout, b: Uint8Array): Fields {
  const f = new Fields(layout);
  f.bytes.set(b.subarray(0, layout.size));
  return f;
}

function decodeS1(b: Uint8Array): VtdS1Data {
  const f = decode(S.iommu_hwpt_vtd_s1, b);
  return { flags: Number(f.u64('flags') & 0xffff_ffffn), pgtblAddr: f.u64('pgtbl_addr'), addrWidth: f.u32('addr_width'), reserved: f.u32('__reserved') };
}

function decodeInvalidate(b: Uint8Array): VtdS1Invalidate {
  const f = decode(S.iommu_hwpt_vtd_s1_invalidate, b);
  return { addr: f.u64('addr'), npages: f.u64('npages'), flags: f.u32('flags'), reserved: f.u32('__reserved') };
}

// The kernel's iommufd_ioctl_ops (drivers/iommu/iommufd/main.c): each command's struct and the last member
// of its first version.
const OPS: Record<number, Op> = {
  [IOMMUFD_CMD.DESTROY]: { struct: S.iommu_destroy, last: 'id', run: (fd, f) => fd.destroy(f.u32('id')) },
  [IOMMUFD_CMD.IOAS_ALLOC]: { struct: S.iommu_ioas_alloc, last: 'out_ioas_id', run: (fd, f) => f.set32('out_ioas_id', fd.ioasAlloc({ flags: f.u32('flags') }).ioasId) },
  [IOMMUFD_CMD.IOAS_ALLOW_IOVAS]: {
    struct: S.iommu_ioas_allow_iovas,
    last: 'allowed_iovas',
    run: (fd, f) => {
      const n = f.u32('num_iovas');
      const range = S.iommu_iova_range;
      const raw = n ? readUser(fd, f.u64('allowed_iovas'), n * range.size) : new Uint8Array(0);
      const iovas = Array.from({ length: n }, (_, i) => {
        const r = decode(range, raw.subarray(i * range.size));
        return { start: r.u64('start'), last: r.u64('last') };
      });
      fd.ioasAllowIovas({ ioasId: f.u32('ioas_id'), iovas, reserved: f.u32('__reserved') });
    },
  },
  [IOMMUFD_CMD.IOAS_COPY]: {
    struct: S.iommu_ioas_copy,
    last: 'src_iova',
    run: (fd, f) =>
      f.set64('dst_iova', fd.ioasCopy({ flags: f.u32('flags'), dstIoasId: f.u32('dst_ioas_id'), srcIoasId: f.u32('src_ioas_id'), length: f.u64('length'), dstIova: f.u64('dst_iova'), srcIova: f.u64('src_iova') }).dstIova),
  },
  [IOMMUFD_CMD.IOAS_IOVA_RANGES]: {
    struct: S.iommu_ioas_iova_ranges,
    last: 'out_iova_alignment',
    run: (fd, f) => {
      const cap = f.u32('num_iovas');
      const put = (out: { numIovas: number; ranges: readonly { start: bigint; last: bigint }[]; outIovaAlignment: bigint }) => {
        const range = S.iommu_iova_range;
        const b = new Uint8Array(out.ranges.length * range.size);
        out.ranges.forEach((r, i) => {
          const e = new Fields(range, b.subarray(i * range.size, (i + 1) * range.size));
          e.set64('start', r.start);
          e.set64('last', r.last);
        });
        if (out.ranges.length) writeUser(fd, f.u64('allowed_iovas'), b);
        f.set32('num_iovas', out.numIovas);
        f.set64('out_iova_alignment', out.outIovaAlignment);
      };
      try {
        put(fd.ioasIovaRanges({ ioasId: f.u32('ioas_id'), numIovas: cap, reserved: f.u32('__reserved') }));
      } catch (e) {
        if (e instanceof IoctlError) put(e.out as Parameters<typeof put>[0]);
        throw e;
      }
    },
  },
  [IOMMUFD_CMD.IOAS_MAP]: {
    struct: S.iommu_ioas_map,
    last: 'iova',
    run: (fd, f) =>
      f.set64('iova', fd.ioasMap({ flags: f.u32('flags'), ioasId: f.u32('ioas_id'), reserved: f.u32('__reserved'), userVa: f.u64('user_va'), length: f.u64('length'), iova: f.u64('iova') }).iova),
  },
  [IOMMUFD_CMD.IOAS_UNMAP]: {
    struct: S.iommu_ioas_unmap,
    last: 'length',
    run: (fd, f) => f.set64('length', fd.ioasUnmap({ ioasId: f.u32('ioas_id'), iova: f.u64('iova'), length: f.u64('length') }).length),
  },
  [IOMMUFD_CMD.OPTION]: {
    struct: S.iommu_option,
    last: 'val64',
    run: (fd, f) => f.set64('val64', fd.option({ optionId: f.u32('option_id'), op: f.u16('op'), reserved: f.u16('__reserved'), objectId: f.u32('object_id'), val64: f.u64('val64') }).val64),
  },
  [IOMMUFD_CMD.VFIO_IOAS]: { struct: S.iommu_vfio_ioas, last: '__reserved', run: (fd, f) => f.set32('ioas_id', fd.vfioIoas({ op: f.u16('op'), ioasId: f.u32('ioas_id') }).ioasId) },
  [IOMMUFD_CMD.HWPT_ALLOC]: {
    struct: S.iommu_hwpt_alloc,
    last: '__reserved',
    run: (fd, f) => {
      const len = f.u32('data_len');
      const uptr = f.u64('data_uptr');
      const data = len === 0 ? undefined : uptr === 0n ? null : decodeS1(readUser(fd, uptr, Math.min(len, SIZEOF.HWPT_VTD_S1)));
      const out = fd.hwptAlloc({ flags: f.u32('flags'), devId: f.u32('dev_id'), ptId: f.u32('pt_id'), reserved: f.u32('__reserved'), dataType: f.u32('data_type'), dataLen: len, data, faultId: f.u32('fault_id') });
      f.set32('out_hwpt_id', out.hwptId);
    },
  },
  [IOMMUFD_CMD.GET_HW_INFO]: {
    struct: S.iommu_hw_info,
    last: '__reserved',
    run: (fd, f) => {
      const dataLen = f.u32('data_len');
      const out = fd.getHwInfo({ flags: f.u32('flags'), devId: f.u32('dev_id'), dataLen, inDataType: f.u32('in_data_type'), reserved: f.u8s('__reserved') });
      if (dataLen) writeUser(fd, f.u64('data_uptr'), out.data);
      f.set32('data_len', out.dataLen);
      f.set32('out_data_type', out.outDataType);
      f.set8('out_max_pasid_log2', out.outMaxPasidLog2);
      f.set64('out_capabilities', BigInt(out.outCapabilities));
    },
  },
  [IOMMUFD_CMD.HWPT_SET_DIRTY_TRACKING]: {
    struct: S.iommu_hwpt_set_dirty_tracking,
    last: '__reserved',
    run: (fd, f) => fd.hwptSetDirtyTracking({ flags: f.u32('flags'), hwptId: f.u32('hwpt_id'), reserved: f.u32('__reserved') }),
  },
  [IOMMUFD_CMD.HWPT_GET_DIRTY_BITMAP]: {
    struct: S.iommu_hwpt_get_dirty_bitmap,
    last: 'data',
    run: (fd, f) =>
      fd.hwptGetDirtyBitmap({ hwptId: f.u32('hwpt_id'), flags: f.u32('flags'), reserved: f.u32('__reserved'), iova: f.u64('iova'), length: f.u64('length'), pageSize: f.u64('page_size'), data: f.u64('data') }),
  },
  [IOMMUFD_CMD.HWPT_INVALIDATE]: {
    struct: S.iommu_hwpt_invalidate,
    last: '__reserved',
    run: (fd, f) => {
      const uptr = f.u64('data_uptr');
      const entryLen = f.u32('entry_len');
      const entryNum = f.u32('entry_num');
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
        const out = fd.hwptInvalidate({ hwptId: f.u32('hwpt_id'), entries: uptr === 0n ? null : entries, dataType: f.u32('data_type'), entryLen, entryNum, reserved: f.u32('__reserved') });
        f.set32('entry_num', out.entryNum);
      } catch (e) {
        if (e instanceof IoctlError) f.set32('entry_num', (e.out as { entryNum: number }).entryNum);
        throw e;
      }
    },
  },
  [IOMMUFD_CMD.FAULT_QUEUE_ALLOC]: { struct: S.iommu_fault_alloc, last: 'out_fault_fd', run: null },
  [IOMMUFD_CMD.IOAS_MAP_FILE]: { struct: S.iommu_ioas_map_file, last: 'iova', run: null },
  [IOMMUFD_CMD.VIOMMU_ALLOC]: {
    struct: S.iommu_viommu_alloc,
    last: 'out_viommu_id',
    run: (fd, f) => f.set32('out_viommu_id', fd.viommuAlloc({ flags: f.u32('flags'), type: f.u32('type'), devId: f.u32('dev_id'), hwptId: f.u32('hwpt_id') }).viommuId),
  },
  [IOMMUFD_CMD.VDEVICE_ALLOC]: {
    struct: S.iommu_vdevice_alloc,
    last: 'virt_id',
    run: (fd, f) => f.set32('out_vdevice_id', fd.vdeviceAlloc({ viommuId: f.u32('viommu_id'), devId: f.u32('dev_id'), virtId: f.u64('virt_id') }).vdeviceId),
  },
  [IOMMUFD_CMD.IOAS_CHANGE_PROCESS]: { struct: S.iommu_ioas_change_process, last: '__reserved', run: null },
  [IOMMUFD_CMD.VEVENTQ_ALLOC]: { struct: S.iommu_veventq_alloc, last: 'out_veventq_fd', run: null },
  [IOMMUFD_CMD.HW_QUEUE_ALLOC]: { struct: S.iommu_hw_queue_alloc, last: 'length', run: null },
};

/** The struct sizes the kernel knows, for callers that build arguments. */
export function ioctlStructSize(nr: number): { struct: string; size: number; min: number } | undefined {
  const op = OPS[nr];
  return op ? { struct: op.struct.name, size: op.struct.size, min: op.struct.offsetofend(op.last) } : undefined;
}

/**
 * ioctl(iommufd, nr, arg): 0 on success (outputs written into `arg`), or the kernel's error. Commands the
 * model has no implementation for pass the envelope checks and then throw a RangeError (not a kernel errno).
 */
export function iommufdIoctl(fd: Iommufd, nr: number, arg: Uint8Array | null): 0 {
  const op = OPS[nr];
  if (!op) fail('ENOTTY', `ioctl number 0x${nr.toString(16)} is not an iommufd command`);
  // get_user(ucmd.user_size): the first u32 must be readable.
  if (!arg || arg.length < 4) fail('EFAULT', 'the argument pointer is NULL or too short for its size field');
  const size = new DataView(arg.buffer, arg.byteOffset, arg.byteLength).getUint32(0, true);
  const ksize = op.struct.size;
  const min = op.struct.offsetofend(op.last);
  if (size < min) fail('EINVAL', `size ${size} is below the smallest version of struct ${op.struct.name} (${min} bytes, up to ${op.last})`);
  // copy_struct_from_user: a larger struct's tail must be zero (check_zeroed_user stops at the first
  // non-zero byte, or faults where the user's memory ends), then min(size, ksize) bytes are copied.
  for (let i = ksize; i < size; i++) {
    if (i >= arg.length) fail('EFAULT', `size ${size} runs past the ${arg.length}-byte argument`);
    if (arg[i] !== 0) fail('E2BIG', `struct ${op.struct.name} is ${ksize} bytes; byte ${i} of the user's ${size} is not zero`);
  }
  if (arg.length < Math.min(size, ksize)) fail('EFAULT', `size ${size} runs past the ${arg.length}-byte argument`);
  if (!op.run) throw new RangeError(`ioctl 0x${nr.toString(16)} passes the envelope checks but is not modelled`);
  const fields = new Fields(op.struct);
  fields.bytes.set(arg.subarray(0, Math.min(size, ksize)));
  // iommufd_ucmd_respond: the struct goes back up to the smaller of the two sizes.
  const respond = () => arg.set(fields.bytes.subarray(0, Math.min(size, ksize)));
  try {
    op.run(fd, fields);
  } catch (e) {
    if (e instanceof IoctlError) respond();
    throw e;
  }
  respond();
  return 0;
}
