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
 * Map of 262,144 entries. Returns one measuring round (ns per lookup) so it can be interleaved with the
 * measured work (see `paired`).
 */
export function mapGetBaseline(): (ops: number) => void {
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
  return (ops) => {
    let acc = 0;
    for (let i = 0; i < ops; i++) acc += map.get(keys[order[i & 0xffff]!]!)!;
    consume(acc);
  };
}

/**
 * Measures `work` and `baseline` in alternating rounds and returns the median ns per operation of each,
 * so that both see the same machine load: on a shared machine, separate measurements drift apart.
 */
export function paired(work: (ops: number) => void, workOps: number, baseline: (ops: number) => void, baselineOps: number, rounds = 11): { value: number; baseline: number } {
  work(workOps);
  baseline(baselineOps);
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let t = process.hrtime.bigint();
    work(workOps);
    a.push(Number(process.hrtime.bigint() - t) / workOps);
    t = process.hrtime.bigint();
    baseline(baselineOps);
    b.push(Number(process.hrtime.bigint() - t) / baselineOps);
  }
  const median = (x: number[]) => x.sort((p, q) => p - q)[x.length >> 1]!;
  return { value: median(a), baseline: median(b) };
}
