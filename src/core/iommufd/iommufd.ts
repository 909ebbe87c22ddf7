import type { DeviceInfo } from '../driver/device';
import type { IopfHandler } from '../driver/domain';
import { fail } from '../driver/errors';
import type { IommuKernel } from '../driver/kernel';
import { devPrefix } from '../driver/log';
import { IOMMU_NO_PASID } from '../driver/pasid-alloc';
import type { Process } from '../driver/process';
import type { U64 } from '../u64';
import { type AccessUnmapHandler, IommufdAccess } from './access';
import { changePt, detach } from './attach';
import { IommufdDevice } from './device';
import { FaultFd, FaultQueue } from './fault';
import type { Hwpt, HwptNested, HwptPaging } from './hwpt';
import { addToIoas, allocHwptNested, allocHwptPaging, destroyHwpt, dirtyTrackingCapable, type UserData, type VtdS1Data } from './hwpt-alloc';
import type { IovaRange } from './intervals';
import { Ioas } from './ioas';
import { IovaBitmap } from './iova-bitmap';
import { IoctlError } from './ioctl-error';
import { type IommufdObject, ObjectTable } from './objects';
import {
  HW_CAP,
  HW_INFO_FLAG_INPUT_TYPE,
  HW_INFO_TYPE,
  HW_INFO_VTD_ERRATA_772415_SPR17,
  HWPT_ALLOC,
  HWPT_DATA,
  HWPT_DIRTY_TRACKING_ENABLE,
  HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  HWPT_INVALIDATE_DATA,
  IOAS_MAP,
  LAB_VIOMMU_TYPE_VTD,
  OPTION,
  OPTION_OP,
  PAGE_SIZE,
  SIZEOF,
  u64,
  U64_MAX,
  type U64In,
  ULONG_MAX,
  VIOMMU_TYPE,
  VTD_INV_FLAGS_LEAF,
} from './uapi';
import { UserPages } from './user-pages';
import { VfioDevice } from './vfio-device';
import { Vdevice, Viommu } from './viommu';

/**
 * One open /dev/iommu (`struct iommufd_ctx`): the object table and the iommufd ioctls, each a method named
 * after it that takes the ioctl's input fields and returns its output fields, or throws the KernelError the
 * kernel would return (IoctlError when the ioctl still writes outputs on failure). Devices come in through
 * `deviceBind` (what VFIO_DEVICE_BIND_IOMMUFD calls; see VfioDevice) and attach with `deviceAttach`,
 * `deviceReplace` and `deviceDetach` (the in-kernel iommufd_device_* calls behind
 * VFIO_DEVICE_ATTACH/DETACH_IOMMUFD_PT). Behaviour is that of 6.17 with the VT-d driver.
 */

export interface IommufdOptions {
  /** The process that opened /dev/iommu: IOAS_MAP maps its memory. A new process by default. */
  readonly mm?: Process;
  /**
   * vIOMMU support. 'none' is 6.17: the VT-d driver has no vIOMMU ops, so every VIOMMU_ALLOC fails with
   * EOPNOTSUPP. 'lab-vtd' emulates a kernel whose VT-d driver accepts a vIOMMU of type
   * LAB_VIOMMU_TYPE_VTD (not a kernel value): vdevices map a guest RID to the physical device, and nested
   * HWPTs on the vIOMMU attach only to devices that have a vdevice on it.
   */
  readonly viommu?: 'none' | 'lab-vtd';
  /** Whether the caller has CAP_SYS_RESOURCE (setting IOMMU_OPTION_RLIMIT_MODE needs it). Default true. */
  readonly capSysResource?: boolean;
  /** The iommufd module parameter: bind devices even without interrupt remapping. */
  readonly allowUnsafeInterrupts?: boolean;
}

export interface IoasMapCmd {
  readonly ioasId: number;
  readonly flags: number;
  readonly userVa: U64In;
  readonly length: U64In;
  /** Used with IOAS_MAP.FIXED_IOVA. */
  readonly iova?: U64In;
  readonly reserved?: number;
}

export interface IoasCopyCmd {
  readonly flags: number;
  readonly dstIoasId: number;
  readonly srcIoasId: number;
  readonly length: U64In;
  readonly dstIova?: U64In;
  readonly srcIova: U64In;
}

export interface IoasIovaRangesOut {
  readonly numIovas: number;
  /** The ranges written: at most the `numIovas` capacity given. */
  readonly ranges: readonly IovaRange[];
  readonly outIovaAlignment: bigint;
}

export interface OptionCmd {
  readonly optionId: number;
  readonly op: number;
  readonly objectId?: number;
  readonly val64?: U64In;
  readonly reserved?: number;
}

export interface HwptAllocCmd {
  readonly flags?: number;
  readonly devId: number;
  readonly ptId: number;
  readonly dataType?: number;
  /** The user data; `null` is a NULL `data_uptr`. */
  readonly data?: VtdS1Data | null;
  /** Defaults to the size of `data` (24), or 0 without data. */
  readonly dataLen?: number;
  readonly faultId?: number;
  readonly reserved?: number;
}

/** `struct iommu_hwpt_vtd_s1_invalidate`. */
export interface VtdS1Invalidate {
  readonly addr: U64In;
  readonly npages: U64In;
  readonly flags?: number;
  readonly reserved?: number;
}

