import * as assert from 'node:assert/strict';
import { PasidAllocator, type PasidCapable } from '../../src/core/driver/pasid-alloc';
import { U64 } from '../../src/core/u64';
import { PasidMap } from '../../src/core/vmm/pasid-map';
import { PasidSplit } from '../../src/core/vmm/pasid-split';
import { VCMD_LAYOUT_VTD_3_1, VirtualCommand, type VcmdLayout } from '../../src/core/vmm/vcmd';

/**
 * The guest's side, written from Linux 5.10's sources and not from the model: the constants are copied
 * from /work/ksrc/linux-5.10/include/linux/intel-iommu.h (DMAR_VCMD_REG 0xe00, DMAR_VCRSP_REG 0xe10,
 * DMAR_VCCAP_REG 0xe30, DMA_VCS_PAS 1) and drivers/iommu/intel/pasid.h (the VCMD_* macros), and BigInt
 * stands for u64 so that nothing is shared with the model's U64.
 */
interface GuestAbi {
  readonly DMAR_VCCAP_REG: number;
  readonly DMAR_VCMD_REG: number;
  readonly DMAR_VCRSP_REG: number;
  readonly VCMD_VRSP_SC: (e: bigint) => bigint;
  readonly VCMD_VRSP_SC_NO_PASID_AVAIL: bigint;
  readonly VCMD_VRSP_SC_INVALID_PASID: bigint;
  readonly VCMD_VRSP_RESULT_PASID: (e: bigint) => bigint;
  readonly VCMD_CMD_OPERAND: (e: bigint) => bigint;
}
const LINUX_5_10: GuestAbi = {
  DMAR_VCCAP_REG: 0xe30,
  DMAR_VCMD_REG: 0xe00,
  DMAR_VCRSP_REG: 0xe10,
  VCMD_VRSP_SC: (e) => (e & 0xffn) >> 1n,
  VCMD_VRSP_SC_NO_PASID_AVAIL: 16n,
  VCMD_VRSP_SC_INVALID_PASID: 16n,
  VCMD_VRSP_RESULT_PASID: (e) => (e >> 16n) & 0xfffffn,
  VCMD_CMD_OPERAND: (e) => e << 16n,
};
/** The lines 4d99efb229e6 ("iommu/vt-d: Update the virtual command related registers") removed. */
const BEFORE_4D99EFB229E6: GuestAbi = {
  DMAR_VCCAP_REG: 0xe00,
  DMAR_VCMD_REG: 0xe10,
  DMAR_VCRSP_REG: 0xe20,
  VCMD_VRSP_SC: (e) => (e >> 1n) & 0x3n,
  VCMD_VRSP_SC_NO_PASID_AVAIL: 2n,
  VCMD_VRSP_SC_INVALID_PASID: 2n,
  VCMD_VRSP_RESULT_PASID: (e) => (e >> 8n) & 0xfffffn,
  VCMD_CMD_OPERAND: (e) => e << 8n,
};
const VCMD_CMD_ALLOC = 0x1n;
const VCMD_CMD_FREE = 0x2n;
const VCMD_VRSP_IP = 0x1n;
const VCMD_VRSP_SC_SUCCESS = 0n;
const DMA_VCS_PAS = 1n;
const ENOSPC = 28;
const ENODEV = 19;

/** The vIOMMU's register file as the guest sees it; trapped writes go to the handler. */
class Registers {
  readonly values = new Map<number, U64>();
  handler: VirtualCommand | undefined;
  /** Called on each read of VCRSP: the VMM finishing its work while the guest polls. */
  onPoll: (() => void) | undefined;
  polls = 0;

  setRegisterValue(offset: number, value: U64): void {
    this.values.set(offset, value);
  }

  writeq(offset: number, value: bigint): void {
    const v = U64.fromBigInt(value);
    if (this.handler?.trap({ registerWrite: { offset, value: v } }) === undefined) this.values.set(offset, v);
  }

  readq(offset: number): bigint {
    this.polls++;
    this.onPoll?.();
    return (this.values.get(offset) ?? U64.ZERO).toBigInt();
  }
}

/** IOMMU_WAIT_OP(iommu, DMAR_VCRSP_REG, dmar_readq, !(res & VCMD_VRSP_IP), res), bounded where the kernel panics. */
function waitNotInProgress(regs: Registers, abi: GuestAbi): bigint {
  for (let i = 0; i < 100; i++) {
    const res = regs.readq(abi.DMAR_VCRSP_REG);
    if (!(res & VCMD_VRSP_IP)) return res;
  }
  throw new Error('DMAR hardware is malfunctioning');
}

