import { KernelError } from '../driver/errors';
import { U64 } from '../u64';
import type { VmmFinding, VmmFindingCode } from './findings';
import type { PasidMap } from './pasid-map';

/**
 * The VT-d virtual command interface: a guest under a vIOMMU with ECAP.VCS and VCCAP.PAS asks the VMM for
 * PASIDs instead of allocating its own (seed 000 step 2). Linux's guest side came with 24f27d32ab6b
 * ("iommu/vt-d: Enlightened PASID allocation") and is in 5.10 and 6.1 (vcmd_alloc_pasid, pasid.c) but gone
 * from 6.12 (reference §7.1); QEMU's side stayed in the vSVA RFCs and was never merged.
 */

/** ECAP.VCS, bit 44 (`ecap_vcs`): the unit has the virtual command registers. */
export const ECAP_VCS_BIT = 44;
/** VCCAP.PAS, bit 0 (`DMA_VCS_PAS`): PASID allocation is offered. */
export const VCCAP_PAS = 0x1;
/** VCMD opcodes, bits 7:0 (`VCMD_CMD_ALLOC`, `VCMD_CMD_FREE`). */
export const VCMD_CMD_ALLOC = 0x1;
export const VCMD_CMD_FREE = 0x2;
/** VCRSP.IP, bit 0 (`VCMD_VRSP_IP`): the command is in progress; the guest polls until it clears. */
export const VCRSP_IP = 0x1;

/** Where the registers are and how the fields of VCMD and VCRSP are laid out. */
export interface VcmdLayout {
  readonly name: string;
  readonly vccap: number;
  readonly vcmd: number;
  readonly vcrsp: number;
  /** The status code is VCRSP bits scMsb:1. */
  readonly scMsb: number;
  /** The 20-bit result PASID in VCRSP, and the 20-bit operand PASID in VCMD, start at these bits. */
  readonly resultLsb: number;
  readonly operandLsb: number;
  /** Status codes: success is 0; no PASID left for ALLOC; an invalid PASID for FREE. */
  readonly noPasidAvailable: number;
  readonly invalidPasid: number;
  /**
   * The status for an opcode the interface does not know. Linux has no name for it (it prints "Unexpected
   * error code"); 1 is what QEMU's vSVA RFC v11 answered (VTD_VCMD_UNDEFINED_CMD) [unc for VT-d 3.3].
   */
  readonly undefinedCommand: number;
}

/**
 * VT-d 3.3 (Sections 10.4.43-10.4.46): Linux since 4d99efb229e6 ("iommu/vt-d: Update the virtual command
 * related registers", 5.15; in 5.10 stable since 5.10.66), which is what /work/ksrc/linux-5.10 holds:
 * DMAR_VCMD_REG 0xe00, DMAR_VCRSP_REG 0xe10, DMAR_VCCAP_REG 0xe30 (include/linux/intel-iommu.h);
 * VCMD_VRSP_SC(e) = ((e) & 0xff) >> 1, VCMD_VRSP_SC_NO_PASID_AVAIL = VCMD_VRSP_SC_INVALID_PASID = 16,
 * VCMD_VRSP_RESULT_PASID(e) = ((e) >> 16) & 0xfffff, VCMD_CMD_OPERAND(e) = (e) << 16 (drivers/iommu/intel/pasid.h).
 */
export const VCMD_LAYOUT_VTD_3_3: VcmdLayout = {
  name: 'VT-d 3.3',
  vccap: 0xe30,
  vcmd: 0xe00,
  vcrsp: 0xe10,
  scMsb: 7,
  resultLsb: 16,
  operandLsb: 16,
  noPasidAvailable: 16,
  invalidPasid: 16,
  undefinedCommand: 1,
};

/**
 * Before 4d99efb229e6, as its diff removes it and as QEMU's vSVA RFC v11 (2021) emulated it:
 * VCCAP 0xe00, VCMD 0xe10, VCRSP 0xe20; VCMD_VRSP_SC(e) = ((e) >> 1) & 0x3 with 2 for no PASID / invalid
 * PASID; result and operand at bit 8.
 */
export const VCMD_LAYOUT_VTD_3_1: VcmdLayout = {
  name: 'VT-d 3.1',
  vccap: 0xe00,
  vcmd: 0xe10,
  vcrsp: 0xe20,
  scMsb: 2,
  resultLsb: 8,
  operandLsb: 8,
  noPasidAvailable: 2,
  invalidPasid: 2,
  undefinedCommand: 1,
};

/** How the handler updates the vIOMMU's registers (the lead's unit exposes `setRegisterValue`). */
export interface VcmdRegisterSink {
  setRegisterValue(offset: number, value: U64): void;
}

export interface VcmdOutcome {
  readonly command: 'alloc' | 'free' | 'unknown';
  /** The status code written to VCRSP. */
  readonly status: number;
  /** VCRSP once the command completed (IP clear). */
  readonly response: U64;
  /** ALLOC: the guest PASID returned and the host PASID behind it; FREE: the guest PASID freed. */
  readonly guestPasid?: number;
  readonly hostPasid?: number;
  /** Why the command failed, in the map's words. */
  readonly error?: string;
}