export interface HwptInvalidateCmd {
  readonly hwptId: number;
  readonly dataType?: number;
  /** The entry array; `null` is a NULL `data_uptr`. */
  readonly entries?: readonly VtdS1Invalidate[] | null;
  /** Defaults to 24, the size of `struct iommu_hwpt_vtd_s1_invalidate`. */
  readonly entryLen?: number;
  /** Defaults to the number of entries given. */
  readonly entryNum?: number;
  readonly reserved?: number;
}

export interface GetHwInfoCmd {
  readonly devId: number;
  readonly flags?: number;
  /** Size of the user buffer; defaults to sizeof(struct iommu_hw_info_vtd). */
  readonly dataLen?: number;
  readonly inDataType?: number;
  readonly reserved?: number;
}

export interface GetHwInfoOut {
  readonly outDataType: number;
  /** The size of the driver's structure, whatever the buffer size was. */
  readonly dataLen: number;
  /** The user buffer as the kernel left it: the structure up to the buffer's size, zeroes after it. */
  readonly data: Uint8Array;
  readonly info: { readonly flags: number; readonly capReg: U64; readonly ecapReg: U64 };
  readonly outCapabilities: number;
  readonly outMaxPasidLog2: number;
}

/** IOMMU_VFIO_IOAS ops. */
export const VFIO_IOAS_OP = { GET: 0, SET: 1, CLEAR: 2 } as const;

/** IOMMU DMA ownership per device (iommu_device_claim_dma_owner): one owner at a time, whatever the context. */
const dmaOwners = new WeakMap<DeviceInfo, Iommufd>();

export class Iommufd {
  readonly objects = new ObjectTable();
  readonly mm: Process;
  private readonly options: IommufdOptions;
  /** IOPT_PAGES_ACCOUNT_USER (0) or _MM (1). */
  private accountMode = 0;
  private vfioCompat: Ioas | undefined;
  private readonly faultFds: FaultFd[] = [];
  private closed = false;

  constructor(
    readonly kernel: IommuKernel,
    options: IommufdOptions = {},
  ) {
    this.options = options;
    this.mm = options.mm ?? kernel.newProcess('iommufd-user');
  }

  // ===================================================================================================
  // Objects
  // ===================================================================================================

  /** IOMMU_DESTROY: only an object nothing else uses. */
  destroy(id: number): void {
    this.live();
    const obj = this.objects.get(id);
    if (obj.users !== 1) fail('EBUSY', `object ${id} (${obj.type}) is in use`);
    this.destroyObject(obj);
  }

  private destroyObject(obj: IommufdObject): void {
    switch (obj.type) {
      case 'IOAS': {
        const ioas = obj as Ioas;
        ioas.iopt.unmapAll();
        if (this.vfioCompat === ioas) this.vfioCompat = undefined;
        break;
      }
      case 'HWPT_PAGING':
      case 'HWPT_NESTED':
        destroyHwpt(this, obj as Hwpt);
        return;
      case 'FAULT':
        (obj as FaultQueue).autoRespond(() => true);
        break;
      case 'VIOMMU':
        (obj as Viommu).hwpt.users--;
        break;
      case 'VDEVICE': {
        const v = obj as Vdevice;
        v.viommu.users--;
        v.viommu.vdevs.delete(v.virtId);
        v.idev.users--;
        v.idev.vdevice = undefined;
        break;
      }
      default:
        fail('EBUSY', `a ${obj.type} goes away with its owner, not with IOMMU_DESTROY`);
    }
    this.objects.remove(obj);
  }

