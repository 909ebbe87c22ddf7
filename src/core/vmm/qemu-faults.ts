import { U64 } from '../u64';
import type { Word64 } from './qemu-trace';

/**
 * Which fault reason QEMU's emulated VT-d records where the specification (and the hardware model,
 * src/core/vtd/) has another: a vIOMMU that "behaves as QEMU does" records these instead.
 *
 * QEMU 7.2 has one walk for every mode, vtd_iova_to_slpte, and a fault-reason enum (VTDFaultReason,
 * hw/i386/intel_iommu_internal.h) holding the legacy codes 0x01-0x0e, the interrupt-remapping ones, and of
 * the scalable-mode codes only VTD_FR_PASID_TABLE_INV (0x58) and VTD_FR_SM_INTERRUPT_ADDR (0x87). So in
 * scalable mode it reports the legacy reasons: a second-level entry without the permission (present or
 * not) is 0x05/0x06 where the spec has 0x79/0x85/0x86, a missing root or context entry 0x01/0x02 where it
 * has 0x39/0x41, and every PASID-directory or PASID-table problem 0x58.
 *
 * Line numbers are of hw/i386/intel_iommu.c in QEMU 7.2.22 (Debian's 1:7.2+dfsg-7+deb12u18, the QEMU of the
 * real run in test/fixtures/real-vm/). Later changes come from mst's pull for QEMU 10.0 (his tree's
 * for_upstream of 2025-01-15): a84e37af36ca "intel_iommu: Use the latest fault reasons defined by spec"
 * gives the PASID checks their own codes (0x50, 0x51, 0x58, 0x59, 0x5b) and makes 0x51, 0x59, 0x5b
 * qualified; eb9da9d26328 "intel_iommu: Implement stage-1 translation" (with the x-flts property,
 * aa68a9fbdb81) walks first-level tables with 0x70-0x73, 0x81, 0x85; 305e469b7188 "Check if the input
 * address is canonical" adds 0x80; 65c4f0999991 "Set accessed and dirty bits during stage-1 translation"
 * 0x91. a84e37af36ca leaves the second-level walk alone, and the stage-1 patches add a walk of their own
 * (vtd_iova_to_flpte, as their patch mails show it): a second-level permission fault stays 0x05/0x06.
 */

export interface QemuCode {
  readonly code: number;
  /** QEMU's VTD_FR_* name. */
  readonly name: string;
}

/** What QEMU does at the check where the specification faults. */
export type QemuOutcome =
  /** It records this code. */
  | { readonly kind: 'code'; readonly qemu: QemuCode }
  /** It records one code for reads, another for writes. */
  | { readonly kind: 'by-access'; readonly read: QemuCode; readonly write: QemuCode }
  /** It records one code when the top-level table cannot be read, another below it. */
  | { readonly kind: 'by-level'; readonly top: QemuCode; readonly below: QemuCode }
  /** It records one code for a request without PASID (through RID_PASID), another (or none) with one. */
  | { readonly kind: 'by-pasid'; readonly withoutPasid: QemuOutcome; readonly withPasid: QemuOutcome }
  /** It does not make the check: the request goes on as if it passed (and may fault later, or succeed). */
  | { readonly kind: 'unchecked'; readonly note: string }
  /** No such request reaches QEMU's translation (it has no such request type, or refuses the configuration). */
  | { readonly kind: 'unreachable'; readonly note: string }
  /**
   * First-level or nested PASID entries: QEMU 7.2 accepts PGTT 001b and 011b (vtd_pe_type_check, l.714-735)
   * and walks the entry's second-level pointer, SLPTPTR, as a second-level table (vtd_get_iova_pgtbl_base,
   * l.1011-1022); no first-level check runs, and a fault is a second-level one of that walk.
   */
  | { readonly kind: 'second-level-walk' };

export interface QemuFaultRow {
  /** The specification's reason, as the hardware model raises it. */
  readonly spec: number;
  readonly situation: string;
  readonly qemu72: QemuOutcome;
  /** Where QEMU 7.2 decides it. */
  readonly source: string;
  /** What later QEMU does, where it changed, with the commit. */
  readonly later?: { readonly qemu: QemuOutcome; readonly commit: string };
}