export interface VirtualCommandOptions {
  readonly map: PasidMap;
  readonly registers: VcmdRegisterSink;
  readonly layout?: VcmdLayout;
  /** VCCAP.PAS offered (default true). */
  readonly pasidAllocation?: boolean;
  /**
   * Leave VCRSP.IP set until `complete()` is called, as a VMM does while it waits for the host allocator;
   * otherwise the command completes inside the trapped write.
   */
  readonly deferred?: boolean;
}

/**
 * The VMM's side of the interface: a trapped VCMD write sets VCRSP.IP, runs the command against the VM's
 * `PasidMap` (ALLOC_PASID allocates a guest PASID and its host PASID, FREE_PASID releases both), then writes
 * the status and result to VCRSP with IP clear.
 */
export class VirtualCommand {
  readonly layout: VcmdLayout;
  readonly findings: VmmFinding[] = [];
  private readonly map: PasidMap;
  private readonly registers: VcmdRegisterSink;
  private readonly pasidAllocation: boolean;
  private readonly deferred: boolean;
  private pending: U64 | undefined;

  constructor(opts: VirtualCommandOptions) {
    this.map = opts.map;
    this.registers = opts.registers;
    this.layout = opts.layout ?? VCMD_LAYOUT_VTD_3_3;
    this.pasidAllocation = opts.pasidAllocation ?? true;
    this.deferred = opts.deferred ?? false;
    this.reset();
  }

  /** The registers at reset: VCCAP with PAS as configured, VCMD and VCRSP zero. */
  reset(): void {
    this.pending = undefined;
    this.registers.setRegisterValue(this.layout.vccap, new U64(0, this.pasidAllocation ? VCCAP_PAS : 0));
    this.registers.setRegisterValue(this.layout.vcmd, U64.ZERO);
    this.registers.setRegisterValue(this.layout.vcrsp, U64.ZERO);
  }

  get inProgress(): boolean {
    return this.pending !== undefined;
  }

  /**
   * A register write the vIOMMU trapped. Only VCMD is acted on (undefined for any other offset); returns
   * the outcome, or 'pending' when deferred, or undefined when the write was ignored (with a finding).
   */
  trap(event: { readonly registerWrite: { readonly offset: number; readonly value: U64 } }): VcmdOutcome | 'pending' | undefined {
    const { offset, value } = event.registerWrite;
    if (offset !== this.layout.vcmd) return undefined;
    if (!this.pasidAllocation) {
      this.note('vcmd-unsupported', `VCMD written (${value}) but VCCAP.PAS is not offered`);
      return undefined;
    }
    if (this.pending) {
      this.note('vcmd-write-while-busy', `VCMD written (${value}) while command ${this.pending} is in progress`);
      return undefined;
    }
    this.registers.setRegisterValue(this.layout.vcmd, value);
    this.registers.setRegisterValue(this.layout.vcrsp, new U64(0, VCRSP_IP));
    this.pending = value;
    return this.deferred ? 'pending' : this.complete();
  }

  /** Finishes the command in progress: VCRSP gets its status and result, IP clears. */
  complete(): VcmdOutcome | undefined {
    const command = this.pending;
    if (!command) return undefined;
    this.pending = undefined;
    const outcome = this.run(command);
    this.registers.setRegisterValue(this.layout.vcrsp, outcome.response);
    return outcome;
  }

  private run(command: U64): VcmdOutcome {
    const l = this.layout;
    const opcode = command.lo & 0xff;
    if (opcode === VCMD_CMD_ALLOC) {
      try {
        const { guest, host } = this.map.allocGuest();
        return { command: 'alloc', status: 0, response: this.response(0, guest), guestPasid: guest, hostPasid: host };
      } catch (e) {
        return { command: 'alloc', status: l.noPasidAvailable, response: this.response(l.noPasidAvailable), error: kernelMessage(e) };
      }
    }
    if (opcode === VCMD_CMD_FREE) {
      const guest = command.field(l.operandLsb + 19, l.operandLsb);
      try {
        this.map.freeGuest(guest);
        return { command: 'free', status: 0, response: this.response(0), guestPasid: guest };
      } catch (e) {
        return { command: 'free', status: l.invalidPasid, response: this.response(l.invalidPasid), guestPasid: guest, error: kernelMessage(e) };
      }
    }
    this.note('vcmd-unsupported', `VCMD opcode 0x${opcode.toString(16)} is not a command of the interface`);
    return { command: 'unknown', status: l.undefinedCommand, response: this.response(l.undefinedCommand) };
  }

  private response(status: number, pasid?: number): U64 {
    const l = this.layout;
    const v = U64.ZERO.withField(l.scMsb, 1, status);
    return pasid === undefined ? v : v.withField(l.resultLsb + 19, l.resultLsb, pasid);
  }

  private note(code: VmmFindingCode, message: string): void {
    this.findings.push({ code, vm: this.map.vm, message: `${this.map.vm}: ${message}` });
  }
}

/** A refusal of the map is a status code for the guest; anything else is a bug of the model and propagates. */
function kernelMessage(e: unknown): string {
  if (e instanceof KernelError) return e.message;
  throw e;
}
