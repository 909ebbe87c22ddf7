/**
 * Conditions the kernel's log cannot show byte for byte: a CPU spinning for ever (the watchdog speaks much
 * later, in a form the model cannot reproduce), a WARN splat (its registers and offsets depend on the build),
 * a silent misstep. The model keeps them here, beside the log, instead of throwing or inventing log lines.
 */
export interface DriverFinding {
  /**
   * `hang`: never returns; `warn`: a WARN_ON splat (the log shows its first line, `cut here`), after which
   * the kernel goes on; `silent`: the kernel goes on without a word, but what it did has an effect the log
   * does not show (a write into memory it does not own, a reserved code sent to a device).
   */
  readonly kind: 'hang' | 'warn' | 'silent';
  /** The kernel function that never returns, e.g. `qi_submit_sync`. */
  readonly function: string;
  /** The IOMMU unit (or, for a domain's page table, the domain) it concerns. */
  readonly unit: string;
  /** How many kernel log lines were printed when it happened: where it sits in dmesg. */
  readonly logLine: number;
  readonly message: string;
}
