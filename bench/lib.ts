// Shared by every benchmark. Each benchmark file is its own process (scripts/bench.mjs), prints one JSON
// line per figure, and measures its baseline in the same run, so figures compare across noisy machines
// as ratios. Benchmarks never fail the build.

export interface Figure {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** The same quantity for a reference operation measured in this run (see each benchmark for which). */
  readonly baseline: number;
  /** value / baseline. */
  readonly ratio: number;
}

const round = (v: number) => Number(v.toPrecision(4));

export function report(name: string, value: number, unit: string, baseline: number): Figure {
  const figure = { name, value: round(value), unit, baseline: round(baseline), ratio: round(value / baseline) };
  console.log(JSON.stringify(figure));
  return figure;
}

/** Keeps results alive so the JIT cannot drop the measured work. */
export let sink = 0;
export function consume(v: number): void {
  sink = (sink + v) | 0;
}

/**
 * Nanoseconds per operation: `round(ops)` performs `ops` operations; the median of several timed rounds
 * (after a warm-up round) is reported.
 */
export function nsPerOp(round: (ops: number) => void, ops: number, rounds = 9): number {
  round(ops);
  const samples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t = process.hrtime.bigint();
    round(ops);
    samples.push(Number(process.hrtime.bigint() - t) / ops);
  }
  samples.sort((a, b) => a - b);
  return samples[rounds >> 1]!;
}

/** Milliseconds for one run of `work`, median of `rounds` runs (each on fresh input from `setup`). */
export function msPerRun<T>(setup: () => T, work: (input: T) => void, rounds = 5): number {
  const samples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const input = setup();
    const t = process.hrtime.bigint();
    work(input);
    samples.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  samples.sort((a, b) => a - b);
  return samples[rounds >> 1]!;
}

/** Deterministic pseudo-random integers (xorshift32), so every run measures the same work. */
export function rng(seed = 0x9e3779b9): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/**
 * The reference the hardware-model targets are stated against: Map.get with a random number key on a
 * Map of 262,144 entries, in ns per lookup.
 */
export function mapGetBaselineNs(): number {
  const size = 262_144;
  const next = rng(42);
  const keys = new Float64Array(size);
  const map = new Map<number, number>();
  for (let i = 0; i < size; i++) {
    keys[i] = next() * 1024 + (next() & 1023); // spread over ~2^42 like page numbers
    map.set(keys[i]!, i);
  }
  const order = new Uint32Array(1 << 16);
  for (let i = 0; i < order.length; i++) order[i] = next() % size;
  return nsPerOp((ops) => {
    let acc = 0;
    for (let i = 0; i < ops; i++) acc += map.get(keys[order[i & 0xffff]!]!)!;
    consume(acc);
  }, 1 << 20);
}