const c = (code: number, name: string): { kind: 'code'; qemu: QemuCode } => ({ kind: 'code', qemu: { code, name } });
const READ: QemuCode = { code: 0x06, name: 'VTD_FR_READ' };
const WRITE: QemuCode = { code: 0x05, name: 'VTD_FR_WRITE' };
const BY_ACCESS: QemuOutcome = { kind: 'by-access', read: READ, write: WRITE };
const PASID_TABLE_INV = c(0x58, 'VTD_FR_PASID_TABLE_INV');
const SL_WALK = 'vtd_iova_to_slpte l.1086-1095: an entry at any level without the access\'s R or W bit, present or not, is `is_write ? -VTD_FR_WRITE : -VTD_FR_READ`';
const SL_READ_ERROR: QemuOutcome = { kind: 'by-level', top: { code: 0x03, name: 'VTD_FR_CONTEXT_ENTRY_INV' }, below: { code: 0x07, name: 'VTD_FR_PAGING_ENTRY_INV' } };
// Reserved bits are checked after the permission (l.1096-1102): an entry with both problems is 0x05/0x06.
const SL_RSVD = 'vtd_iova_to_slpte l.1096-1102 (vtd_slpte_nonzero_rsvd: the masks of vtd_init l.3907-3925 hold the bits above the address width too), checked after the permission: an entry with reserved bits and without the permission is 0x05/0x06';
const STAGE1 = 'eb9da9d26328 (QEMU 10.0, with x-flts=on)';
const A84 = 'a84e37af36ca (QEMU 10.0)';
const FL_IN_72 = { kind: 'second-level-walk' } as const;

