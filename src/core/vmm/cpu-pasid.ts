import { fail } from '../driver/errors';
import type { VmmFinding } from './findings';
import type { HostPasidHolder } from './pasid-map';
import { PasidTrace } from './pasid-trace';

/** IA32_PASID (reference §7.3): the PASID ENQCMD puts in the descriptor it sends. */
export const MSR_IA32_PASID = 0xd93;
/** IA32_PASID bit 31: the PASID in bits 19:0 is valid. */
export const IA32_PASID_VALID = 0x8000_0000;
/** IA32_PASID bits 19:0. Bits 30:20 (and 63:32) are reserved; WRMSR refuses them, so ENQCMD never sees them. */
export const IA32_PASID_PASID_MASK = 0xf_ffff;

/**
 * The VMCS fields of Intel's VMX PASID translation: 64-bit control fields holding the addresses of the low
 * and the high PASID directory (encodings 0x2038 and 0x203a, SDM Vol. 3 Appendix B, quoted alike by several
 * VMMs' VMCS field lists). The layout of the directories and tables below them, and the exit reason of a miss, were
 * not found within this work's look-ups [unc]: the table here is a plain guest → host map, consulted the way
 * the hardware consults its structure, with a VM exit on a miss as reference §7.3 describes.
 */
export const VMCS_LOW_PASID_DIRECTORY_ADDRESS = 0x2038;
export const VMCS_HIGH_PASID_DIRECTORY_ADDRESS = 0x203a;

/** The device portal an ENQCMD writes its 64-byte descriptor to (a shared work queue). */
export interface EnqcmdPortal {
  readonly device: string;
}

export type EnqcmdResult =
  | {
      /** The PASID the device receives in the descriptor. */
      readonly hostPasid: number;
      readonly guestPasid: number;
      /** False when the VM runs without PASID translation: the guest's PASID goes to the device as is. */
      readonly translated: boolean;
      readonly portal: string;
    }
  | {
      /**
       * `#GP`: IA32_PASID is not valid (the SDM's ENQCMD fault: #GP(0) if IA32_PASID[31] = 0).
       * `vm-exit`: PASID translation found no entry for the guest PASID; the VMM gets to map it and resume.
       */
      readonly fault: '#GP' | 'vm-exit';
      readonly reason: string;
      readonly guestPasid?: number;
    };

/**
 * One VM's CPU PASID translation table: KVM's map of guest IA32_PASID values to host PASIDs, consulted on
 * every guest ENQCMD so the device sees the host PASID (reference §7.3; the research fork's
 * KVM_X86_SET_PASID_TRANSLATION MAP/UNMAP). It is a bijection like the IOMMU side's table, and while it maps
 * a host PASID that PASID must not be freed (it is a `HostPasidHolder` of the VM's `PasidMap`).
 */
export class CpuPasidTable implements HostPasidHolder {
  readonly holderName: string;
  readonly trace: PasidTrace;
  /** The "PASID translation" VM-execution control; off as in upstream KVM, where G = H is the only option. */
  readonly translation: boolean;
  private readonly toHost = new Map<number, number>();
  private readonly hostUsers = new Map<number, number>();

  constructor(
    readonly vm: string,
    opts: { readonly translation?: boolean; readonly trace?: PasidTrace } = {},
  ) {
    this.holderName = `the CPU PASID translation table of ${vm}`;
    this.translation = opts.translation ?? true;
    this.trace = opts.trace ?? new PasidTrace();
  }

  /** MAP: EBUSY if the guest PASID maps elsewhere or the host PASID already serves another guest PASID. */
  map(guest: number, host: number): void {
    checkPasid(guest, 'guest');
    checkPasid(host, 'host');
    const now = this.toHost.get(guest);
    if (now === host) return;
    if (now !== undefined) fail('EBUSY', `${this.vm}: guest PASID ${guest} already translates to host PASID ${now}`);
    const other = this.hostUsers.get(host);
    if (other !== undefined) fail('EBUSY', `${this.vm}: host PASID ${host} already serves guest PASID ${other}`);
    this.toHost.set(guest, host);
    this.hostUsers.set(host, guest);
  }

