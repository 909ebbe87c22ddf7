/**
 * Conditions where the kernel the model renders would not come back: a CPU spinning for ever, a BUG. The
 * kernel prints nothing that says so (the watchdog does, much later, in a form the model cannot reproduce
 * byte for byte), so the model keeps them here, beside the log, instead of throwing or inventing a log line.
 */
export interface DriverFinding {
  /** `hang`: never returns; `warn`: a WARN_ON splat, after which the kernel goes on. */
  readonly kind: 'hang' | 'warn';
  /** The kernel function that never returns, e.g. `qi_submit_sync`. */
  readonly function: string;
  /** The IOMMU unit (or, for a domain's page table, the domain) it concerns. */
  readonly unit: string;
  /** How many kernel log lines were printed when it happened: where it sits in dmesg. */
  readonly logLine: number;
  readonly message: string;
}