/** Every fault reason the hardware model raises on a DMA walk, and what QEMU records there instead. */
export const QEMU_FAULTS: readonly QemuFaultRow[] = [
  // Legacy mode: QEMU agrees with the specification except where noted.
  { spec: 0x01, situation: 'root entry not present', qemu72: c(0x01, 'VTD_FR_ROOT_ENTRY_P'), source: 'vtd_dev_to_context_entry l.1441-1445 (after trace vtd_re_not_present)' },
  { spec: 0x02, situation: 'context entry not present', qemu72: c(0x02, 'VTD_FR_CONTEXT_ENTRY_P'), source: 'vtd_dev_to_context_entry l.1457-1461 (after trace vtd_ce_not_present)' },
  { spec: 0x03, situation: 'context entry AW not in SAGAW, or TT not supported', qemu72: c(0x03, 'VTD_FR_CONTEXT_ENTRY_INV'), source: 'vtd_dev_to_context_entry l.1468-1483, vtd_ce_type_check l.963-990' },
  { spec: 0x04, situation: 'address beyond the domain\'s or the unit\'s width', qemu72: c(0x04, 'VTD_FR_ADDR_BEYOND_MGAW'), source: 'vtd_iova_to_slpte l.1062-1066' },
  { spec: 0x05, situation: 'write: a second-level entry without W (present or not)', qemu72: c(0x05, 'VTD_FR_WRITE'), source: SL_WALK },
  { spec: 0x06, situation: 'read: a second-level entry without R (present or not)', qemu72: c(0x06, 'VTD_FR_READ'), source: SL_WALK },
  { spec: 0x07, situation: 'a second-level table cannot be read', qemu72: SL_READ_ERROR, source: 'vtd_iova_to_slpte l.1073-1085: the top-level table unreadable is 0x03 ("invalid programming of context-entry"), a lower one 0x07' },
  { spec: 0x08, situation: 'the root table cannot be read', qemu72: c(0x08, 'VTD_FR_ROOT_TABLE_INV'), source: 'vtd_get_root_entry l.615-620' },
  { spec: 0x09, situation: 'the context table cannot be read', qemu72: c(0x09, 'VTD_FR_CONTEXT_TABLE_INV'), source: 'vtd_get_context_entry_from_root l.648-653' },
  { spec: 0x0a, situation: 'reserved bits in the root entry', qemu72: c(0x0a, 'VTD_FR_ROOT_ENTRY_RSVD'), source: 'vtd_root_entry_rsvd_bits_check l.1363-1384' },
  { spec: 0x0b, situation: 'reserved bits in the context entry', qemu72: c(0x0b, 'VTD_FR_CONTEXT_ENTRY_RSVD'), source: 'vtd_context_entry_rsvd_bits_check l.1389-1396; not in vtd_qualified_faults (l.1718-1736), so FPD does not suppress it' },
  { spec: 0x0c, situation: 'reserved bits (or an address beyond the width) in a second-level entry', qemu72: c(0x0c, 'VTD_FR_PAGING_ENTRY_RSVD'), source: SL_RSVD },
  { spec: 0x0d, situation: 'a translation request or translated request with TT != 01b', qemu72: { kind: 'unreachable', note: 'QEMU 7.2 has no ATS translation or translated requests from devices; VTD_FR_CONTEXT_ENTRY_TT is never returned' }, source: 'vtd_qualified_faults l.1732 is its only use' },
  { spec: 0x27, situation: 'a posted interrupt whose posted-interrupt descriptor cannot be read', qemu72: { kind: 'unreachable', note: 'QEMU 7.2 has no interrupt posting: CAP.PI is never set and no posted-interrupt descriptor is ever read' }, source: 'intel_iommu.c has no posted-interrupt code; vtd_irte_get l.3303-3390 decodes every IRTE in remapped format' },
  { spec: 0x28, situation: 'a posted interrupt whose posted-interrupt descriptor has reserved bits set', qemu72: { kind: 'unreachable', note: 'QEMU 7.2 has no interrupt posting (CAP.PI is never set)' }, source: 'intel_iommu.c has no posted-interrupt code' },
  { spec: 0x0e, situation: 'legacy mode: the translation lands in the interrupt range', qemu72: c(0x0e, 'VTD_FR_INTERRUPT_ADDR'), source: 'vtd_iova_to_slpte l.1118-1134; chosen by the x-scalable-mode property (s->scalable_mode), not RTADDR.TTM: on a QEMU with scalable mode on, a guest in legacy mode gets 0x87 (see qemu72Fault)' },

  // Scalable mode: root and context.
  { spec: 0x31, situation: 'a request with PASID while RTADDR.TTM is legacy', qemu72: { kind: 'unreachable', note: 'requests with PASID need x-pasid-mode, which vtd_decide_config refuses without scalable mode (l.4074-4077)' }, source: 'vtd_decide_config l.4074-4077' },
  { spec: 0x32, situation: 'a page request while RTADDR.TTM is legacy', qemu72: { kind: 'unreachable', note: 'QEMU 7.2 has no page requests (no PRS)' }, source: 'ECAP of vtd_init l.3867-3960 has no PRS' },
  { spec: 0x38, situation: 'the root entry cannot be read', qemu72: c(0x08, 'VTD_FR_ROOT_TABLE_INV'), source: 'vtd_get_root_entry l.615-620' },
  { spec: 0x39, situation: 'root entry (the half for this devfn) not present', qemu72: c(0x01, 'VTD_FR_ROOT_ENTRY_P'), source: 'vtd_root_entry_present l.599-607, vtd_dev_to_context_entry l.1441-1445' },
  { spec: 0x3a, situation: 'reserved bits in the root entry', qemu72: c(0x0a, 'VTD_FR_ROOT_ENTRY_RSVD'), source: 'vtd_root_entry_rsvd_bits_check l.1374-1384' },
  { spec: 0x40, situation: 'the context entry cannot be read', qemu72: c(0x09, 'VTD_FR_CONTEXT_TABLE_INV'), source: 'vtd_get_context_entry_from_root l.648-653' },
  { spec: 0x41, situation: 'context entry not present', qemu72: c(0x02, 'VTD_FR_CONTEXT_ENTRY_P'), source: 'vtd_dev_to_context_entry l.1457-1461' },
  { spec: 0x42, situation: 'reserved bits in the context entry', qemu72: c(0x0b, 'VTD_FR_CONTEXT_ENTRY_RSVD'), source: 'vtd_context_entry_rsvd_bits_check l.1398-1410 (unqualified in QEMU, l.1718-1736)' },
  { spec: 0x43, situation: 'invalid context entry (PASID directory size or pointer)', qemu72: { kind: 'unchecked', note: 'QEMU reads PDTS nowhere; the PASID directory is indexed without a bound' }, source: 'vtd_get_pdire_from_pdir_table l.743-760' },
  { spec: 0x44, situation: 'DTE clear for a translation or translated request', qemu72: { kind: 'unreachable', note: 'no ATS translation requests in QEMU 7.2' }, source: 'vtd_do_iommu_translate l.1824-1970 has one request type' },
  { spec: 0x45, situation: 'PASID Enable clear for a request with PASID', qemu72: { kind: 'unchecked', note: 'QEMU 7.2 does not read the context entry\'s PASIDE' }, source: 'vtd_do_iommu_translate l.1824-1970' },
  { spec: 0x46, situation: 'PASID beyond the directory size (PDTS)', qemu72: { kind: 'unchecked', note: 'the directory is indexed with any PASID (VTD_PASID_DIR_INDEX) and the walk goes on' }, source: 'vtd_get_pdire_from_pdir_table l.743-760' },
  { spec: 0x47, situation: 'PRE clear for a page request', qemu72: { kind: 'unreachable', note: 'QEMU 7.2 has no page requests' }, source: 'ECAP of vtd_init l.3867-3960 has no PRS' },
  { spec: 0x48, situation: 'RID_PASID beyond the directory size', qemu72: { kind: 'unchecked', note: 'RID_PASID indexes the directory without a bound' }, source: 'vtd_ce_get_rid2pasid_entry l.850-864' },

  // Scalable mode: PASID directory and table. Every check is VTD_FR_PASID_TABLE_INV, unqualified (FPD does not suppress it).
  { spec: 0x50, situation: 'the PASID directory entry cannot be read', qemu72: PASID_TABLE_INV, source: 'vtd_get_pdire_from_pdir_table l.754-756', later: { qemu: c(0x50, 'VTD_FR_PASID_DIR_ACCESS_ERR'), commit: A84 } },
  { spec: 0x51, situation: 'PASID directory entry not present', qemu72: PASID_TABLE_INV, source: 'vtd_get_pe_from_pasid_table l.834-836 (the RID_PASID entry, checked with the context entry) and vtd_ce_get_pasid_fpd l.896-898 (the request\'s PASID; a directory entry with FPD set returns before this check, l.891-894, and the walk goes on)', later: { qemu: c(0x51, 'VTD_FR_PASID_DIR_ENTRY_P'), commit: A84 } },
  { spec: 0x52, situation: 'reserved bits in the PASID directory entry', qemu72: { kind: 'unchecked', note: 'QEMU 7.2 checks no reserved bits of PASID directory entries' }, source: 'vtd_get_pdire_from_pdir_table l.743-760' },
  { spec: 0x58, situation: 'the PASID table entry cannot be read', qemu72: PASID_TABLE_INV, source: 'vtd_get_pe_in_pasid_leaf_table l.781-783', later: { qemu: c(0x58, 'VTD_FR_PASID_TABLE_ACCESS_ERR'), commit: A84 } },
  {
    spec: 0x59,
    situation: 'PASID table entry not present',
    qemu72: {
      kind: 'by-pasid',
      // The RID_PASID entry is checked with the context entry, on a context-cache miss (vtd_ce_rid2pasid_check).
      withoutPasid: PASID_TABLE_INV,
      withPasid: { kind: 'unchecked', note: 'for a request with PASID only the directory entry is checked (vtd_ce_get_pasid_fpd); vtd_get_iova_pgtbl_base/_level/_agaw ignore the error of vtd_ce_get_rid2pasid_entry and walk the not-present entry as read (a zero entry: PGTT 0 fails the type check first, l.789-791, leaving SLPTPTR 0 and AW 0, so a 2-level walk of a 30-bit space from address 0, 0x04 above 1 GiB)' },
    },
    source: 'vtd_get_pe_from_pasid_table l.843-845 via vtd_ce_rid2pasid_check l.1416-1426 from vtd_dev_to_context_entry l.1491-1494; the ignored errors at l.1011-1022, l.924-941, l.943-961',
    later: { qemu: c(0x59, 'VTD_FR_PASID_ENTRY_P'), commit: `${A84} (at the same checks)` },
  },
  { spec: 0x5a, situation: 'reserved bits in the PASID table entry', qemu72: { kind: 'unchecked', note: 'QEMU 7.2 checks no reserved bits of PASID entries' }, source: 'vtd_get_pe_in_pasid_leaf_table l.768-798' },
  { spec: 0x5b, situation: 'invalid PASID entry: reserved PGTT, pass-through without ECAP.PT, or an AW not in SAGAW', qemu72: PASID_TABLE_INV, source: 'vtd_get_pe_in_pasid_leaf_table l.788-796, vtd_pe_type_check l.714-735 (PGTT first-level and nested pass it: see second-level-walk)', later: { qemu: c(0x5b, 'VTD_FR_PASID_TABLE_ENTRY_INV'), commit: `${A84}; its AW check only for PGTT second-level; b291dae33d1d ("Make pasid entry type check accurate") refuses first-level without x-flts and nested` } },
  { spec: 0x5c, situation: 'execute request with ERE clear', qemu72: { kind: 'unreachable', note: 'QEMU 7.2 has no execute requests' }, source: 'vtd_do_iommu_translate l.1824-1970' },
  { spec: 0x5d, situation: 'supervisor request with SRE clear', qemu72: { kind: 'unreachable', note: 'QEMU 7.2 has no privileged requests from devices' }, source: 'vtd_do_iommu_translate l.1824-1970' },

  // Scalable mode: first-level and nested (no first-level walk in 7.2).
  { spec: 0x70, situation: 'a first-level table below the top cannot be read', qemu72: FL_IN_72, source: 'vtd_get_iova_pgtbl_base l.1011-1022', later: { qemu: c(0x70, 'VTD_FR_FS_PAGING_ENTRY_INV'), commit: STAGE1 } },
  { spec: 0x71, situation: 'first-level entry not present', qemu72: FL_IN_72, source: 'vtd_get_iova_pgtbl_base l.1011-1022', later: { qemu: c(0x71, 'VTD_FR_FS_PAGING_ENTRY_P'), commit: STAGE1 } },
  { spec: 0x72, situation: 'reserved bits in a first-level entry', qemu72: FL_IN_72, source: 'vtd_get_iova_pgtbl_base l.1011-1022', later: { qemu: c(0x72, 'VTD_FR_FS_PAGING_ENTRY_RSVD'), commit: STAGE1 } },
  { spec: 0x73, situation: 'the first-level top table (FLPTPTR) cannot be read', qemu72: FL_IN_72, source: 'vtd_get_iova_pgtbl_base l.1011-1022', later: { qemu: c(0x73, 'VTD_FR_PASID_ENTRY_FSPTPTR_INV'), commit: STAGE1 } },
  { spec: 0x74, situation: 'nested: a first-level pointer beyond the second-level width', qemu72: FL_IN_72, source: 'vtd_get_iova_pgtbl_base l.1011-1022' },
  { spec: 0x75, situation: 'nested: the first-level top table not readable through the second level', qemu72: FL_IN_72, source: 'vtd_get_iova_pgtbl_base l.1011-1022' },
  { spec: 0x76, situation: 'nested: a first-level table not readable through the second level', qemu72: FL_IN_72, source: 'vtd_get_iova_pgtbl_base l.1011-1022' },
  { spec: 0x77, situation: 'nested: a first-level table not writable through the second level (A/D update)', qemu72: FL_IN_72, source: 'vtd_get_iova_pgtbl_base l.1011-1022' },
  { spec: 0x80, situation: 'first level: address not canonical', qemu72: FL_IN_72, source: 'vtd_get_iova_pgtbl_base l.1011-1022', later: { qemu: c(0x80, 'VTD_FR_FS_NON_CANONICAL'), commit: '305e469b7188 (QEMU 10.0, with x-flts=on)' } },
  { spec: 0x81, situation: 'first level: a user request on a supervisor page', qemu72: FL_IN_72, source: 'vtd_get_iova_pgtbl_base l.1011-1022', later: { qemu: c(0x81, 'VTD_FR_FS_PAGING_ENTRY_US'), commit: `${STAGE1}: any entry without U/S, as QEMU has no supervisor requests` } },
  { spec: 0x82, situation: 'execute request without execute permission', qemu72: { kind: 'unreachable', note: 'QEMU 7.2 has no execute requests' }, source: 'vtd_do_iommu_translate l.1824-1970' },
  { spec: 0x90, situation: 'first level: A/D update needed with snooping off', qemu72: FL_IN_72, source: 'vtd_get_iova_pgtbl_base l.1011-1022' },
  { spec: 0x91, situation: 'first level: the A/D update failed', qemu72: FL_IN_72, source: 'vtd_get_iova_pgtbl_base l.1011-1022', later: { qemu: c(0x91, 'VTD_FR_FS_BIT_UPDATE_FAILED'), commit: '65c4f0999991 (QEMU 10.0, with x-flts=on)' } },

  // Scalable mode: second level. The legacy codes.
  { spec: 0x78, situation: 'a second-level table below the top cannot be read', qemu72: c(0x07, 'VTD_FR_PAGING_ENTRY_INV'), source: 'vtd_iova_to_slpte l.1073-1085' },
  { spec: 0x79, situation: 'second-level entry not present', qemu72: BY_ACCESS, source: SL_WALK },
  { spec: 0x7a, situation: 'reserved bits in a second-level entry', qemu72: c(0x0c, 'VTD_FR_PAGING_ENTRY_RSVD'), source: SL_RSVD },
  { spec: 0x7b, situation: 'the second-level top table (SLPTPTR) cannot be read', qemu72: c(0x03, 'VTD_FR_CONTEXT_ENTRY_INV'), source: 'vtd_iova_to_slpte l.1073-1082' },
  { spec: 0x7c, situation: 'second level: A/D update needed with snooping off', qemu72: { kind: 'unchecked', note: 'QEMU 7.2 sets no accessed or dirty bits (no ECAP.SSADS)' }, source: 'vtd_iova_to_slpte l.1049-1135 writes nothing' },
  { spec: 0x83, situation: 'address beyond the width (PASID entry AW or MGAW)', qemu72: c(0x04, 'VTD_FR_ADDR_BEYOND_MGAW'), source: 'vtd_iova_to_slpte l.1062-1066 (the width from the PASID entry, vtd_get_iova_agaw l.943-961)' },
  { spec: 0x84, situation: 'a second-level entry\'s address beyond the host width', qemu72: c(0x0c, 'VTD_FR_PAGING_ENTRY_RSVD'), source: SL_RSVD },
  { spec: 0x85, situation: 'write to a second-level mapping without W', qemu72: c(0x05, 'VTD_FR_WRITE'), source: SL_WALK },
  { spec: 0x86, situation: 'read of a second-level mapping without R', qemu72: c(0x06, 'VTD_FR_READ'), source: SL_WALK },
  { spec: 0x87, situation: 'scalable mode: the translation lands in the interrupt range', qemu72: c(0x87, 'VTD_FR_SM_INTERRUPT_ADDR'), source: 'vtd_iova_to_slpte l.1118-1134 (by the x-scalable-mode property, see 0x0e)' },
];

