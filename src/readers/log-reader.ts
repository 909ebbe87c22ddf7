import type { LogEvent } from './log-event';

/** What a reader knows about the line it is given besides its text. */
export interface LineInfo {
  readonly lineNo: number;
  readonly timestamp: string | null;
}

/**
 * The open end of a multi-line event: the decoder offers it each following line until it declines one
 * or says it is done. It may fill in the events it was returned with, or add events to that array (an
 * invalidation-queue error burst prints several errors, then the descriptors they share).
 *
 * Declining a line must leave the continuation as it was: when the declined line means nothing on its
 * own, the decoder offers it once more joined with the next line (it may be the head of a line that a
 * mail client or bug tracker wrapped). `done` is for a continuation that has all it expects; after a
 * decline the decoder ends the event anyway.
 */
export interface Continuation {
  absorb(msg: string, info: LineInfo): boolean;
  readonly done: boolean;
}

export interface ReadEvents {
  readonly events: LogEvent[];
  readonly more?: Continuation;
}

/**
 * - events: the line starts (or is) one or more events;
 * - 'context': recognised, but no event (boot information, fault status kept for the next fault);
 * - 'partial': the first part of an event that goes on in the next line (mail-wrapped, or a format that
 *   prints one record on two lines); the decoder joins the lines and asks again;
 * - null: not this reader's line.
 */
export type ReadResult = ReadEvents | 'context' | 'partial' | null;

/** One vendor's or tool's line formats. A reader may keep state between lines (a pending fault status). */
export interface LineReader {
  read(msg: string, info: LineInfo): ReadResult;
}

/**
 * Longest text a partial event may grow to by joining lines (and longest line the decoder holds back to
 * join); beyond that it is not a wrapped line.
 */
export const MAX_JOINED = 600;

export function events(...list: LogEvent[]): ReadEvents {
  return { events: list };
}
