import { KernelError } from '../driver/errors';
import { U64 } from '../u64';
import type { VmmFinding, VmmFindingCode } from './findings';
import type { PasidMap } from './pasid-map';
import { VCCAP_PAS, VCMD_CMD_ALLOC, VCMD_CMD_FREE, VCMD_LAYOUT_VTD_3_3, VCRSP_IP, type VcmdLayout } from '../vtd/vcmd-registers';

/**
 * The VT-d virtual command interface: a guest under a vIOMMU with ECAP.VCS and VCCAP.PAS asks the VMM for
 * PASIDs instead of allocating its own (seed 000 step 2). Linux's guest side came with 24f27d32ab6b
 * ("iommu/vt-d: Enlightened PASID allocation") and is in 5.10 and 6.1 (vcmd_alloc_pasid, pasid.c) but gone
 * from 6.12 (reference §7.1); QEMU's side stayed in the vSVA RFCs and was never merged.
 */

export { ECAP_VCS_BIT, VCCAP_PAS, VCMD_CMD_ALLOC, VCMD_CMD_FREE, VCRSP_IP, type VcmdLayout, VCMD_LAYOUT_VTD_3_3, VCMD_LAYOUT_VTD_3_1 } from '../vtd/vcmd-registers';

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
