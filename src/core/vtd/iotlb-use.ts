import type { Permissions } from '../hw/types';
import { Perm } from './caches';
import { NESTED_SL_SHIFT } from './walk';

/** How a translation uses an IOTLB entry: the permission rules for a hit (Iotlb.lookup finds it across page sizes). */

/**
 * Whether a cached translation allows the access (an entry that does not is treated as a miss, and the
 * walk decides). Second-level permissions are plain R/W/X. First-level ones follow the CPU's rules: user
 * requests need U/S, writes need R/W unless a supervisor request runs with WPE = 0, execute needs X (which
 * the walk of an execute request computed from XD and NXE) and, for a supervisor request under SMEP, a
 * supervisor page. Nested entries carry the second stage's R/W/X in the SL bits as well. An entry cached by
 * a walk for another kind of request may lack an X that an execute request would get: that is a miss too.
 */
export function permitted(perms: number, need: number, fl: boolean, user: boolean, wpe: boolean, smep: boolean, nested: boolean, slDirty: boolean): boolean {
  // The rules come as separate arguments: an object of them would be allocated on every hit.
  // With second-level A/D (SSADE), a write through an entry cached while the leaf was clean walks again to set D.
  if (!fl) return (perms & need) === need && !(slDirty && need & Perm.W && !(perms & Perm.D));
  if (user && !(perms & Perm.U)) return false;
  if (need & Perm.W && !(perms & Perm.W) && (user || wpe)) return false;
  // A write through an entry cached before the leaf was dirty walks again, to set D (as a CPU TLB does).
  if (need & Perm.W && !(perms & Perm.D)) return false;
  if (need & Perm.X && !(perms & Perm.X)) return false;
  if (need & Perm.X && !user && smep && perms & Perm.U) return false;
  if (nested) {
    const sl = need & (Perm.R | Perm.W | Perm.X);
    if (((perms >>> SL_SHIFT) & sl) !== sl) return false;
  }
  return true;
}

/** In a nested IOTLB entry the second stage's R/W/X sit at these bits (the nested walk puts them there). */
export const SL_SHIFT = NESTED_SL_SHIFT;

/** One shared, frozen Permissions object per combination of R/W/X/U, so results allocate none. */
export const PERMS: readonly Permissions[] = Array.from({ length: 16 }, (_, p) =>
  Object.freeze({ read: (p & Perm.R) !== 0, write: (p & Perm.W) !== 0, exec: (p & Perm.X) !== 0, priv: (p & Perm.U) === 0 }),
);

/** The Permissions of a translation's Perm bits: one of the shared objects. */
export function permsOf(p: number): Permissions {
  // Nested entries: effective permission is what both stages allow.
  const sl = (p >>> SL_SHIFT) & 7;
  const eff = sl !== 0 ? p & (sl | Perm.U) : p;
  return PERMS[eff & 15]!;
}
