import type { Permissions, StaleUse, TranslationOk, TranslationRecord, TranslationResult, WalkStep } from './types';

/**
 * A successful translation, as every vendor's unit returns it. `output` is formatted only when someone reads
 * it, so a translation on the hot path allocates this one object and nothing else.
 */
export class Translated implements TranslationOk {
  readonly ok = true as const;
  constructor(
    readonly address: number,
    readonly pageSize: number,
    readonly perms: Permissions,
    readonly source: TranslationOk['source'],
    readonly did: number | undefined,
    readonly stale: StaleUse | undefined,
    readonly trace: readonly WalkStep[] | undefined,
    readonly reads: number,
  ) {}

  get output(): string {
    return '0x' + this.address.toString(16);
  }

  toJSON(): TranslationOk {
    const { ok, output, address, pageSize, perms, source, did, stale, trace, reads } = this;
    return { ok, output, address, pageSize, perms, source, reads, ...(did !== undefined ? { did } : {}), ...(stale ? { stale } : {}), ...(trace ? { trace } : {}) };
  }
}

const NO_PERMS: Permissions = Object.freeze({ read: false, write: false, exec: false, priv: false });

export function newTranslationRecord(): TranslationRecord {
  // The address starts as a fraction so that the field holds doubles from the first store on (a field that
  // changes representation later makes the record's users deoptimize once).
  return { ok: false, address: 0.5, pageSize: 0, perms: NO_PERMS, source: 'walk', did: -1, reason: 0, reasonText: '', recorded: false, frcdIndex: -1, stale: undefined, trace: undefined, reads: 0 };
}

/** The result object a record stands for, as `translate` returns it. */
export function resultOf(r: TranslationRecord): TranslationResult {
  if (r.ok) return new Translated(r.address, r.pageSize, r.perms, r.source, r.did < 0 ? undefined : r.did, r.stale, r.trace, r.reads);
  return {
    ok: false,
    reason: r.reason,
    reasonText: r.reasonText,
    recorded: r.recorded,
    ...(r.frcdIndex >= 0 ? { frcdIndex: r.frcdIndex } : {}),
    ...(r.stale ? { stale: r.stale } : {}),
    ...(r.trace ? { trace: r.trace } : {}),
    reads: r.reads,
  };
}

/** A copy of a successful translation with some fields changed (results are immutable). */
export function translationWith(r: TranslationOk, changes: { source?: TranslationOk['source']; stale?: StaleUse; address?: number }): TranslationOk {
  return new Translated(changes.address ?? r.address, r.pageSize, r.perms, changes.source ?? r.source, r.did, changes.stale ?? r.stale, r.trace, r.reads);
}