const BY_SPEC = new Map(QEMU_FAULTS.map((r) => [r.spec, r]));

/** The row for a specification code, or undefined when the model raises no such DMA fault. */
export function qemuFaultRow(spec: number): QemuFaultRow | undefined {
  return BY_SPEC.get(spec);
}

/**
 * vtd_qualified_faults (7.2 l.1718-1736): the codes a set FPD suppresses (vtd_report_fault l.1796-1810 then
 * traces vtd_fault_disabled instead of recording). An unlisted code, 0x0b included, is unqualified.
 */
const QUALIFIED_72 = new Set([0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0c, 0x0d, 0x0e, 0x87]);

export function qemu72Qualified(code: number): boolean {
  return QUALIFIED_72.has(code);
}

/** What the request was, as far as QEMU's choice of code depends on it. */
export interface QemuFaultRequest {
  readonly write: boolean;
  /** The request carries a PASID (scalable mode, x-pasid-mode). */
  readonly hasPasid?: boolean;
  /** For an unreadable second-level table: whether it is the top one (0x03) or a lower one (0x07). */
  readonly topLevel?: boolean;
  /** QEMU's x-scalable-mode property, which picks 0x87 over 0x0e whatever the guest's RTADDR.TTM. */
  readonly scalableModeProperty?: boolean;
}

