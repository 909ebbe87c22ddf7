import { parsePciAddress } from '../../core/pci';
import { diagnosticText } from '../../readers/debugfs';
import { parseAddress, walkImported, walkJson } from '../../readers/debugfs-report';
import { importDebugfsInputs } from '../debugfs-files';
import { choice, Exit, InputError, type Subcommand, UsageError } from '../framework';

export const walkCommand: Subcommand = {
  name: 'walk',
  summary: "translate an address through a real machine's tables (a debugfs dump), step by step",
  synopsis: '--debugfs DIR|FILE [--dmesg FILE] --device SSSS:BB:DD.F [--pasid N] [--write|--exec] [--priv] [--format text|json] ADDR',
  help: `Loads a debugfs dump as 'import-debugfs' does, then walks ADDR as the IOMMU would for a DMA
request from the device (with the PASID, when given): root entry, context entry, PASID directory and
table, each paging level; each step shows the entry's address, raw value, fields and what the hardware
concluded. The walk has no side effect (no A/D bits, no fault recorded).
The request (--device, ADDR, --pasid) is checked before the dump is read: a malformed one is bad usage.

Options:
  --debugfs PATH      the dump (a directory or a file; repeat for several files)
  --dmesg FILE        the kernel log of the same boot: its DMAR_DEBUG dumps place the PASID tables
  --device ADDR       the requester, as SSSS:BB:DD.F or BB:DD.F
  --pasid N           the PASID the request carries (decimal or 0x hex); none by default
  --write, --exec     the access (read by default)
  --priv              a privileged (supervisor) request; needs --pasid
  --format text|json  text (default) or one JSON object (below)

JSON output: {unit, device, request: {pasid, address, access, priv}, result, notes}, where result is
{ok: true, output, pageSize, perms, source, did, reads, stale, trace} or {ok: false, reason, reasonText,
recorded, reads, stale, trace}, and each step of trace is {structure, level, table, index, entryAddress,
raw, fields, check, ok}. Every address and 64-bit value is a 0x hex string (raw entry words with 16
digits), as in decode-log's JSON; pasid, pageSize, reason and the fields' small numbers are numbers.

Example:
  iommu-lab walk --debugfs dump --device 0000:6a:01.0 --pasid 5 --write 0x40000234`,
  failure: 'the address faults (the walk shows where), or a problem with the dump: it cannot be read,\nis not text, is empty or too large, holds no VT-d table, or does not hold the device or its tables',
  options: {
    debugfs: { type: 'string', multiple: true },
    dmesg: { type: 'string' },
    device: { type: 'string' },
    pasid: { type: 'string' },
    write: { type: 'boolean' },
    exec: { type: 'boolean' },
    priv: { type: 'boolean' },
    format: { type: 'string' },
  },
  minPositionals: 1,
  maxPositionals: 1,
  async run(args, io, state) {
    const format = choice('format', args.values.format, ['text', 'json'] as const, 'text');
    const dumps = args.values.debugfs as string[] | undefined;
    const device = args.values.device as string | undefined;
    const address = args.positionals[0]!;
    // Everything about the request is checked before the dump is read: those are usage errors.
    if (!dumps?.length) throw new UsageError('--debugfs DIR|FILE is required');
    if (!device) throw new UsageError('--device SSSS:BB:DD.F is required');
    if (!parsePciAddress(device)) throw new UsageError(`--device '${device}' is not a PCI address: SSSS:BB:DD.F or BB:DD.F`);
    if (!parseAddress(address)) throw new UsageError(`'${address}' is not an address: hex with 0x, or decimal, up to 64 bits`);
    if (args.values.write && args.values.exec) throw new UsageError('--write and --exec exclude each other');
    let pasid: number | undefined;
    const pasidText = args.values.pasid as string | undefined;
    if (pasidText !== undefined) {
      pasid = /^0x[0-9a-f]+$/i.test(pasidText) ? parseInt(pasidText, 16) : /^\d+$/.test(pasidText) ? parseInt(pasidText, 10) : NaN;
      if (!(pasid >= 0 && pasid < 2 ** 20)) throw new UsageError(`--pasid must be 0..0xfffff, not '${pasidText}'`);
    }
    if (args.values.dmesg === '-' && dumps.includes('-')) throw new UsageError('--dmesg - and a dump on stdin cannot both read it');
    if (args.values.priv && pasid === undefined) throw new UsageError('--priv needs --pasid: only PASID requests carry privilege');
    const imp = await importDebugfsInputs(dumps, state, args.values.dmesg as string | undefined);
    const outcome = walkImported(imp, {
      device,
      address,
      pasid,
      write: args.values.write === true,
      exec: args.values.exec === true,
      priv: args.values.priv === true,
    });
    // The dump's problems first: they may be why the walk cannot be made.
    for (const d of imp.diagnostics) if (d.severity !== 'info') io.err(diagnosticText(d, state.input!) + '\n');
    // What is left to fail is the dump's: the device is not in it, or it has no tables to walk through.
    if (!outcome.ok) throw new InputError(state.input!, outcome.error);
    if (format === 'json') await io.out(JSON.stringify(walkJson(outcome)) + '\n');
    else await io.out(outcome.text.join('\n') + '\n');
    return outcome.result.ok ? Exit.ok : Exit.problem;
  },
};
