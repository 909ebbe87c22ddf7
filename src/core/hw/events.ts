/**
 * Every state change a user may want to step through, as typed events with a sequence number. Views follow
 * the stream, the debugger steps through it, and a recorded stream replays: the model is deterministic, so
 * the same inputs always give the same events. 64-bit values are hex strings so events cross process and
 * webview boundaries unchanged.
 */
import type { InterruptPosted, InterruptResult, StaleUse, WalkStep } from './types';

interface EventBase {
  /** Position in the stream, from 1. */
  readonly seq: number;
  /** The IOMMU unit, e.g. `dmar0`. */
  readonly unit: string;
}

export interface TranslationEvent extends EventBase {
  readonly type: 'translation';
  readonly sid: number;
  readonly pasid: number | null;
  readonly address: string;
  readonly access: 'read' | 'write' | 'exec';
  readonly requestKind: 'untranslated' | 'translation-request' | 'translated';
  readonly output: string | null;
  readonly source: string | null;
  readonly fault: number | null;
  readonly stale?: StaleUse;
  readonly trace?: readonly WalkStep[];
}

export interface FaultEvent extends EventBase {
  readonly type: 'fault';
  readonly sid: number;
  readonly pasid: number | null;
  readonly address: string;
  readonly access: 'read' | 'write' | 'exec';
  readonly reason: number;
  readonly reasonText: string;
  /** FRCD index the fault went to; null when suppressed (FPD) or dropped (overflow). */
  readonly frcdIndex: number | null;
  readonly outcome: 'recorded' | 'suppressed-fpd' | 'overflow' | 'reported-to-device';
  /** For an interrupt-remapping fault: the interrupt index the unit recorded (FI bits 63:48). */
  readonly interruptIndex?: number;
  readonly trace?: readonly WalkStep[];
}

/** An interrupt request (MSI write to 0xfeeXXXXX) processed by the interrupt-remapping hardware. */
export interface InterruptRemapEvent extends EventBase {
  readonly type: 'interrupt-remap';
  readonly sid: number;
  /** The message address and data as the device wrote them (hex). */
  readonly address: string;
  readonly data: string;
  /** Interrupt-remapping table index, for a remappable request. */
  readonly index: number | null;
  readonly outcome: InterruptResult['outcome'];
  /** Where the entry came from: memory (`walk`) or the interrupt entry cache. */
  readonly source: 'walk' | 'interrupt-entry-cache' | null;
  readonly vector: number | null;
  /** APIC destination (remapped, pass-through). */
  readonly destination: number | null;
  /** Posted-interrupt descriptor address (posted, hex). */
  readonly descriptor: string | null;
  readonly fault: number | null;
  readonly stale?: StaleUse;
  readonly trace?: readonly WalkStep[];
}

/**
 * An interrupt posted through a posted-format IRTE: the hardware's update of the descriptor (PIR[vector], ON)
 * and whether it sent the notification event (NV to NDST). Emitted before the request's `interrupt-remap` event.
 */
export interface PostedInterruptEvent
  extends EventBase,
    Pick<InterruptPosted, 'index' | 'descriptor' | 'vector' | 'urgent' | 'pirWasSet' | 'onWasSet' | 'suppressNotification' | 'notification' | 'notificationVector' | 'notificationDestination'> {
  readonly type: 'posted-interrupt';
  readonly sid: number;
}

export interface PageRequestEvent extends EventBase {
  readonly type: 'page-request';
  readonly sid: number;
  readonly pasid: number | null;
  readonly address: string;
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
  readonly priv: boolean;
  readonly prgIndex: number;
  readonly lastInGroup: boolean;
  /** `queued` at a PRQ index, `overflow` when the queue was full, `rejected` when the context forbids it. */
  readonly outcome: 'queued' | 'overflow' | 'rejected';
  readonly queueIndex: number | null;
  readonly descriptor: readonly string[];
}

export interface PageResponseEvent extends EventBase {
  readonly type: 'page-response';
  readonly sid: number;
  readonly pasid: number | null;
  readonly prgIndex: number;
  readonly code: number;
  readonly codeName: 'success' | 'invalid-request' | 'response-failure' | 'reserved';
  /** Who produced it: a Page Group Response descriptor, or the hardware itself on PRQ overflow. */
  readonly origin: 'descriptor' | 'hardware-overflow';
}

