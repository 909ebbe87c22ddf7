import * as vscode from 'vscode';
import { agree, plural } from '../core/plural';
import { type DebugfsDiagnostic, type DebugfsInput, DebugfsParser } from '../readers/debugfs';
import { type DebugfsImport, importDebugfsSteps } from '../readers/debugfs-import';
import { type DebugfsReport, describeImport, parseAddress, reportText, walkImported } from '../readers/debugfs-report';
import { type DumpFiles, fileOfDiagnostic, findKernelLog, type KernelLog, readDumpFiles, readKernelLog, type SkippedLog } from './debugfs-files';
import { CommandIds, ContextKeys, OutputChannelNames } from './manifest';

/**
 * "IOMMU: Import debugfs Dump" and "Walk an Address in the debugfs Import". The import loads a real
 * machine's VT-d tables into the hardware model, writes what they hold to the "IOMMU Lab: debugfs" output
 * channel, puts the dump's problems on its files in the Problems panel and offers a walk; the last import
 * stays in memory for this window. Both commands take arguments, so that menus and tests run them without
 * questions, and return what they did.
 *
 * debugfs does not print the PASID directory, so the import places PASID tables where no entry of the dump
 * is unless a kernel log of the same boot says where they are: one found beside the dump (see
 * findKernelLog: `dmesg*`, `kern.log*`, `*.log` with CONFIG_DMAR_DEBUG's `pasid dir entry:` lines, in the
 * dump's folder or its parent) is used and named in the result; when tables had to be placed, the result
 * offers "Add Kernel Log…", which imports the same dump again with a log the user picks.
 *
 * The report goes to an output channel rather than a virtual document: the import and every walk after it
 * form one transcript, in order, that stays in the panel under the editor (next to the log or topology it
 * is compared with) without opening an editor tab per walk.
 */

export interface ImportOutcome {
  readonly ok: boolean;
  readonly message: string;
  /** The inputs read, by path (relative to a picked folder). */
  readonly files: readonly string[];
  readonly units: readonly string[];
  readonly devices: readonly { readonly device: string; readonly unit: string; readonly pasids: readonly number[] }[];
  readonly diagnostics: readonly DebugfsDiagnostic[];
  /** The kernel log used, as the message names it (`dmesg.txt`, `../kern.log`). */
  readonly kernelLog?: string;
  /** PASID tables at the addresses the kernel log gives, and those the import had to place. */
  readonly pasidTables?: { readonly fromLog: number; readonly placed: number };
  /** Files beside the dump that may have been its kernel log but could not be read, and why (also in the output). */
  readonly skippedLogs?: readonly SkippedLog[];
}

/** What `iommu.walkDebugfsAddress` accepts as its argument (any field left out is asked for). */
export interface WalkArgs {
  readonly device?: string;
  readonly address?: string | number;
  /** A PASID, or null for a request without one. */
  readonly pasid?: number | null;
  readonly write?: boolean;
  readonly exec?: boolean;
  readonly priv?: boolean;
}

export type WalkResultOutcome =
  | { readonly ok: true; readonly device: string; readonly unit: string; readonly translated: boolean; readonly output: string | null; readonly fault: { readonly reason: number; readonly text: string } | null; readonly text: readonly string[] }
  | { readonly ok: false; readonly error: string };

interface LastImport {
  readonly imp: DebugfsImport;
  readonly report: DebugfsReport;
  readonly label: string;
}

const SEVERITY: Record<DebugfsDiagnostic['severity'], vscode.DiagnosticSeverity> = {
  error: vscode.DiagnosticSeverity.Error,
  warning: vscode.DiagnosticSeverity.Warning,
  info: vscode.DiagnosticSeverity.Information,
};

const WALK_ACTION = 'Walk an Address…';
const REPORT_ACTION = 'Show Report';
const LOG_ACTION = 'Add Kernel Log…';

const hex = (n: number) => '0x' + n.toString(16);

export class DebugfsImports implements vscode.Disposable {
  readonly output = vscode.window.createOutputChannel(OutputChannelNames.debugfs, 'log');
  readonly diagnostics = vscode.languages.createDiagnosticCollection('iommu-debugfs');
  private last: LastImport | undefined;
  /** What the last import read (picked), for "Add Kernel Log…". */
  private lastPicked: readonly vscode.Uri[] | undefined;