/** vcmd_alloc_pasid() of Linux 5.10 drivers/iommu/intel/pasid.c: its return value, PASID and log line. */
function vcmdAllocPasid(regs: Registers, abi: GuestAbi, log: string[]): { ret: number; pasid?: number } {
  regs.writeq(abi.DMAR_VCMD_REG, VCMD_CMD_ALLOC);
  const res = waitNotInProgress(regs, abi);
  const sc = abi.VCMD_VRSP_SC(res);
  if (sc === VCMD_VRSP_SC_SUCCESS) return { ret: 0, pasid: Number(abi.VCMD_VRSP_RESULT_PASID(res)) };
  if (sc === abi.VCMD_VRSP_SC_NO_PASID_AVAIL) {
    log.push('IOMMU: dmar0: No PASID available');
    return { ret: -ENOSPC };
  }
  log.push(`IOMMU: dmar0: Unexpected error code ${sc}`);
  return { ret: -ENODEV };
}

/** vcmd_free_pasid() of the same file. */
function vcmdFreePasid(regs: Registers, abi: GuestAbi, pasid: number, log: string[]): void {
  regs.writeq(abi.DMAR_VCMD_REG, abi.VCMD_CMD_OPERAND(BigInt(pasid)) | VCMD_CMD_FREE);
  const res = waitNotInProgress(regs, abi);
  const sc = abi.VCMD_VRSP_SC(res);
  if (sc === VCMD_VRSP_SC_SUCCESS) return;
  if (sc === abi.VCMD_VRSP_SC_INVALID_PASID) log.push('IOMMU: dmar0: Invalid PASID');
  else log.push(`IOMMU: dmar0: Unexpected error code ${sc}`);
}

const dsa0: PasidCapable = { name: 'dsa0', maxPasids: 2 ** 20 };

function vm(opts: { split?: PasidSplit; layout?: VcmdLayout; deferred?: boolean; pasidAllocation?: boolean } = {}) {
  const host = new PasidAllocator();
  host.allocGlobal(dsa0); // the host's own SVA user holds global PASID 1
  const map = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: host, devices: [dsa0], ...(opts.split ? { split: opts.split } : {}) });
  const regs = new Registers();
  const vc = new VirtualCommand({
    map,
    registers: regs,
    ...(opts.layout ? { layout: opts.layout } : {}),
    ...(opts.deferred !== undefined ? { deferred: opts.deferred } : {}),
    ...(opts.pasidAllocation !== undefined ? { pasidAllocation: opts.pasidAllocation } : {}),
  });
  regs.handler = vc;
  return { host, map, regs, vc };
}