  /**
   * close(): devices are unbound (their VFIO files closed), fault fds closed, then objects are destroyed
   * as they become unused, as iommufd_fops_release does.
   */
  close(): void {
    if (this.closed) return;
    for (const idev of this.objects.values().filter((o): o is IommufdDevice => o.type === 'DEVICE')) this.deviceUnbind(idev);
    for (const fd of this.faultFds) fd.close();
    for (const a of this.objects.values().filter((o): o is IommufdAccess => o.type === 'ACCESS')) a.destroy();
    for (;;) {
      const next = this.objects.values().find((o) => o.users === 1);
      if (!next) break;
      this.destroyObject(next);
    }
    const left = this.objects.values();
    if (left.length) throw new Error(`iommufd close left objects behind: ${left.map((o) => `${o.type} ${o.id} (users ${o.users})`).join(', ')}`);
    this.objects.clear();
    this.closed = true;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private live(): void {
    if (this.closed) fail('EBADF', 'this iommufd is closed');
  }

  private ioas(id: number): Ioas {
    return this.objects.get(id, 'IOAS') as Ioas;
  }

  private idev(id: number): IommufdDevice {
    return this.objects.get(id, 'DEVICE') as IommufdDevice;
  }

  /** The iommufd device object of a driver device, if it is bound here. */
  deviceOf(dev: DeviceInfo): IommufdDevice | undefined {
    return this.objects.values().find((o): o is IommufdDevice => o.type === 'DEVICE' && (o as IommufdDevice).dev === dev);
  }

  // ===================================================================================================
  // IOAS
  // ===================================================================================================

  /** IOMMU_IOAS_ALLOC. */
  ioasAlloc(cmd: { flags?: number } = {}): { ioasId: number } {
    this.live();
    if (cmd.flags) fail('EOPNOTSUPP', 'IOAS_ALLOC takes no flags');
    return { ioasId: this.objects.add(new Ioas(this.kernel)).id };
  }

  /** IOMMU_IOAS_MAP: maps user memory of `mm` at a fixed or kernel-chosen IOVA; returns the IOVA. */
  ioasMap(cmd: IoasMapCmd): { iova: bigint } {
    this.live();
    const { flags } = cmd;
    if (flags & ~(IOAS_MAP.FIXED_IOVA | IOAS_MAP.WRITEABLE | IOAS_MAP.READABLE) || cmd.reserved) fail('EOPNOTSUPP', `IOAS_MAP flags 0x${(flags >>> 0).toString(16)} include unknown bits`);
    const iova = u64(cmd.iova ?? 0, 'iova');
    const length = u64(cmd.length, 'length');
    const uva = u64(cmd.userVa, 'user_va');
    if (iova >= ULONG_MAX || length >= ULONG_MAX) fail('EOVERFLOW', 'iova or length is ULONG_MAX or more');
    if (!(flags & (IOAS_MAP.WRITEABLE | IOAS_MAP.READABLE))) fail('EINVAL', 'a mapping must be READABLE, WRITEABLE or both');
    const ioas = this.ioas(cmd.ioasId);
    // iopt_alloc_user_pages
    if (length === 0n || length > U64_MAX - PAGE_SIZE) fail('EINVAL', `length 0x${length.toString(16)} cannot be mapped`);
    if (uva + length > U64_MAX) fail('EOVERFLOW', 'user_va + length wraps');
    const base = uva - (uva % PAGE_SIZE);
    const startByte = uva - base;
    const npages = Number((startByte + length + PAGE_SIZE - 1n) / PAGE_SIZE);
    const pages = new UserPages(this.mm, base, npages, (flags & IOAS_MAP.WRITEABLE) !== 0);
    const dst = ioas.iopt.mapPages([{ pages, startByte, length }], length, flags & IOAS_MAP.FIXED_IOVA ? iova : undefined, {
      read: (flags & IOAS_MAP.READABLE) !== 0,
      write: (flags & IOAS_MAP.WRITEABLE) !== 0,
    });
    return { iova: dst };
  }

  /** IOMMU_IOAS_UNMAP: whole areas only; iova 0 with length U64_MAX unmaps everything. Returns the bytes unmapped. */
  ioasUnmap(cmd: { ioasId: number; iova: U64In; length: U64In }): { length: bigint } {
    this.live();
    const ioas = this.ioas(cmd.ioasId);
    const iova = u64(cmd.iova, 'iova');
    const length = u64(cmd.length, 'length');
    if (iova === 0n && length === U64_MAX) return { length: ioas.iopt.unmapAll() };
    if (iova >= ULONG_MAX || length >= ULONG_MAX) fail('EOVERFLOW', 'iova or length is ULONG_MAX or more');
    if (length === 0n) fail('EINVAL', 'unmap of zero bytes');
    if (iova + length - 1n > ULONG_MAX) fail('EOVERFLOW', 'the range wraps');
    return { length: ioas.iopt.unmapRange(iova, iova + length - 1n) };
  }

  /**
   * IOMMU_IOAS_COPY: maps in the destination the same pages the source maps at [srcIova, +length). The
   * checks in iommufd_ioas_copy's order: unknown flags (EOPNOTSUPP), ULONG_MAX (EOVERFLOW), neither READABLE
   * nor WRITEABLE (EINVAL), then the source IOAS.
   */
  ioasCopy(cmd: IoasCopyCmd): { dstIova: bigint } {
    this.live();
    if (cmd.flags & ~(IOAS_MAP.FIXED_IOVA | IOAS_MAP.WRITEABLE | IOAS_MAP.READABLE)) fail('EOPNOTSUPP', `IOAS_COPY flags 0x${(cmd.flags >>> 0).toString(16)} include unknown bits`);
    const length = u64(cmd.length, 'length');
    const srcIova = u64(cmd.srcIova, 'src_iova');
    const dstIova = u64(cmd.dstIova ?? 0, 'dst_iova');
    if (length >= ULONG_MAX || srcIova >= ULONG_MAX || dstIova >= ULONG_MAX) fail('EOVERFLOW', 'an address or the length is ULONG_MAX or more');
    if (!(cmd.flags & (IOAS_MAP.WRITEABLE | IOAS_MAP.READABLE))) fail('EINVAL', 'a copy must be READABLE, WRITEABLE or both');
    const slices = this.ioas(cmd.srcIoasId).iopt.getPages(srcIova, length);
    const dst = this.ioas(cmd.dstIoasId);
    const at = dst.iopt.mapPages(slices, length, cmd.flags & IOAS_MAP.FIXED_IOVA ? dstIova : undefined, {
      read: (cmd.flags & IOAS_MAP.READABLE) !== 0,
      write: (cmd.flags & IOAS_MAP.WRITEABLE) !== 0,
    });
    return { dstIova: at };
  }

  /**
   * IOMMU_IOAS_IOVA_RANGES: the usable ranges (holes of the reserved ranges) and the IOVA alignment.
   * `numIovas` is the capacity of the user array; EMSGSIZE when it is too small, with the needed count.
   */
  ioasIovaRanges(cmd: { ioasId: number; numIovas?: number; reserved?: number }): IoasIovaRangesOut {
    this.live();
    if (cmd.reserved) fail('EOPNOTSUPP', '__reserved must be zero');
    const ioas = this.ioas(cmd.ioasId);
    const all = ioas.iopt.usableRanges();
    const cap = cmd.numIovas ?? all.length;
    const out: IoasIovaRangesOut = { numIovas: all.length, ranges: all.slice(0, cap), outIovaAlignment: ioas.iopt.iovaAlignment };
    if (all.length > cap) throw new IoctlError('EMSGSIZE', `${all.length} ranges do not fit in ${cap}`, out);
    return out;
  }

  /** IOMMU_IOAS_ALLOW_IOVAS: kernel-chosen IOVAs come only from these ranges (none: anywhere). */
  ioasAllowIovas(cmd: { ioasId: number; iovas: readonly { start: U64In; last: U64In }[]; reserved?: number }): void {
    this.live();
    if (cmd.reserved) fail('EOPNOTSUPP', '__reserved must be zero');
    const ioas = this.ioas(cmd.ioasId);
    const ranges: IovaRange[] = [];
    for (const r of cmd.iovas) {
      const start = u64(r.start, 'start');
      const last = u64(r.last, 'last');
      if (start >= last) fail('EINVAL', `allowed range [0x${start.toString(16)}, 0x${last.toString(16)}] is empty or reversed`);
      if (ranges.some((o) => o.start <= last && start <= o.last)) fail('EINVAL', 'allowed ranges overlap');
      ranges.push({ start, last });
    }
    ioas.iopt.setAllowed(ranges);
  }

  /** IOMMU_OPTION: RLIMIT_MODE (global) and HUGE_PAGES (per IOAS). Returns val64. */
  option(cmd: OptionCmd): { val64: bigint } {
    this.live();
    if (cmd.reserved) fail('EOPNOTSUPP', '__reserved must be zero');
    const val = u64(cmd.val64 ?? 0, 'val64');
    const objectId = cmd.objectId ?? 0;
    if (cmd.optionId === OPTION.RLIMIT_MODE) {
      if (objectId) fail('EOPNOTSUPP', 'RLIMIT_MODE is global: object_id must be 0');
      if (cmd.op === OPTION_OP.GET) return { val64: BigInt(this.accountMode) };
      if (cmd.op !== OPTION_OP.SET) fail('EOPNOTSUPP', `unknown option op ${cmd.op}`);
      if (!(this.options.capSysResource ?? true)) fail('EPERM', 'setting RLIMIT_MODE needs CAP_SYS_RESOURCE');
      if (this.objects.size) fail('EBUSY', 'RLIMIT_MODE can change only while the context has no objects');
      if (val > 1n) fail('EINVAL', `RLIMIT_MODE ${val} is neither 0 (user) nor 1 (mm)`);
      this.accountMode = Number(val);
      return { val64: val };
    }
    if (cmd.optionId === OPTION.HUGE_PAGES) {
      const ioas = this.ioas(objectId);
      if (cmd.op === OPTION_OP.GET) return { val64: ioas.iopt.disableLargePages ? 0n : 1n };
      if (cmd.op !== OPTION_OP.SET) fail('EOPNOTSUPP', `unknown option op ${cmd.op}`);
      if (val === 0n) ioas.iopt.disableLarge();
      else if (val === 1n) ioas.iopt.enableLarge();
      else fail('EINVAL', `HUGE_PAGES ${val} is neither 0 nor 1`);
      return { val64: val };
    }
    return fail('EOPNOTSUPP', `unknown option ${cmd.optionId}`);
  }

  /** IOMMU_VFIO_IOAS: the IOAS the VFIO type1 compatibility container uses. */
  vfioIoas(cmd: { op: number; ioasId?: number }): { ioasId: number } {
    this.live();
    switch (cmd.op) {
      case VFIO_IOAS_OP.GET:
        if (!this.vfioCompat) fail('ENODEV', 'no compatibility IOAS is set');
        return { ioasId: this.vfioCompat.id };
      case VFIO_IOAS_OP.SET:
        this.vfioCompat = this.ioas(cmd.ioasId ?? 0);
        return { ioasId: this.vfioCompat.id };
      case VFIO_IOAS_OP.CLEAR:
        this.vfioCompat = undefined;
        return { ioasId: 0 };
      default:
        return fail('EOPNOTSUPP', `unknown VFIO_IOAS op ${cmd.op}`);
    }
  }

  /**
   * IOMMU_TEST_OP_ADD_RESERVED's effect, which the core applies for RMRRs and MSI windows: reserves
   * [start, start + length) in the IOAS.
   */
  addReserved(ioasId: number, start: U64In, length: U64In): void {
    this.live();
    const s = u64(start, 'start');
    const l = u64(length, 'length');
    this.ioas(ioasId).iopt.reserve(s, s + l - 1n, 'test');
  }

  // ===================================================================================================
  // HWPT
  // ===================================================================================================

  /** IOMMU_HWPT_ALLOC: a paging HWPT on an IOAS, or a nested one (VTD_S1 data) on a nest parent or a vIOMMU. */
  hwptAlloc(cmd: HwptAllocCmd): { hwptId: number } {
    this.live();
    const flags = cmd.flags ?? 0;
    const type = cmd.dataType ?? HWPT_DATA.NONE;
    const len = cmd.dataLen ?? (cmd.data ? SIZEOF.HWPT_VTD_S1 : 0);
    if (cmd.reserved) fail('EOPNOTSUPP', '__reserved must be zero');
    if ((type === HWPT_DATA.NONE && len) || (type !== HWPT_DATA.NONE && !len)) fail('EINVAL', 'data_type and data_len disagree');
    const idev = this.idev(cmd.devId);
    const pt = this.objects.find(cmd.ptId);
    const user: UserData | undefined = len ? { type, len, data: cmd.data } : undefined;
    let hwpt: Hwpt;
    if (pt?.type === 'IOAS') {
      hwpt = allocHwptPaging(this, pt as Ioas, idev, flags, user);
      addToIoas(this, hwpt);
    } else if (pt?.type === 'HWPT_PAGING') {
      const parent = pt as HwptPaging;
      if (flags & ~(HWPT_ALLOC.FAULT_ID_VALID | HWPT_ALLOC.PASID) || !user) fail('EOPNOTSUPP', 'a nested HWPT takes only FAULT_ID_VALID and PASID, and needs data');
      if (parent.autoDomain || !parent.nestParent) fail('EINVAL', `hwpt${parent.id} is not a nest parent allocated with IOMMU_HWPT_ALLOC_NEST_PARENT`);
      hwpt = allocHwptNested(this, parent, idev, flags, user, undefined);
    } else if (pt?.type === 'VIOMMU') {
      const viommu = pt as Viommu;
      if (flags & ~(HWPT_ALLOC.FAULT_ID_VALID | HWPT_ALLOC.PASID)) fail('EOPNOTSUPP', 'a nested HWPT takes only FAULT_ID_VALID and PASID');
      if (!user) fail('EOPNOTSUPP', 'a nested HWPT needs data');
      if (idev.dev.iommu !== viommu.iommu) fail('EINVAL', `${idev.dev.name} is not behind ${viommu.iommu.name}, the vIOMMU's IOMMU`);
      hwpt = allocHwptNested(this, viommu.hwpt, idev, flags, user, viommu);
    } else {
      return fail('EINVAL', `pt_id ${cmd.ptId} is not an IOAS, a paging HWPT or a vIOMMU`);
    }
    if (flags & HWPT_ALLOC.FAULT_ID_VALID) {
      let fault: FaultQueue;
      try {
        fault = this.objects.get(cmd.faultId ?? 0, 'FAULT') as FaultQueue;
      } catch (e) {
        destroyHwpt(this, hwpt);
        throw e;
      }
      hwpt.fault = fault;
      fault.users++;
      hwpt.domain.iopfHandler = this.queueTo(fault, hwpt);
    }
    return { hwptId: hwpt.id };
  }

  /** iommufd_fault_iopf_handler: the group waits in the queue; the response comes from userspace. */
  private queueTo(fault: FaultQueue, hwpt: Hwpt): IopfHandler {
    return (group) => {
      const f = group[0]!;
      const idev = this.deviceOf(f.device);
      if (!idev) return 'invalid';
      fault.enqueue({ faults: group, devId: idev.id, pasid: f.pasid ?? IOMMU_NO_PASID, hwpt });
      return 'deferred';
    };
  }

  /**
   * IOMMU_HWPT_INVALIDATE on a nested HWPT (intel_nested_cache_invalidate_user): each good entry flushes
   * [addr, addr + npages * 4 KiB) of the nested domain before the next entry is read. Returns entry_num, the
   * number of entries handled; on failure the IoctlError's `out.entryNum` says how many were.
   */
  hwptInvalidate(cmd: HwptInvalidateCmd): { entryNum: number } {
    this.live();
    let done = 0;
    try {
      const entries = cmd.entries ?? null;
      const entryNum = cmd.entryNum ?? entries?.length ?? 0;
      const entryLen = cmd.entryLen ?? SIZEOF.HWPT_VTD_S1_INVALIDATE;
      if (cmd.reserved) fail('EOPNOTSUPP', '__reserved must be zero');
      if (entryNum && (entries === null || !entryLen)) fail('EINVAL', 'entries are given without an array or an entry length');
      const target = this.objects.get(cmd.hwptId);
      if (target.type === 'VIOMMU') fail('EOPNOTSUPP', 'the vIOMMU has no cache invalidation op');
      if (target.type !== 'HWPT_NESTED') fail('EINVAL', `object ${cmd.hwptId} is a ${target.type}: only a nested HWPT or a vIOMMU takes invalidations`);
      const nested = target as HwptNested;
      if ((cmd.dataType ?? HWPT_INVALIDATE_DATA.VTD_S1) !== HWPT_INVALIDATE_DATA.VTD_S1) fail('EINVAL', `data type ${cmd.dataType} is not IOMMU_HWPT_INVALIDATE_DATA_VTD_S1`);
      for (let i = 0; i < entryNum; i++) {
        if (entryLen !== SIZEOF.HWPT_VTD_S1_INVALIDATE) fail('EINVAL', `entry_len ${entryLen} is not sizeof(struct iommu_hwpt_vtd_s1_invalidate) = 24`);
        const e = entries![i];
        if (!e) fail('EFAULT', `entry ${i} lies outside the user array`);
        const flags = e.flags ?? 0;
        if (flags & ~VTD_INV_FLAGS_LEAF || e.reserved) fail('EOPNOTSUPP', `entry ${i}: flags 0x${(flags >>> 0).toString(16)} or __reserved not supported`);
        const addr = u64(e.addr, 'addr');
        const npages = u64(e.npages, 'npages');
        if (addr % 4096n || (npages === U64_MAX && addr !== 0n)) fail('EINVAL', `entry ${i}: address 0x${addr.toString(16)} is not 4 KiB aligned, or U64_MAX pages start above 0`);
        // The driver computes the range in 64-bit arithmetic; npages 0 included (see invalidateNested).
        const r = this.kernel.invalidateNested(nested.domain, [{ addr: Number(addr), npages, leaf: (flags & VTD_INV_FLAGS_LEAF) !== 0 }]);
        if (r.error) throw r.error;
        done++;
      }
    } catch (e) {
      IoctlError.wrap(e, { entryNum: done });
    }
    return { entryNum: done };
  }

  /**
   * IOMMU_HWPT_SET_DIRTY_TRACKING (iommufd_hwpt_set_dirty_tracking): flags other than ENABLE are
   * EOPNOTSUPP (`__reserved` is not checked); the HWPT must be a paging one (ENOENT) allocated with
   * IOMMU_HWPT_ALLOC_DIRTY_TRACKING (EOPNOTSUPP). Enabling clears the D bits first, then SSADE is set in the
   * PASID entry of every RID attached to the HWPT (see IoPagetable.setDirtyTracking, IommuKernel.setDirtyTracking).
   */
  hwptSetDirtyTracking(cmd: { hwptId: number; flags?: number; reserved?: number }): void {
    this.live();
    const flags = cmd.flags ?? 0;
    if (flags & ~HWPT_DIRTY_TRACKING_ENABLE) fail('EOPNOTSUPP', `SET_DIRTY_TRACKING flags 0x${(flags >>> 0).toString(16)} include unknown bits`);
    const hwpt = this.objects.get(cmd.hwptId, 'HWPT_PAGING') as HwptPaging;
    hwpt.ioas.iopt.setDirtyTracking(hwpt.domain, (flags & HWPT_DIRTY_TRACKING_ENABLE) !== 0);
  }

  /**
   * IOMMU_HWPT_GET_DIRTY_BITMAP (iommufd_hwpt_get_dirty_bitmap): flags other than NO_CLEAR or a non-zero
   * `__reserved` are EOPNOTSUPP; the HWPT must be a paging one (ENOENT); then the range checks (EOVERFLOW,
   * EINVAL), the dirty-ops check (EOPNOTSUPP), and the harvest into the bitmap at user address `data` in
   * this context's process: bit n is [iova + n * pageSize, iova + (n + 1) * pageSize), set when a dirty leaf
   * overlaps it. D bits are cleared and the IOTLB flushed unless NO_CLEAR.
   */
  hwptGetDirtyBitmap(cmd: { hwptId: number; flags?: number; iova: U64In; length: U64In; pageSize: U64In; data: U64In; reserved?: number }): void {
    this.live();
    const flags = cmd.flags ?? 0;
    if (flags & ~HWPT_GET_DIRTY_BITMAP_NO_CLEAR || cmd.reserved) fail('EOPNOTSUPP', `GET_DIRTY_BITMAP flags 0x${(flags >>> 0).toString(16)} include unknown bits, or __reserved is set`);
    const hwpt = this.objects.get(cmd.hwptId, 'HWPT_PAGING') as HwptPaging;
    const iova = u64(cmd.iova, 'iova');
    const length = u64(cmd.length, 'length');
    const pageSize = u64(cmd.pageSize, 'page_size');
    const data = u64(cmd.data, 'data');
    hwpt.ioas.iopt.readAndClearDirtyData(hwpt.domain, (flags & HWPT_GET_DIRTY_BITMAP_NO_CLEAR) !== 0, { iova, length, pageSize }, () => new IovaBitmap(this.mm, this.kernel.machine.memory, iova, length, pageSize, data));
  }

  /** IOMMU_GET_HW_INFO: the VT-d `struct iommu_hw_info_vtd` and the device's capabilities. */
  getHwInfo(cmd: GetHwInfoCmd): GetHwInfoOut {
    this.live();
    const flags = cmd.flags ?? 0;
    if (flags & ~HW_INFO_FLAG_INPUT_TYPE || cmd.reserved) fail('EOPNOTSUPP', `GET_HW_INFO flags 0x${(flags >>> 0).toString(16)} include unknown bits`);
    const inType = flags & HW_INFO_FLAG_INPUT_TYPE ? (cmd.inDataType ?? HW_INFO_TYPE.DEFAULT) : HW_INFO_TYPE.DEFAULT;
    const idev = this.idev(cmd.devId);
    if (inType !== HW_INFO_TYPE.DEFAULT && inType !== HW_INFO_TYPE.INTEL_VTD) fail('EOPNOTSUPP', `the VT-d driver reports no hw_info of type ${inType}`);
    const unit = idev.dev.iommu.unit;
    const info = { flags: HW_INFO_VTD_ERRATA_772415_SPR17, capReg: unit.capRaw, ecapReg: unit.ecapRaw };
    const full = new Uint8Array(SIZEOF.HW_INFO_VTD);
    const view = new DataView(full.buffer);
    view.setUint32(0, info.flags, true);
    view.setUint32(8, info.capReg.lo, true);
    view.setUint32(12, info.capReg.hi, true);
    view.setUint32(16, info.ecapReg.lo, true);
    view.setUint32(20, info.ecapReg.hi, true);
    const data = new Uint8Array(cmd.dataLen ?? SIZEOF.HW_INFO_VTD);
    data.set(full.subarray(0, Math.min(data.length, full.length)));
    const ep = idev.dev.endpoint;
    let caps = dirtyTrackingCapable(idev.dev) ? HW_CAP.DIRTY_TRACKING : 0;
    const maxPasids = idev.dev.maxPasids;
    if (maxPasids) caps |= (ep.pasidExecEnabled ? HW_CAP.PCI_PASID_EXEC : 0) | (ep.pasidPrivEnabled ? HW_CAP.PCI_PASID_PRIV : 0);
    return { outDataType: HW_INFO_TYPE.INTEL_VTD, dataLen: SIZEOF.HW_INFO_VTD, data, info, outCapabilities: caps, outMaxPasidLog2: maxPasids ? Math.floor(Math.log2(maxPasids)) : 0 };
  }

  // ===================================================================================================
  // Fault queues, vIOMMU, vdevice
  // ===================================================================================================

  /** IOMMU_FAULT_QUEUE_ALLOC: the queue object and its fd. */
  faultQueueAlloc(cmd: { flags?: number } = {}): { faultId: number; fd: FaultFd } {
    this.live();
    if (cmd.flags) fail('EOPNOTSUPP', 'FAULT_QUEUE_ALLOC takes no flags');
    const queue = this.objects.add(new FaultQueue(this.kernel));
    const fd = new FaultFd(queue);
    this.faultFds.push(fd);
    return { faultId: queue.id, fd };
  }

  /** IOMMU_VIOMMU_ALLOC: EOPNOTSUPP on 6.17 VT-d; with the 'lab-vtd' option, a vIOMMU over a nest parent. */
  viommuAlloc(cmd: { flags?: number; type: number; devId: number; hwptId: number }): { viommuId: number } {
    this.live();
    if (cmd.flags || cmd.type === VIOMMU_TYPE.DEFAULT) fail('EOPNOTSUPP', 'VIOMMU_ALLOC: flags must be zero and the type not DEFAULT');
    const idev = this.idev(cmd.devId);
    if ((this.options.viommu ?? 'none') === 'none') fail('EOPNOTSUPP', 'the VT-d driver (6.17) has no vIOMMU ops');
    if (cmd.type !== LAB_VIOMMU_TYPE_VTD) fail('EOPNOTSUPP', `vIOMMU type 0x${(cmd.type >>> 0).toString(16)} is not supported by the VT-d driver`);
    const hwpt = this.objects.get(cmd.hwptId, 'HWPT_PAGING') as HwptPaging;
    if (!hwpt.nestParent) fail('EINVAL', `hwpt${hwpt.id} is not a nest parent`);
    const viommu = this.objects.add(new Viommu(hwpt, idev.dev.iommu, cmd.type));
    hwpt.users++;
    return { viommuId: viommu.id };
  }

  /** IOMMU_VDEVICE_ALLOC: the guest-visible ID (for VT-d, the guest RID) of a device on a vIOMMU. */
  vdeviceAlloc(cmd: { viommuId: number; devId: number; virtId: U64In }): { vdeviceId: number } {
    this.live();
    const virtId = u64(cmd.virtId, 'virt_id');
    const viommu = this.objects.get(cmd.viommuId, 'VIOMMU') as Viommu;
    const idev = this.idev(cmd.devId);
    if (viommu.iommu !== idev.dev.iommu) fail('EINVAL', `${idev.dev.name} is not behind ${viommu.iommu.name}`);
    if (idev.vdevice) fail('EEXIST', `${idev.dev.name} already has vdevice ${idev.vdevice.id}`);
    if (viommu.vdevs.has(virtId)) fail('EEXIST', `virt_id 0x${virtId.toString(16)} is taken on viommu ${viommu.id}`);
    const vdev = this.objects.add(new Vdevice(viommu, idev, virtId));
    viommu.vdevs.set(virtId, vdev);
    viommu.users++;
    idev.users++;
    idev.vdevice = vdev;
    return { vdeviceId: vdev.id };
  }

  /** What a VMM asks of a vIOMMU: the physical device behind a guest RID. */
  vdeviceByVirtId(viommuId: number, virtId: U64In): DeviceInfo | undefined {
    const viommu = this.objects.get(viommuId, 'VIOMMU') as Viommu;
    return viommu.vdevs.get(u64(virtId, 'virt_id'))?.idev.dev;
  }

  // ===================================================================================================
  // Devices (the in-kernel calls VFIO makes)
  // ===================================================================================================

  /**
   * iommufd_device_bind: claims DMA ownership (the RID is blocked until something is attached) and makes
   * the device object. EPERM without interrupt remapping unless unsafe interrupts are allowed: MSIs are
   * isolated (iommu_group_has_isolated_msi) only once the kernel runs interrupt remapping, whose irq domain
   * carries IRQ_DOMAIN_FLAG_ISOLATED_MSI; a unit with ECAP.IR and intremap=off isolates nothing. Its caller
   * is VFIO, so the device is bound to vfio-pci (its dev_* lines say `vfio-pci 0000:...:`) unless another
   * driver (a vfio variant driver) was set beforehand.
   */
  deviceBind(which: string | number | DeviceInfo): IommufdDevice {
    this.live();
    const dev = this.kernel.device(which);
    dev.driver ??= 'vfio-pci';
    if (!this.kernel.irq) {
      if (!this.options.allowUnsafeInterrupts) fail('EPERM', `${dev.name}: MSIs cannot be isolated without interrupt remapping (allow_unsafe_interrupts)`);
      this.kernel.log.warn(`${devPrefix(dev)}MSI interrupts are not secure, they cannot be isolated by the platform. Check that platform features like interrupt remapping are enabled. Use the "allow_unsafe_interrupts" module parameter to override`);
    }
    const owner = dmaOwners.get(dev);
    if (owner) fail('EBUSY', `${dev.name} is already bound${owner === this ? ' here' : ' to another iommufd'}`);
    const busy = (dev.ridDomain && dev.ridDomain !== dev.defaultDomain && dev.ridDomain !== this.kernel.blocked) || dev.pasidDomains.size > 0;
    if (busy) fail('EBUSY', `${dev.name} is in use by a kernel driver (attached to ${dev.ridDomain?.name ?? 'PASIDs'})`);
    dmaOwners.set(dev, this);
    this.kernel.detachDevice(dev);
    return this.objects.add(new IommufdDevice(dev));
  }

  /** Opens the device's VFIO cdev and binds it here (VFIO_DEVICE_BIND_IOMMUFD). */
  bindDevice(which: string | number | DeviceInfo): VfioDevice {
    const vfio = new VfioDevice(this.kernel, which);
    vfio.bindIommufd(this);
    return vfio;
  }

  /** iommufd_device_unbind, after VFIO detached the RID and the PASIDs: the device returns to its default domain. */
  deviceUnbind(idev: IommufdDevice): void {
    for (const pasid of [...idev.attached.keys()].sort((a, b) => b - a)) detach(this, idev, pasid);
    const vdev = idev.vdevice;
    if (vdev) {
      // The vdevice dies with the device; its id stays taken, so destroying it later is ENOENT.
      vdev.viommu.users--;
      vdev.viommu.vdevs.delete(vdev.virtId);
      idev.vdevice = undefined;
      this.objects.tombstone(vdev);
    }
    this.objects.remove(idev);
    dmaOwners.delete(idev.dev);
    if (idev.dev.defaultDomain) this.kernel.attachDevice(idev.dev.defaultDomain, idev.dev);
  }

  /** iommufd_device_attach (RID, or a PASID): returns the HWPT id attached (an auto domain's for an IOAS). */
  deviceAttach(devId: number, ptId: number, pasid = IOMMU_NO_PASID): { ptId: number } {
    this.live();
    return { ptId: changePt(this, this.idev(devId), pasid, ptId, 'attach') };
  }

  /** iommufd_device_replace: what is attached at the RID or the PASID changes without a detach. */
  deviceReplace(devId: number, ptId: number, pasid = IOMMU_NO_PASID): { ptId: number } {
    this.live();
    return { ptId: changePt(this, this.idev(devId), pasid, ptId, 'replace') };
  }

  /** iommufd_device_detach. */
  deviceDetach(devId: number, pasid = IOMMU_NO_PASID): void {
    this.live();
    detach(this, this.idev(devId), pasid);
  }

  /**
   * iommufd_access_create + iommufd_access_attach (what an emulated device's driver does; the selftests'
   * IOMMU_TEST_OP_CREATE_ACCESS): an access to the IOAS, pinning pages or not. `onUnmap` is the driver's
   * unmap callback; by default it unpins whatever the unmapped range meets.
   */
  accessCreate(cmd: { ioasId: number; needsPinPages?: boolean; onUnmap?: AccessUnmapHandler }): IommufdAccess {
    this.live();
    const access = this.objects.add(new IommufdAccess({ objects: this.objects, memory: this.kernel.machine.memory }, cmd.needsPinPages ?? false, cmd.onUnmap));
    try {
      access.attach(cmd.ioasId);
    } catch (e) {
      this.objects.remove(access);
      throw e;
    }
    return access;
  }

  /** The HWPT id attached at the RID or a PASID (0: none), as IOMMU_TEST_OP_PASID_CHECK_HWPT reads it. */
  attachedHwpt(devId: number, pasid = IOMMU_NO_PASID): number {
    return this.idev(devId).attached.get(pasid)?.id ?? 0;
  }

  /** Pinned pages behind every IOAS of this context (each area's pins counted). */
  get pinnedPages(): number {
    const seen = new Set<UserPages>();
    for (const o of this.objects.values()) if (o.type === 'IOAS') for (const a of (o as Ioas).iopt.areas) seen.add(a.pages);
    let n = 0;
    for (const p of seen) n += p.pinnedPages;
    return n;
  }

  /** How many times the user page holding `userVa` is pinned (MD_CHECK_REFS). */
  pinCount(userVa: U64In): number {
    const va = u64(userVa, 'user_va');
    const seen = new Set<UserPages>();
    for (const o of this.objects.values()) if (o.type === 'IOAS') for (const a of (o as Ioas).iopt.areas) seen.add(a.pages);
    let n = 0;
    for (const p of seen) n += p.pinCountAt(va);
    return n;
  }
}