/** QEMU 7.2's answer for one fault: the code it records, or why it records none. */
export type Qemu72Fault =
  | { readonly recorded: true; readonly code: number; readonly name: string; readonly qualified: boolean }
  | { readonly recorded: false; readonly kind: 'unchecked' | 'unreachable' | 'second-level-walk'; readonly note: string };

/**
 * The fault QEMU 7.2 records where the specification records `spec`, for this request; undefined for a
 * code that is not a DMA-translation fault of the model.
 */
export function qemu72Fault(spec: number, request: QemuFaultRequest): Qemu72Fault | undefined {
  const row = BY_SPEC.get(spec);
  if (!row) return undefined;
  if ((spec === 0x0e || spec === 0x87) && request.scalableModeProperty !== undefined) {
    const qemu = request.scalableModeProperty ? { code: 0x87, name: 'VTD_FR_SM_INTERRUPT_ADDR' } : { code: 0x0e, name: 'VTD_FR_INTERRUPT_ADDR' };
    return { recorded: true, ...qemu, qualified: qemu72Qualified(qemu.code) };
  }
  return resolve(row.qemu72, request);
}

function resolve(o: QemuOutcome, request: QemuFaultRequest): Qemu72Fault {
  switch (o.kind) {
    case 'code':
      return { recorded: true, ...o.qemu, qualified: qemu72Qualified(o.qemu.code) };
    case 'by-access': {
      const q = request.write ? o.write : o.read;
      return { recorded: true, ...q, qualified: qemu72Qualified(q.code) };
    }
    case 'by-level': {
      const q = request.topLevel ? o.top : o.below;
      return { recorded: true, ...q, qualified: qemu72Qualified(q.code) };
    }
    case 'by-pasid':
      return resolve(request.hasPasid ? o.withPasid : o.withoutPasid, request);
    case 'second-level-walk':
      return { recorded: false, kind: 'second-level-walk', note: 'QEMU 7.2 walks the PASID entry\'s SLPTPTR as a second-level table: the fault, if any, is one of that walk' };
    default:
      return { recorded: false, kind: o.kind, note: o.note };
  }
}

