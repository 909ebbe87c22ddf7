import { FLOWS, type FlowRun } from '../../core/vmm/seed-flows';
import { choice, Exit, type Subcommand, UsageError } from '../framework';
import { batchedOutput } from '../line-stream';

const IDS = FLOWS.map((f) => f.id);

export const vmFlowCommand: Subcommand = {
  name: 'vm-flow',
  summary: "run one of the seed documents' VM flows (guest/host PASIDs, vSVM, ENQCMD, mdev, migration) step by step",
  synopsis: `[--format text|json] [--qemu-trace] ${IDS.join('|')}|list`,
  help: `Builds a host and VMs in the model and runs one of the flows the product comes from, printing every
step the VMM layer took (who did it: guest, vmm, host-driver, vdcm, cpu; which PASID on each hop; every
guest/host PASID lookup with its direction and whether it was a keyed lookup or a search), then what came
out (translations, PASIDs, findings).

Flows:
${FLOWS.map((f) => `  ${f.id.padEnd(8)}${f.title}`).join('\n')}
  list    these lines

Options:
  --format text|json  text (default) or one JSON object
  --qemu-trace        print only QEMU's vtd_* trace of what the VMM did, in QEMU's own text

Example:
  iommu-lab vm-flow 000`,
  failure: 'only an output that cannot be written (below): the flows read no input',
  options: { format: { type: 'string' }, 'qemu-trace': { type: 'boolean' } },
  minPositionals: 1,
  maxPositionals: 1,
  async run(args, io) {
    const format = choice('format', args.values.format, ['text', 'json'] as const, 'text');
    const id = args.positionals[0]!;
    const out = batchedOutput(io);
    if (id === 'list') {
      for (const f of FLOWS) out.add(`${f.id}\t${f.title}\n`);
      await out.flush();
      return Exit.ok;
    }
    const flow = FLOWS.find((f) => f.id === id);
    if (!flow) throw new UsageError(`no flow '${id}': choose one of ${IDS.join(', ')} (or 'list')`);
    const run = flow.run();
    if (args.values['qemu-trace']) out.add(run.qemuTrace);
    else if (format === 'json') out.add(JSON.stringify(run) + '\n');
    else out.add(text(run));
    await out.flush();
    return Exit.ok;
  },
};

function text(run: FlowRun): string {
  const lines = [`Flow ${run.id}: ${run.title}`, ''];
  const width = String(run.steps.length).length;
  run.steps.forEach((s, i) => {
    const pasid = s.pasid ? ` [${Object.entries(s.pasid).map(([k, v]) => `${k} ${v}`).join(', ')}]` : '';
    lines.push(`${String(i + 1).padStart(width)}  ${s.vm} ${s.side.padEnd(11)} ${s.action}: ${s.detail}${pasid}${s.path ? ` (${s.path})` : ''}`);
  });
  lines.push('', 'Result:');
  for (const o of run.outcomes) lines.push(`  ${o.what}: ${o.value}`);
  return lines.join('\n') + '\n';
}
