import type { Permissions, StaleUse, TranslationOk, WalkStep } from './types';

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

/** A copy of a successful translation with some fields changed (results are immutable). */
export function translationWith(r: TranslationOk, changes: { source?: TranslationOk['source']; stale?: StaleUse; address?: number }): TranslationOk {
  return new Translated(changes.address ?? r.address, r.pageSize, r.perms, changes.source ?? r.source, r.did, changes.stale ?? r.stale, r.trace, r.reads);
}
