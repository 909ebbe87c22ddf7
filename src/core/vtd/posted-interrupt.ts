import type { PhysicalMemory } from '../hw/memory';
import type { InterruptPosted } from '../hw/types';
import { hexPad } from '../u64';
import { decodeEntry, PI_DESCRIPTOR, reservedViolations } from './structures';

/**
 * VT-d interrupt posting, the hardware's side (spec 5.2, "Interrupt-Posting Hardware Operation"; the
 * descriptor's layout is structures.ts PI_DESCRIPTOR). For a request through a posted-format IRTE the
 * hardware reads the 64-byte descriptor at the entry's PDA and sets PIR[VV]. When ON is clear and the entry is
 * urgent (URG = 1) or SN is clear, it also sets ON and sends the notification event, an interrupt with vector
 * NV to the APIC ID in NDST. ON already set means a notification is still outstanding, so none is sent; SN set
 * with URG clear sends none and leaves ON clear (the vCPU picks up PIR the next time it processes it).
 *
 * The read, the update and the write are one atomic read-modify-write of the descriptor: Linux relies on it
 * (arch/x86/kernel/irq.c, posted MSIs: "the IOMMU does atomic swaps of the entire PID cache line when posting
 * interrupts and setting control bits"), and KVM changes SN, NV and NDST with cmpxchg on the control qword.
 * Here nothing can come between them: the words are read, changed and written back within the one request.
 *
 * A descriptor that cannot be accessed is fault 0x27; reserved bits set in it are fault 0x28, NDST's bits
 * other than 15:8 included in xAPIC mode (Linux's intel_posted_msi_init and KVM put the APIC ID in NDST[15:8]
 * then, as for an IRTE's DST). The hardware keeps no copy of a descriptor: every post reads it afresh.
 */

export const PI_DESC_BYTES = 64;

/** The descriptor's 16 32-bit words in memory order (qw0.lo, qw0.hi, ..., qw7.hi). */
export function readPiDescriptor(mem: PhysicalMemory, addr: number): number[] {
  const w = new Array<number>(16);
  for (let q = 0; q < 8; q++) {
    w[q * 2] = mem.readLo(addr + q * 8);
    w[q * 2 + 1] = mem.readHi(addr + q * 8);
  }
  return w;
}

/** The vectors whose PIR bit is set, ascending (PIR bit n, vector n, is bit n % 32 of 32-bit word n / 32). */
export function pendingVectors(words: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < 8; i++) {
    const w = words[i]! >>> 0;
    if (w === 0) continue;
    for (let b = 0; b < 32; b++) if ((w >>> b) & 1) out.push(i * 32 + b);
  }
  return out;
}

/** NDST as an APIC ID: bits 15:8 in xAPIC mode (IRTA.EIME = 0), all 32 bits in x2APIC mode. */
export function ndstApicId(ndst: number, eime: boolean): number {
  return eime ? ndst >>> 0 : (ndst >>> 8) & 0xff;
}

/** Reserved bits set in a descriptor, the xAPIC-mode NDST bits included; empty when it is clean. */
export function piDescriptorProblems(words: readonly number[], eime: boolean): string[] {
  const bad = reservedViolations(PI_DESCRIPTOR, words).slice();
  const ndst = words[9]! >>> 0;
  if (!eime && (ndst & 0xffff_00ff) !== 0) bad.push(`NDST 0x${hexPad(ndst, 8)}: bits 7:0 and 31:16 are reserved in xAPIC mode (IRTA.EIME = 0)`);
  return bad;
}

export interface Posting {
  /** What happened, as the result and the event report it. */
  readonly outcome: Pick<InterruptPosted, 'pirWasSet' | 'onWasSet' | 'suppressNotification' | 'notification' | 'notificationVector' | 'notificationDestination'>;
  /** The descriptor after the update, 16 words. */
  readonly after: readonly number[];
  /** The 64-bit words (0-7) the update changed. */
  readonly changed: readonly number[];
  /** What happened, in words (for the walk trace). */
  readonly text: string;
}

/** The update the hardware makes to a descriptor (as read, 16 words) for `vector`, per the rules above. */
export function post(words: readonly number[], vector: number, urgent: boolean, eime: boolean): Posting {
  const after = words.slice();
  const changed: number[] = [];
  const i = vector >>> 5;
  const bit = 1 << (vector & 31);
  const pirWasSet = (words[i]! & bit) !== 0;
  if (!pirWasSet) {
    after[i] = (words[i]! | bit) >>> 0;
    changed.push(i >>> 1);
  }
  const control = words[8]!;
  const onWasSet = (control & 1) === 1;
  const sn = (control & 2) === 2;
  const nv = (control >>> 16) & 0xff;
  const destination = ndstApicId(words[9]!, eime);
  let notification: InterruptPosted['notification'];
  let why: string;
  if (onWasSet) {
    notification = 'outstanding';
    why = 'ON = 1: a notification is already outstanding, none is sent';
  } else if (urgent || !sn) {
    notification = 'sent';
    after[8] = (control | 1) >>> 0;
    changed.push(4);
    why = `ON = 0 and ${urgent ? `URG = 1${sn ? ' (SN = 1 does not hold back an urgent interrupt)' : ''}` : 'SN = 0'}: ON set, notification event: vector 0x${hexPad(nv, 2)} to ${eime ? 'x2APIC' : 'APIC'} ID 0x${destination.toString(16)}`;
  } else {
    notification = 'suppressed';
    why = 'SN = 1 and URG = 0: the notification is suppressed, ON stays 0';
  }
  const text = `PIR[0x${hexPad(vector, 2)}] ${pirWasSet ? 'was already set' : 'set'}; ${why}`;
  return { outcome: { pirWasSet, onWasSet, suppressNotification: sn, notification, notificationVector: nv, notificationDestination: destination }, after, changed, text };
}

/** The descriptor's fields for a walk trace: ON, SN, NV, NDST, and the pending vectors of PIR. */
export function decodePiDescriptor(words: readonly number[]): Record<string, number | boolean | string> {
  const pending = pendingVectors(words);
  return { PIR: pending.length ? pending.map((v) => '0x' + hexPad(v, 2)).join(' ') : 'none', ...decodeEntry(PI_DESCRIPTOR, words) };
}