/** Where in QEMU's translation a fault is found: it decides what the fault record says of the PASID. */
export type QemuFaultStage =
  /** Root, context, PASID directory or PASID table (vtd_do_iommu_translate l.1874-1892: reported with is_pasid false, pasid 0). */
  | 'tables'
  /** The page walk (l.1944-1949: is_pasid = pasid != PCI_NO_PASID, after RID_PASID replaced "no PASID" in scalable mode, l.1902-1904). */
  | 'walk';

/** PCI_NO_PASID (-1) as QEMU's uint32_t holds it. */
export const QEMU_NO_PASID = 0xffff_ffff;

/**
 * The is_pasid and pasid QEMU 7.2 passes to vtd_report_dmar_fault. In scalable mode a walk fault of a
 * request without PASID is reported with the RID_PASID (PP set, so Linux prints `PASID 0x0` rather than
 * `NO_PASID`); in legacy mode with PCI_NO_PASID, of which the record keeps the low 16 bits (PV 0xffff).
 */
export function qemu72FaultPasid(stage: QemuFaultStage, scalable: boolean, requestPasid: number | null, ridPasid = 0): { isPasid: boolean; pasid: number } {
  if (stage === 'tables') return { isPasid: false, pasid: 0 };
  const pasid = requestPasid ?? (scalable ? ridPasid : QEMU_NO_PASID);
  return { isPasid: pasid !== QEMU_NO_PASID, pasid };
}

