// Shared by every benchmark. Each benchmark file is its own process (scripts/bench.mjs), prints one JSON
// line per figure, and measures its baseline in the same run, so figures compare across noisy machines
// as ratios. Benchmarks never fail the build.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Figure {
  readonly name: string;
  /** null only for a figure of a native twin that could not be measured (see `note`). */
  readonly value: number | null;
  readonly unit: string;
  /**
   * The same quantity for a reference operation measured in this run (see each benchmark for which); null
   * when that reference is a native twin that could not be built or run here.
   */
  readonly baseline: number | null;
  /** value / baseline, or null when either is. */
  readonly ratio: number | null;
  /** Why a value or baseline is null. */
  readonly note?: string;
}

const round = (v: number) => Number(v.toPrecision(4));

export function report(name: string, value: number, unit: string, baseline: number): Figure {
  const figure = { name, value: round(value), unit, baseline: round(baseline), ratio: round(value / baseline) };
  console.log(JSON.stringify(figure));
  return figure;
}

/** A figure whose value or baseline could not be measured: printed with null there, and the reason. */
function reportMissing(name: string, value: number | null, unit: string, note: string): Figure {
  const figure = { name, value: value === null ? null : round(value), unit, baseline: null, ratio: null, note };
  console.log(JSON.stringify(figure));
  return figure;
}

// ---- native twins ----
//
// A native twin is a C program in bench/native/ doing the same work as a benchmark, the physical limit its
// figures are compared against. It is compiled with -O2 by the system's C compiler ($CC, else cc, gcc or
// clang) into a temporary directory the first time the benchmark asks for it (never into the checkout, and
// never by the build or the tests; the directory goes when the process exits), and run with a time limit,
// once per group of figures, right before the JavaScript figures compared with them so both see the same
// machine load. It prints one JSON line {"name","value","unit"} per figure (ns/op, median of 11 rounds after
// a warm-up, as nsPerOp) after checking translations it knows the answer to, and exits non-zero if one is
// wrong.
//
// Without a compiler (CI machines may have none), or if the twin fails to build, run or check itself, the
// figures compared with it still print, with "baseline": null, "ratio": null and a "note" saying why, and
// a line goes to stderr: the benchmark carries on and still exits 0.

/** A native twin's figures (ns/op by name), or why it has none. */
export type NativeTwin = { readonly ok: true; readonly figures: ReadonlyMap<string, number> } | { readonly ok: false; readonly why: string };

export interface NativeProgram {
  /** Runs the twin, with `group` as its argument when given (each twin says which groups it has). */
  measure(group?: string): NativeTwin;
}

const COMPILE_MS = 60_000;
const RUN_MS = 120_000;

/** The native twin `bench/native/<source>`, built on first use (see above). */
export function nativeProgram(source: string): NativeProgram {
  let exe: string | { why: string } | undefined;
  return {
    measure(group) {
      exe ??= build(source);
      const twin = typeof exe === 'string' ? run(exe, group) : { ok: false as const, why: exe.why };
      if (!twin.ok) process.stderr.write(`bench: native twin ${source}${group ? ' ' + group : ''}: ${twin.why}\n`);
      return twin;
    },
  };
}

function build(source: string): string | { why: string } {
  // The bundle runs from out/bench/; the sources stay in bench/native/.
  const path = [join(__dirname, 'native', source), join(__dirname, '..', '..', 'bench', 'native', source)].find((p) => existsSync(p));
  if (path === undefined) return { why: `bench/native/${source} not found` };
  const compilers = process.env.CC ? [process.env.CC] : ['cc', 'gcc', 'clang'];
  const dir = mkdtempSync(join(tmpdir(), 'iommu-lab-native-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const exe = join(dir, source.replace(/\.c$/, ''));
  let why = `no C compiler found (tried ${compilers.join(', ')})`;
  for (const cc of compilers) {
    const r = spawnSync(cc, ['-O2', '-std=gnu11', '-o', exe, path], { encoding: 'utf8', timeout: COMPILE_MS });
    if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') continue;
    if (r.status === 0) return exe;
    why = r.error ? `${cc}: ${r.error.message}` : `${cc} failed: ${firstLines(r.stderr)}`;
  }
  return { why };
}

function run(exe: string, group: string | undefined): NativeTwin {
  const r = spawnSync(exe, group ? [group] : [], { encoding: 'utf8', timeout: RUN_MS, maxBuffer: 1 << 20 });
  if (r.error) return { ok: false, why: `did not finish: ${r.error.message}` };
  if (r.status !== 0) return { ok: false, why: `exited with ${r.status ?? r.signal}: ${firstLines(r.stderr)}` };
  if (r.stderr) process.stderr.write(r.stderr);
  const figures = new Map<string, number>();
  for (const line of r.stdout.split('\n')) {
    if (line.trim() === '') continue;
    let f: { name?: unknown; value?: unknown } | undefined;
    try {
      f = JSON.parse(line) as { name?: unknown; value?: unknown };
    } catch {
      return { ok: false, why: `printed a line that is not JSON: ${line.slice(0, 80)}` };
    }
    if (typeof f.name !== 'string' || typeof f.value !== 'number' || !(f.value > 0)) return { ok: false, why: `printed a line that is not a figure: ${line.slice(0, 80)}` };
    figures.set(f.name, f.value);
  }
  return { ok: true, figures };
}

function firstLines(text: string): string {
  return text.trim().split('\n').slice(0, 3).join(' / ') || '(no message)';
}

/**
 * `value` (this run's JavaScript figure, in `unit`) against the native twin's figure `nativeName`: baseline =
 * native, ratio = JS / native. Without the twin (or that figure), baseline and ratio are null, with a note.
 */
export function reportVsNative(name: string, value: number, unit: string, twin: NativeTwin, nativeName: string): Figure {
  const native = twin.ok ? twin.figures.get(nativeName) : undefined;
  if (native !== undefined) return report(name, value, unit, native);
  return reportMissing(name, value, unit, twin.ok ? `the native twin printed no ${nativeName}` : `native twin not measured: ${twin.why}`);
}

/** Two of a native twin's own figures, one against the other (null value and baseline without the twin). */
export function reportNative(name: string, unit: string, twin: NativeTwin, baselineName: string): Figure {
  const value = twin.ok ? twin.figures.get(name) : undefined;
  const baseline = twin.ok ? twin.figures.get(baselineName) : undefined;
  if (value !== undefined && baseline !== undefined) return report(name, value, unit, baseline);
  return reportMissing(name, null, unit, twin.ok ? `the native twin printed no ${value === undefined ? name : baselineName}` : `native twin not measured: ${twin.why}`);
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