  dispose(): void {
    this.output.dispose();
    this.diagnostics.dispose();
  }

  /** The last import of this window, if any. */
  get current(): DebugfsImport | undefined {
    return this.last?.imp;
  }

  /**
   * The import command. From the explorer: (clicked, selected); from a test: a Uri or a Uri[]; from the
   * palette: nothing, and a dialog asks for a folder or files.
   */
  async importDump(clicked?: unknown, selected?: unknown): Promise<ImportOutcome> {
    let picked = urisOf(selected) ?? urisOf(clicked);
    if (!picked) {
      picked = await vscode.window.showOpenDialog({
        canSelectFiles: true,
        canSelectFolders: true,
        canSelectMany: true,
        openLabel: 'Import',
        title: 'Import debugfs Dump: a copy of /sys/kernel/debug/iommu/intel, or some of its files',
      });
      if (!picked || picked.length === 0) return failed('cancelled');
    }
    return this.run(picked, 'beside');
  }

  /**
   * "Add Kernel Log…": imports the last dump again with a kernel log of the same boot, `log` or one the
   * user picks, whose table dumps put the PASID tables at their real addresses.
   */
  async addKernelLog(log?: unknown): Promise<ImportOutcome> {
    const picked = this.lastPicked;
    if (!picked) return failed('No debugfs dump is imported in this window.');
    let uri = urisOf(log)?.[0];
    if (!uri) {
      const chosen = await vscode.window.showOpenDialog({
        canSelectFiles: true,
        canSelectFolders: false,
        canSelectMany: false,
        openLabel: 'Add Kernel Log',
        title: 'Add Kernel Log: the dmesg of the same boot, with CONFIG_DMAR_DEBUG table dumps after faults',
      });
      if (!chosen || chosen.length === 0) return failed('cancelled');
      uri = chosen[0]!;
    }
    return this.run(picked, uri);
  }