  /** UNMAP: ENOENT if there is nothing to unmap. */
  unmap(guest: number): void {
    const host = this.toHost.get(guest) ?? fail('ENOENT', `${this.vm}: guest PASID ${guest} has no CPU PASID translation`);
    this.toHost.delete(guest);
    this.hostUsers.delete(host);
  }

  /** The CPU's G-to-H lookup (fast, keyed), as ENQCMD makes it. */
  lookup(guest: number, device?: string): number | undefined {
    const to = this.toHost.get(guest);
    this.trace.record({ side: 'cpu', direction: 'G-to-H', kind: 'fast', vm: this.vm, from: guest, to, ...(device ? { device } : {}), why: 'ENQCMD' });
    return to;
  }

  /** Whether `guest` has an entry (the VMM's bookkeeping, not a CPU lookup: no trace). */
  maps(guest: number): boolean {
    return this.toHost.has(guest);
  }

  holds(hostPasid: number): boolean {
    return this.hostUsers.has(hostPasid);
  }

  entries(): { guest: number; host: number }[] {
    return [...this.toHost].sort(([a], [b]) => a - b).map(([guest, host]) => ({ guest, host }));
  }

  /** After the VM's teardown the table must be empty. */
  leftovers(): VmmFinding[] {
    return this.entries().map(({ guest, host }) => ({
      code: 'leftover' as const,
      vm: this.vm,
      message: `${this.vm}: the CPU PASID translation table still maps guest PASID ${guest} to host PASID ${host}`,
      guestPasid: guest,
      hostPasid: host,
    }));
  }
}

/**
 * A guest ENQCMD: the PASID comes from IA32_PASID, not from the descriptor software built. #GP when the MSR
 * is not valid; with PASID translation, the table gives the host PASID or the CPU exits to the VMM.
 */
export function submitEnqcmd(vm: CpuPasidTable, msrValue: number, portal: EnqcmdPortal): EnqcmdResult {
  if (!Number.isInteger(msrValue) || msrValue < 0 || msrValue > 0xffff_ffff) {
    fail('EINVAL', `IA32_PASID value ${msrValue} is not a 32-bit value (bits 63:32 are reserved)`);
  }
  if (msrValue < IA32_PASID_VALID) {
    return { fault: '#GP', reason: `ENQCMD to ${portal.device}: IA32_PASID (0x${msrValue.toString(16)}) has bit 31 (valid) clear` };
  }
  const guestPasid = msrValue & IA32_PASID_PASID_MASK;
  if (!vm.translation) return { hostPasid: guestPasid, guestPasid, translated: false, portal: portal.device };
  const hostPasid = vm.lookup(guestPasid, portal.device);
  if (hostPasid === undefined) {
    return { fault: 'vm-exit', reason: `ENQCMD to ${portal.device}: guest PASID ${guestPasid} has no PASID translation entry`, guestPasid };
  }
  return { hostPasid, guestPasid, translated: true, portal: portal.device };
}

/**
 * The guest kernel's answer to that #GP where it loads IA32_PASID lazily (reference §7.3: some Linux
 * versions populate the MSR on the first ENQCMD #GP, others at bind time [unc which]): if the task's mm has
 * a PASID, the MSR becomes valid with it and the instruction is retried; without one the #GP stands
 * (undefined).
 */
export function enqcmdGpFixup(mmPasid: number | undefined): number | undefined {
  if (mmPasid === undefined) return undefined;
  checkPasid(mmPasid, 'mm');
  return (IA32_PASID_VALID | mmPasid) >>> 0;
}

function checkPasid(pasid: number, what: string): void {
  if (!Number.isInteger(pasid) || pasid < 0 || pasid > IA32_PASID_PASID_MASK) fail('ERANGE', `${what} PASID ${pasid} is not a 20-bit PASID`);
}