describe('vmm: the VT-d virtual command interface against Linux 5.10 vcmd_alloc_pasid / vcmd_free_pasid', () => {
  it('offers PASID allocation in VCCAP, where register_pasid_allocator looks for DMA_VCS_PAS', () => {
    assert.equal(vm().regs.readq(LINUX_5_10.DMAR_VCCAP_REG) & DMA_VCS_PAS, DMA_VCS_PAS);
    const off = vm({ pasidAllocation: false });
    assert.equal(off.regs.readq(LINUX_5_10.DMAR_VCCAP_REG) & DMA_VCS_PAS, 0n);
    off.regs.writeq(LINUX_5_10.DMAR_VCMD_REG, VCMD_CMD_ALLOC);
    assert.deepEqual(off.vc.findings.map((f) => f.code), ['vcmd-unsupported']);
    assert.equal(off.map.size, 0);
  });

  it('ALLOC_PASID returns a guest PASID and allocates the host PASID behind it', () => {
    const { regs, map } = vm({ split: new PasidSplit(1024) });
    const log: string[] = [];
    assert.deepEqual(vcmdAllocPasid(regs, LINUX_5_10, log), { ret: 0, pasid: 1 });
    assert.deepEqual(vcmdAllocPasid(regs, LINUX_5_10, log), { ret: 0, pasid: 2 });
    assert.deepEqual(log, []);
    assert.deepEqual(map.entries().map((e) => [e.guest, e.host, e.vcmd]), [
      [1, 1024, true],
      [2, 1025, true],
    ]);
  });

  it('answers NO_PASID_AVAIL when the guest range is used up, which the guest turns into -ENOSPC', () => {
    const { regs } = vm({ split: new PasidSplit(4) }); // local PASIDs 1..3
    const log: string[] = [];
    for (let i = 1; i <= 3; i++) assert.equal(vcmdAllocPasid(regs, LINUX_5_10, log).pasid, i);
    assert.deepEqual(vcmdAllocPasid(regs, LINUX_5_10, log), { ret: -ENOSPC });
    assert.deepEqual(log, ['IOMMU: dmar0: No PASID available']);
  });

  it('FREE_PASID releases the guest and the host PASID; a PASID it never gave is an invalid PASID', () => {
    const { regs, map, host } = vm();
    const log: string[] = [];
    const { pasid } = vcmdAllocPasid(regs, LINUX_5_10, log);
    const hostPasid = map.vmmGuestToHost(pasid!)!;
    vcmdFreePasid(regs, LINUX_5_10, pasid!, log);
    assert.equal(map.size, 0);
    assert.equal(host.global.has(hostPasid), false);
    vcmdFreePasid(regs, LINUX_5_10, 77, log);
    assert.deepEqual(log, ['IOMMU: dmar0: Invalid PASID']);
  });

  it('FREE_PASID of a PASID still in use by a device is refused', () => {
    const { regs, map } = vm();
    const log: string[] = [];
    const { pasid } = vcmdAllocPasid(regs, LINUX_5_10, log);
    map.map(pasid!, dsa0);
    vcmdFreePasid(regs, LINUX_5_10, pasid!, log);
    assert.deepEqual(log, ['IOMMU: dmar0: Invalid PASID']);
    assert.equal(map.size, 1);
  });

  it('carries PASIDs whose bits reach past bit 31 of VCRSP and VCMD (bits 35:16)', () => {
    // An identity VM whose guest already holds PASIDs 1..0x12344: the next one is 0x12345.
    const state = { vm: 'vm0', policy: 'identity' as const, globalMin: null, entries: Array.from({ length: 0x12344 }, (_, i) => ({ guest: i + 1, vcmd: true, users: [] })) };
    const map = PasidMap.restore(state, { devices: [dsa0] });
    const regs = new Registers();
    regs.handler = new VirtualCommand({ map, registers: regs });
    const log: string[] = [];
    assert.deepEqual(vcmdAllocPasid(regs, LINUX_5_10, log), { ret: 0, pasid: 0x12345 });
    assert.equal(regs.readq(LINUX_5_10.DMAR_VCRSP_REG), 0x12345n << 16n);
    vcmdFreePasid(regs, LINUX_5_10, 0x12345, log);
    vcmdFreePasid(regs, LINUX_5_10, 0x10001, log);
    assert.deepEqual(log, []);
    assert.equal(map.vmmGuestToHost(0x12345), undefined);
    assert.equal(map.vmmGuestToHost(0x10001), undefined);
    assert.equal(map.size, 0x12344 - 1);
  });

  it('keeps VCRSP.IP set while the VMM works; the guest polls until it clears', () => {
    const { regs, vc } = vm({ deferred: true });
    let seen = 0;
    regs.onPoll = () => {
      if (vc.inProgress && ++seen === 3) vc.complete(); // the host allocator answers during the third poll
    };
    regs.polls = 0;
    assert.deepEqual(vcmdAllocPasid(regs, LINUX_5_10, []), { ret: 0, pasid: 1 });
    assert.equal(regs.polls, 3);
  });

  it('ignores a VCMD write while a command is in progress, and says so', () => {
    const { regs, vc } = vm({ deferred: true });
    regs.writeq(LINUX_5_10.DMAR_VCMD_REG, VCMD_CMD_ALLOC);
    regs.writeq(LINUX_5_10.DMAR_VCMD_REG, VCMD_CMD_ALLOC);
    assert.deepEqual(vc.findings.map((f) => f.code), ['vcmd-write-while-busy']);
    assert.equal(regs.readq(LINUX_5_10.DMAR_VCRSP_REG), VCMD_VRSP_IP);
    assert.equal(vc.complete()?.guestPasid, 1);
    assert.equal(vc.complete(), undefined);
  });

  it('answers an unknown opcode with a status the guest reports as unexpected', () => {
    const { regs, vc } = vm();
    regs.writeq(LINUX_5_10.DMAR_VCMD_REG, 0x3n);
    const res = waitNotInProgress(regs, LINUX_5_10);
    assert.equal(LINUX_5_10.VCMD_VRSP_SC(res), 1n);
    assert.deepEqual(vc.findings.map((f) => f.code), ['vcmd-unsupported']);
  });

  it('speaks the layout before 4d99efb229e6 too, for guests of that time', () => {
    const { regs, map } = vm({ layout: VCMD_LAYOUT_VTD_3_1, split: new PasidSplit(2) }); // one local PASID
    const log: string[] = [];
    assert.equal(regs.readq(BEFORE_4D99EFB229E6.DMAR_VCCAP_REG) & DMA_VCS_PAS, DMA_VCS_PAS);
    assert.deepEqual(vcmdAllocPasid(regs, BEFORE_4D99EFB229E6, log), { ret: 0, pasid: 1 });
    assert.deepEqual(vcmdAllocPasid(regs, BEFORE_4D99EFB229E6, log), { ret: -ENOSPC });
    vcmdFreePasid(regs, BEFORE_4D99EFB229E6, 1, log);
    assert.deepEqual(log, ['IOMMU: dmar0: No PASID available']);
    assert.equal(map.size, 0);
  });

  it('shows why the layouts must match: a 5.10 guest on the old layout reads PASID 0 as a success', () => {
    const { regs, map } = vm({ layout: VCMD_LAYOUT_VTD_3_1 });
    // The guest's VCMD write lands on the old VCCAP offset and its VCRSP poll reads the old VCMD register.
    assert.deepEqual(vcmdAllocPasid(regs, LINUX_5_10, []), { ret: 0, pasid: 0 });
    assert.equal(map.size, 0);
  });
});