  /** Reads and loads `picked`, with the kernel log found beside it or the one given. */
  private async run(picked: readonly vscode.Uri[], logFrom: 'beside' | vscode.Uri): Promise<ImportOutcome> {
    try {
      const loaded = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: 'Importing debugfs dump', cancellable: true },
        async (progress, token) => {
          progress.report({ message: 'reading files' });
          const files = await readDumpFiles(picked, token);
          if ('error' in files || token.isCancellationRequested) return files;
          progress.report({ message: logFrom === 'beside' ? 'looking for a kernel log beside the dump' : 'reading the kernel log' });
          const { log, skipped } = logFrom === 'beside' ? await findKernelLog(picked, files) : { log: await readKernelLog(logFrom), skipped: [] };
          if (token.isCancellationRequested) return { error: 'cancelled' };
          const imp = await loadInSlices(files.inputs, log, progress, token);
          if (!imp) return { error: 'cancelled' };
          return { files, log, skipped, imp, report: describeImport(imp) };
        },
      );
      if ('error' in loaded) return failed(loaded.error);
      if (!('imp' in loaded)) return failed('cancelled');
      const { files, log, skipped, imp, report } = loaded;
      const paths = files.inputs.map((i) => i.path);
      const empty = imp.units.length === 0 && imp.devices.length === 0;
      // A failed import keeps the last one, and the notes on its files.
      if (!empty) this.diagnostics.clear();
      this.showDiagnostics(files, log, imp.diagnostics);
      if (empty) {
        const message = `${files.label} holds no VT-d debugfs tables: ${imp.dump.unrecognisedLines} of its ${plural(imp.dump.lines, 'line')} ${agree(imp.dump.unrecognisedLines, 'was', 'were')} not understood (see the Problems panel).`;
        return failed(message, imp.diagnostics, paths);
      }
      this.last = { imp, report, label: files.label };
      this.lastPicked = picked;
      void vscode.commands.executeCommand('setContext', ContextKeys.debugfsImported, true);
      this.writeReport(files, log, skipped, report);
      const s = report.summary;
      const fromLog = imp.pasidTables.filter((p) => p.from !== undefined).length;
      const placed = imp.pasidTables.length - fromLog;
      const tables = [
        ...(fromLog > 0 ? [`${plural(fromLog, 'PASID table')} where the kernel log ${log!.label} puts ${agree(fromLog, 'it', 'them')}`] : []),
        ...(placed > 0 ? [`${plural(placed, 'PASID table')} placed by the import (debugfs does not print the PASID directory${log ? `, and ${log.label} has no table dump for ${agree(placed, 'it', 'them')}` : ''}: add the kernel log of the same boot for the real addresses)`] : []),
        ...(log && fromLog === 0 && placed === 0 ? [`the kernel log ${log.label} read, no PASID table to place`] : []),
      ];
      const message =
        `Imported ${files.label}: ${plural(s.units, 'IOMMU unit')}, ${plural(s.devices, 'device')}, ` +
        `${plural(s.pasidEntries, 'PASID entry', 'PASID entries')}, ${plural(s.domains, 'domain')}` +
        tables.map((t) => `; ${t}`).join('') +
        (imp.diagnostics.length > 0 ? `; ${plural(imp.diagnostics.length, 'note')} in the Problems panel.` : '.');
      const actions = placed > 0 ? [WALK_ACTION, LOG_ACTION, REPORT_ACTION] : [WALK_ACTION, REPORT_ACTION];
      void vscode.window.showInformationMessage(message, ...actions).then((choice) => {
        if (choice === WALK_ACTION) void vscode.commands.executeCommand(CommandIds.walkDebugfsAddress);
        if (choice === LOG_ACTION) void this.addKernelLog();
        if (choice === REPORT_ACTION) this.output.show(true);
      });
      return {
        ok: true,
        message,
        files: paths,
        units: imp.units.map((u) => u.unit.name),
        devices: report.devices.map((d) => ({ device: d.device, unit: d.unit, pasids: d.pasids.map((p) => p.pasid) })),
        diagnostics: imp.diagnostics,
        kernelLog: log?.label,
        pasidTables: { fromLog, placed },
        skippedLogs: skipped,
      };
    } catch (e) {
      // The readers never throw on content; this is a file that could not be read.
      return failed(`Could not import the dump: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private showDiagnostics(files: DumpFiles, log: KernelLog | undefined, diagnostics: readonly DebugfsDiagnostic[]): void {
    for (const uri of files.uris.values()) this.diagnostics.delete(uri);
    if (log) this.diagnostics.delete(log.uri);
    const byFile = new Map<string, { uri: vscode.Uri; list: vscode.Diagnostic[] }>();
    const lines = new Map<string, string[]>();
    for (const d of diagnostics) {
      const uri = log && d.file === log.input.path ? log.uri : fileOfDiagnostic(files, d.file);
      if (!uri) continue;
      const key = uri.toString();
      const input = uri === log?.uri ? log.input : files.inputs.find((i) => files.uris.get(i.path)?.toString() === key);
      if (input && !lines.has(key)) lines.set(key, input.text.split('\n'));
      const line = Math.max(0, d.line - 1);
      const length = (lines.get(key)?.[line] ?? '').replace(/\r$/, '').length;
      const diag = new vscode.Diagnostic(new vscode.Range(line, 0, line, length), d.message, SEVERITY[d.severity]);
      diag.source = 'IOMMU Lab';
      diag.code = 'debugfs';
      const entry = byFile.get(key) ?? byFile.set(key, { uri, list: [] }).get(key)!;
      entry.list.push(diag);
    }
    for (const { uri, list } of byFile.values()) this.diagnostics.set(uri, list);
  }

  private writeReport(files: DumpFiles, log: KernelLog | undefined, skipped: readonly SkippedLog[], report: DebugfsReport): void {
    const out = this.output;
    out.clear();
    out.appendLine(`Import debugfs Dump: ${files.label} (${files.inputs.map((i) => i.path).join(', ')})${log ? `, with the kernel log ${log.label}` : ''}`);
    if (skipped.length > 0) out.appendLine(`Not read as its kernel log: ${skipped.map((s) => `${s.file} (${s.why})`).join(', ')}`);
    out.appendLine('');
    out.append(reportText(report, files.label).join('\n') + '\n');
    out.show(true);
  }

  /** The walk command: translates through the last import, asking for what `args` leaves out. */
  async walk(args?: WalkArgs): Promise<WalkResultOutcome> {
    const last = this.last;
    if (!last) {
      const error = 'No debugfs dump is imported in this window.';
      void vscode.window.showInformationMessage(`${error} Import one first.`, 'Import debugfs Dump').then((c) => {
        if (c) void vscode.commands.executeCommand(CommandIds.importDebugfs);
      });
      return { ok: false, error };
    }
    const a = typeof args === 'object' && args !== null ? args : {};
    const asked = await this.ask(last, a);
    if (!asked) return { ok: false, error: 'cancelled' };
    let outcome: ReturnType<typeof walkImported>;
    try {
      outcome = walkImported(last.imp, asked);
    } catch (e) {
      outcome = { ok: false, error: `The walk failed (a bug in IOMMU Lab, please report): ${e instanceof Error ? e.message : String(e)}` };
    }
    if (!outcome.ok) {
      void vscode.window.showWarningMessage(outcome.error);
      return outcome;
    }
    this.output.appendLine('');
    this.output.append(outcome.text.join('\n') + '\n');
    this.output.show(true);
    const r = outcome.result;
    const what = `${outcome.device}${asked.pasid === undefined ? '' : ` PASID ${hex(asked.pasid)}`} ${asked.write ? 'write' : asked.exec ? 'execute' : 'read'} ${asked.address}`;
    if (r.ok) void vscode.window.showInformationMessage(`${what} → ${r.output} (walk in the "${OutputChannelNames.debugfs}" output)`);
    else void vscode.window.showWarningMessage(`${what} → fault ${hex(r.reason)}: ${r.reasonText}`);
    return {
      ok: true,
      device: outcome.device,
      unit: outcome.unit,
      translated: r.ok,
      output: r.ok ? r.output : null,
      fault: r.ok ? null : { reason: r.reason, text: r.reasonText },
      text: outcome.text,
    };
  }

  /** Asks for the device, PASID, access and address that `a` does not give; undefined when cancelled. */
  private async ask(last: LastImport, a: WalkArgs): Promise<{ device: string; address: string; pasid?: number; write: boolean; exec: boolean; priv: boolean } | undefined> {
    const report = last.report;
    let device = a.device;
    if (device === undefined) {
      const picked = await vscode.window.showQuickPick(
        report.devices.map((d) => ({
          label: d.device,
          description: d.unit,
          detail: d.context ? (d.pasids.length > 0 ? d.pasids.map((p) => `PASID ${hex(p.pasid)} ${p.type} (DID ${p.did})`).join(', ') : 'no PASID entries') : 'no context entry',
        })),
        { title: 'Walk an Address (1/4): the device that sends the request', placeHolder: `devices in ${last.label}`, matchOnDetail: true },
      );
      if (!picked) return undefined;
      device = picked.label;
    }
    const dev = report.devices.find((d) => d.device === device || d.device.endsWith(`:${device!}`));
    // A caller that names the device says all it wants: no PASID and a read unless it says otherwise.
    const interactive = a.device === undefined;
    let pasid: number | undefined = a.pasid ?? undefined;
    if (interactive && a.pasid === undefined) {
      const other = 'Another PASID…';
      const picked = await vscode.window.showQuickPick(
        [
          { label: 'No PASID', description: 'a request without PASID', pasid: undefined as number | undefined },
          ...(dev?.pasids ?? []).map((p) => ({ label: `PASID ${hex(p.pasid)}`, description: `${p.type}, DID ${p.did}`, pasid: p.pasid as number | undefined })),
          { label: other, description: 'type one', pasid: undefined },
        ],
        { title: 'Walk an Address (2/4): the PASID the request carries' },
      );
      if (!picked) return undefined;
      if (picked.label === other) {
        const typed = await vscode.window.showInputBox({
          title: 'Walk an Address (2/4): PASID',
          prompt: 'A PASID: hex with 0x, or decimal (0 to 0xfffff)',
          validateInput: (t) => (parsePasid(t) === undefined ? 'a PASID from 0 to 0xfffff: hex with 0x, or decimal' : undefined),
        });
        if (typed === undefined) return undefined;
        pasid = parsePasid(typed);
      } else pasid = picked.pasid;
    }
    let write = a.write ?? false;
    const exec = a.exec ?? false;
    if (interactive && a.write === undefined && a.exec === undefined) {
      const picked = await vscode.window.showQuickPick(['Read', 'Write'], { title: 'Walk an Address (3/4): the access' });
      if (!picked) return undefined;
      write = picked === 'Write';
    }
    let address = a.address === undefined ? undefined : String(a.address);
    if (address === undefined) {
      const mapped = firstMapped(report, dev?.device, pasid);
      address = await vscode.window.showInputBox({
        title: 'Walk an Address (4/4): the address the device sends (IOVA)',
        prompt: 'Hex with 0x, or decimal',
        value: mapped,
        placeHolder: '0x7f3a12345000',
        validateInput: (t) => (parseAddress(t) ? undefined : 'an address: hex with 0x (0x7f3a12345000) or decimal, up to 64 bits'),
      });
      if (address === undefined) return undefined;
    }
    return { device: device!, address, pasid, write, exec, priv: a.priv ?? false };
  }
}

/** How long the import may hold the extension host before it lets other work run. */
const SLICE_MS = 8;
const CHUNK_CHARS = 256 * 1024;

const breathe = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Parses and loads the dump a slice at a time, reporting progress by characters read, so that a dump of
 * tens of megabytes neither freezes the editor nor has to be waited out: undefined when cancelled.
 */
async function loadInSlices(inputs: readonly DebugfsInput[], log: KernelLog | undefined, progress: vscode.Progress<{ message?: string; increment?: number }>, token: vscode.CancellationToken): Promise<DebugfsImport | undefined> {
  const total = inputs.reduce((n, i) => n + i.text.length, 0) || 1;
  const parser = new DebugfsParser();
  let sliceStart = Date.now();
  const maybeBreathe = async () => {
    if (Date.now() - sliceStart < SLICE_MS) return;
    await breathe();
    sliceStart = Date.now();
  };
  for (const input of inputs) {
    parser.begin(input.path);
    for (let at = 0; at < input.text.length; at += CHUNK_CHARS) {
      if (token.isCancellationRequested) return undefined;
      const piece = input.text.slice(at, at + CHUNK_CHARS);
      parser.feed(piece);
      // Reading is about two thirds of the work; loading the tables the rest.
      progress.report({ message: `reading ${input.path || 'the dump'}`, increment: (piece.length / total) * 66 });
      await maybeBreathe();
    }
    parser.end();
  }
  progress.report({ message: log ? `loading the tables into the model, with the kernel log ${log.label}` : 'loading the tables into the model' });
  const steps = importDebugfsSteps(parser.finish(), log ? { dmesg: log.input } : {});
  for (;;) {
    if (token.isCancellationRequested) return undefined;
    const r = steps.next();
    if (r.done) return r.value;
    await maybeBreathe();
  }
}

/** A command that did nothing: the message is shown, unless the user cancelled. */
function failed(message: string, diagnostics: readonly DebugfsDiagnostic[] = [], files: readonly string[] = []): ImportOutcome {
  if (message !== 'cancelled') void vscode.window.showWarningMessage(message);
  return { ok: false, message, files, units: [], devices: [], diagnostics };
}

function urisOf(arg: unknown): vscode.Uri[] | undefined {
  if (arg instanceof vscode.Uri) return [arg];
  if (Array.isArray(arg) && arg.length > 0 && arg.every((u) => u instanceof vscode.Uri)) return arg as vscode.Uri[];
  return undefined;
}

function parsePasid(text: string): number | undefined {
  const t = text.trim();
  const n = /^0x[0-9a-f]{1,5}$/i.test(t) ? parseInt(t, 16) : /^\d{1,7}$/.test(t) ? Number(t) : NaN;
  return Number.isInteger(n) && n >= 0 && n < 2 ** 20 ? n : undefined;
}

/** The first mapped IOVA of the domain the device (and PASID) uses, to start the address box with. */
function firstMapped(report: DebugfsReport, device: string | undefined, pasid: number | undefined): string | undefined {
  const dev = report.devices.find((d) => d.device === device);
  const entry = dev?.pasids.find((p) => p.pasid === (pasid ?? 0));
  const domain = report.domains.find((d) => d.id === entry?.domain) ?? report.domains.find((d) => device !== undefined && d.users.some((u) => u.startsWith(device)));
  return domain?.ranges[0]?.iova;
}
