import type { ContextCacheEntry, IotlbBucket, PasidCacheEntry, PwcEntry, TlbEntry, Verified } from './caches';
import type { FaultRecorder } from './fault-recording';
import type { InterruptRemapper, InterruptRemapState } from './interrupt-remap';
import type { RegisterFile, RegValue } from './register-file';
import { GSTS, Reg, RTADDR_TTM_SCALABLE } from './registers';
import type { Translation } from './translation';

/** Everything of a unit but memory (which the machine snapshots): registers, latched state, caches. */
export interface VtdUnitState {
  readonly regs: readonly (readonly [number, RegValue])[];
  readonly frcdNext: number;
  readonly rootTable: number;
  readonly scalable: boolean;
  /** RTADDR.TTM as latched (absent in states captured before it was kept: then 01 or 00 from `scalable`). */
  readonly ttm?: number;
  readonly contexts: readonly ContextCacheEntry[];
  readonly pasids: readonly PasidCacheEntry[];
  readonly tlb: readonly { did: number; pasid: number; mode: IotlbBucket['mode']; entry: TlbEntry }[];
  readonly pwc: readonly { did: number; pasid: number; mode: IotlbBucket['mode']; level: number; key: number; entry: PwcEntry }[];
  /** Interrupt remapping: latched IRTA and the interrupt entry cache (absent in states captured before it existed). */
  readonly ir?: InterruptRemapState;
}

/** The blocks whose state a snapshot holds. */
export interface SnapshotParts {
  readonly regs: RegisterFile;
  readonly faults: FaultRecorder;
  readonly translation: Translation;
  readonly ir: InterruptRemapper;
}

type Mutable<T> = T extends readonly (infer E)[] ? E[] : never;

const copyDeps = <T extends Verified>(e: T): T => ({ ...e, deps: e.deps.slice() });

export function captureUnit(p: SnapshotParts): VtdUnitState {
  const { iotlb, lookup } = p.translation;
  const tlb: Mutable<VtdUnitState['tlb']> = [];
  const pwc: Mutable<VtdUnitState['pwc']> = [];
  for (const b of iotlb.buckets.values()) {
    for (const e of iotlb.leafEntries(b)) tlb.push({ did: b.did, pasid: b.pasid, mode: b.mode, entry: copyDeps(e) });
    b.pwc.forEach((m, level) => {
      for (const [key, e] of m) pwc.push({ did: b.did, pasid: b.pasid, mode: b.mode, level, key, entry: copyDeps(e) });
    });
  }
  return {
    regs: p.regs.entries(),
    frcdNext: p.faults.next,
    rootTable: lookup.rootTable,
    scalable: lookup.scalable,
    ttm: lookup.ttm,
    // Cached links between entries (the last PASID entry a context used, a PASID entry's IOTLB bucket) are
    // not state: they are rebuilt on use.
    contexts: lookup.cachedContexts().map((e) => ({ ...copyDeps(e), lastPasid: -1, lastPe: undefined })),
    pasids: lookup.cachedPasids().map((e) => ({ ...copyDeps(e), bucket: undefined })),
    tlb,
    pwc,
    ir: p.ir.capture(),
  };
}

export function restoreUnit(p: SnapshotParts, s: VtdUnitState): void {
  const { iotlb, lookup } = p.translation;
  p.regs.replace(s.regs);
  // TES is latched from GSTS as the registers come back (states have always held GSTS, never a copy of TES).
  p.translation.tes = ((p.regs.get(Reg.GSTS).lo >>> GSTS.TES) & 1) === 1;
  p.faults.next = s.frcdNext;
  lookup.rootTable = s.rootTable;
  lookup.scalable = s.scalable;
  lookup.ttm = s.ttm ?? (s.scalable ? RTADDR_TTM_SCALABLE : 0);
  lookup.reload(
    s.contexts.map((e) => ({ ...e, deps: e.deps.slice(), lastPasid: -1, lastPe: undefined })),
    s.pasids.map((e) => ({ ...e, deps: e.deps.slice(), bucket: undefined })),
  );
  iotlb.clear();
  for (const t of s.tlb) iotlb.insert(iotlb.bucket(t.did, t.pasid, t.mode), { ...t.entry, deps: t.entry.deps.slice() });
  for (const e of s.pwc) iotlb.insertPwc(iotlb.bucket(e.did, e.pasid, e.mode), e.level, e.key, { ...e.entry, deps: e.entry.deps.slice() });
  p.ir.restore(s.ir);
}