export interface InvalidationEvent extends EventBase {
  readonly type: 'invalidation';
  /** Queue index the descriptor was fetched from; -1 for a register-based invalidation. */
  readonly index: number;
  /**
   * For a register-based invalidation (VT-d CCMD, IOTLB): the register whose write ran it. `descriptorType`,
   * `granularity` and `fields` are then those of the equivalent descriptor, and `words` the register values.
   */
  readonly register?: string;
  readonly descriptorType: string;
  readonly granularity: string;
  readonly words: readonly string[];
  readonly fields: Readonly<Record<string, number | boolean | string>>;
  /** Cache entries dropped, per cache. */
  readonly dropped: Readonly<Record<string, number>>;
}

export interface QueueErrorEvent extends EventBase {
  readonly type: 'queue-error';
  readonly error: 'IQE' | 'ITE' | 'ICE';
  readonly index: number;
  /** IQE: the reason code the unit latched in IQERCD.IQEI [3:0] (0 when the hardware gives none). */
  readonly iqei?: number;
  /** ITE, ICE: the source ID latched in IQERCD (ITESID [47:32], ICESID [63:48]). */
  readonly sid?: number;
  readonly message: string;
}

export interface TableWriteEvent extends EventBase {
  readonly type: 'table-write';
  readonly address: string;
  readonly before: string;
  readonly after: string;
  /** What the writer said it was writing, e.g. `sl-pte`, `pasid-entry[2]`. */
  readonly what: string;
}

export interface RegisterWriteEvent extends EventBase {
  readonly type: 'register-write';
  readonly register: string;
  readonly offset: number;
  readonly value: string;
}

export interface InterruptEvent extends EventBase {
  readonly type: 'interrupt';
  readonly source: 'fault-event' | 'invalidation-completion' | 'page-request';
}

export type HwEvent =
  | TranslationEvent
  | FaultEvent
  | InterruptRemapEvent
  | PostedInterruptEvent
  | PageRequestEvent
  | PageResponseEvent
  | InvalidationEvent
  | QueueErrorEvent
  | TableWriteEvent
  | RegisterWriteEvent
  | InterruptEvent;

type Unsequenced<E> = E extends HwEvent ? Omit<E, 'seq'> : never;

export type EventListener = (e: HwEvent) => void;

/**
 * The stream. Producers check `active` before building an event, so a model nobody watches does not pay
 * for events at all.
 */
export class EventStream {
  private seq = 0;
  private readonly listeners = new Set<EventListener>();
  private recording: HwEvent[] | undefined;
  /** Told when the stream starts or stops having an audience, so producers can install or drop hooks. */
  onActiveChange: ((active: boolean) => void) | undefined;
  private recordLimit = 0;
  /** Events dropped from the recording because it reached its limit. */
  droppedFromRecording = 0;

  get active(): boolean {
    return this.listeners.size > 0 || this.recording !== undefined;
  }

  get lastSeq(): number {
    return this.seq;
  }

  emit(e: Unsequenced<HwEvent>): HwEvent {
    const event = { seq: ++this.seq, ...e } as HwEvent;
    if (this.recording) {
      if (this.recording.length < this.recordLimit) this.recording.push(event);
      else this.droppedFromRecording++;
    }
    for (const l of this.listeners) l(event);
    return event;
  }

  subscribe(listener: EventListener): () => void {
    const was = this.active;
    this.listeners.add(listener);
    if (!was) this.onActiveChange?.(true);
    return () => {
      this.listeners.delete(listener);
      if (!this.active) this.onActiveChange?.(false);
    };
  }

  /** Keeps up to `limit` events in memory (for replay, the debugger and tests). */
  startRecording(limit = 1_000_000): void {
    const was = this.active;
    this.recording = [];
    this.recordLimit = limit;
    this.droppedFromRecording = 0;
    if (!was) this.onActiveChange?.(true);
  }

  recorded(): readonly HwEvent[] {
    return this.recording ?? [];
  }

  stopRecording(): HwEvent[] {
    const r = this.recording ?? [];
    this.recording = undefined;
    if (!this.active) this.onActiveChange?.(false);
    return r;
  }

  /** For snapshots: the sequence counter is part of the state, so a restored model renumbers identically. */
  get sequence(): number {
    return this.seq;
  }
  set sequence(v: number) {
    this.seq = v;
  }
}
