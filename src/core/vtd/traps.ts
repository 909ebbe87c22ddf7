import type { U64 } from '../u64';

/**
 * What a VMM sees of a VT-d unit it emulates: software's register writes and the invalidation descriptors the
 * queue fetches, before and after the unit acts on them (QEMU's MMIO and QI handlers are where it shadows).
 */
export interface VtdRegisterWrite {
  readonly offset: number;
  readonly name: string;
  readonly width: 32 | 64;
  readonly value: U64;
}

export interface VtdDescriptorEvent {
  readonly index: number;
  readonly type: number;
  readonly typeName: string;
  readonly qwords: readonly U64[];
  readonly fields: Readonly<Record<string, number>>;
}

export interface VtdTraps {
  /** Before a software register write takes effect; 'handled' means the trapper emulated it and the unit does nothing. */
  registerWrite?(w: VtdRegisterWrite): 'pass' | 'handled';
  /** After a write the unit handled took effect (observation). */
  registerWritten?(w: VtdRegisterWrite): void;
  /** Each descriptor the invalidation queue fetches, before the unit executes it; 'handled': the trapper completed it. */
  descriptor?(d: VtdDescriptorEvent): 'pass' | 'handled';
  /** After the unit executed a descriptor (its own caches already invalidated). */
  descriptorDone?(d: VtdDescriptorEvent): void;
}