/**
 * The two qwords vtd_record_frcd (7.2 l.470-490) writes into a fault recording register and traces with
 * vtd_frr_new, before F is set: lo = the page (VTD_FRCD_FI, addr & ~0xfff); hi = SID (15:0), PP (31), FR
 * (39:32), PV (55:40: only 16 bits, VTD_FRCD_PV), T (62: set for a read). QEMU 7.2.14 and later have the
 * fixed VTD_FRCD_PP (a3c8d7e38550, "intel_iommu: fix FRCD construction macro"); before it PP sign-extended
 * over bits 63:31.
 */
export function qemuFaultRecord(f: { readonly sid: number; readonly addr: Word64; readonly fault: number; readonly isWrite: boolean; readonly isPasid: boolean; readonly pasid: number }): { hi: U64; lo: U64 } {
  if (!Number.isInteger(f.sid) || f.sid < 0 || f.sid > 0xffff) throw new RangeError(`fault record: sid ${f.sid} is not 16 bits`);
  if (!Number.isInteger(f.fault) || f.fault < 0 || f.fault > 0xff) throw new RangeError(`fault record: reason ${f.fault} is not 8 bits`);
  if (!Number.isInteger(f.pasid) || f.pasid < 0 || f.pasid > 0xffff_ffff) throw new RangeError(`fault record: pasid ${f.pasid} is not 32 bits`);
  const addr = f.addr instanceof U64 ? f.addr : U64.fromNumber(f.addr);
  const lo = new U64(addr.hi, (addr.lo & ~0xfff) >>> 0);
  const hiWord = (f.isWrite ? 0 : 0x4000_0000) | ((f.pasid & 0xffff) << 8) | f.fault;
  const loWord = (f.isPasid ? 0x8000_0000 : 0) | f.sid;
  return { hi: new U64(hiWord, loWord), lo };
}
