/**
 * What the VMM notices but must not throw for: a broken invariant of the guest/host PASID tables (seed 000,
 * reference §4.4 and §7.4), a guest that breaks the virtual-command protocol, page requests and responses
 * that match nothing, and configurations the seeds warn about. A real VMM
 * would go on, so the model goes on too and keeps the finding beside its state, as the driver model keeps
 * its `DriverFinding`s beside dmesg (src/core/driver/findings.ts).
 */
export type VmmFindingCode =
  /** Two guest PASIDs of one VM map to the same host PASID: G-to-H is no longer a bijection. */
  | 'not-bijective'
  /** A host PASID was handed out while a device still had it bound or the CPU table still mapped it. */
  | 'host-pasid-reused'
  /** A host PASID went back to the host allocator while still bound or mapped: the next allocation reuses it. */
  | 'host-pasid-freed-while-attached'
  /** A host PASID entry is about to become present (or was bound) with no G-to-H entry leading to it. */
  | 'present-without-mapping'
  /** State left after unbind or teardown: a G-to-H entry, a user reference, a bind, a CPU-table entry. */
  | 'leftover'
  /** The guest wrote VCMD while the previous command was still in progress (VCRSP.IP set). */
  | 'vcmd-write-while-busy'
  /** The guest wrote a command the virtual command interface does not offer, or used it without VCCAP.PAS. */
  | 'vcmd-unsupported'
  /** A page request arrived for a host PASID with no guest mapping: answered invalid on the host. */
  | 'unmapped-page-request'
  /** A page response from the guest matched no request the VMM injected (stale or forged cookie). */
  | 'stale-page-response'
  /** One device model fed both guest-physical and IOVA mappings (seed 004). */
  | 'mixed-address-spaces'
  /** Guest IOVA and guest SVM on one device, which the hardware cannot do (seed 002's limitation). */
  | 'iova-and-svm'
  /**
   * An assigned function the guest programs with its own PASID, bound at a different host PASID with no
   * entry at the guest's: its DMA with the guest PASID finds nothing (seed 003: without a local/global split,
   * non-identity PASIDs work only where something translates them, the CPU for ENQCMD or a device model).
   */
  | 'guest-pasid-not-on-host';

export interface VmmFinding {
  readonly code: VmmFindingCode;
  /** The VM it concerns. */
  readonly vm: string;
  readonly message: string;
  readonly guestPasid?: number;
  readonly hostPasid?: number;
}
