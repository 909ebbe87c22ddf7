import { formatPciAddress, parsePciAddress } from '../core/pci';

/**
 * The ATS, PRI and PASID extended capabilities of `lspci -vvv` (pciutils ls-ecaps.c), per device.
 * Other capabilities are skipped. Streaming: a device is complete at the next device header, a blank
 * line, or the end of input.
 */

export interface AtsCapability {
  offset: string;
  version: number | null;
  /** The raw Invalidate Queue Depth field; 0 means 32. */
  invalidateQueueDepth: number | null;
  /** Invalidations the device accepts in flight. */
  queueDepth: number | null;
  enabled: boolean | null;
  /** The raw STU field: the smallest translation is 2^STU pages of 4 KiB. */
  smallestTranslationUnit: number | null;
  smallestTranslationBytes: number | null;
}

export interface PriCapability {
  offset: string;
  version: number | null;
  enabled: boolean | null;
  reset: boolean | null;
  /** PRISta.RF: the device received a Response Failure and stopped. */
  responseFailure: boolean | null;
  /** PRISta.UPRGI: the device received a response for a PRG index it did not send. */
  unexpectedResponse: boolean | null;
  stopped: boolean | null;
  /** PRISta "PRG Response PASID Required" (printed by newer pciutils only). */
  responsePasidRequired: boolean | null;
  capacity: number | null;
  allocation: number | null;
}

export interface PasidCapability {
  offset: string;
  version: number | null;
  /** Max PASID Width, printed in hex by lspci (`14` is 20 bits). */
  widthBits: number | null;
  maxPasids: number | null;
  exec: boolean | null;
  priv: boolean | null;
  enabled: boolean | null;
  execEnabled: boolean | null;
  privEnabled: boolean | null;
}

export interface LspciDevice {
  /** 1-based line of the device header. */
  line: number;
  device: string;
  description: string;
  ats: AtsCapability | null;
  pri: PriCapability | null;
  pasid: PasidCapability | null;
  /** lspci could not read the extended capabilities (not run as root). */
  accessDenied: boolean;
  /** Plain-words remarks about the capability state. */
  notes: string[];
}

export interface LspciSummary {
  lines: number;
  devices: number;
  withAts: number;
  withPri: number;
  withPasid: number;
  accessDenied: number;
  /** Devices with none of ATS, PRI and PASID and readable capabilities: the ones the text output leaves out. */
  withNone: number;
  /** Devices with at least one `Capabilities:` line; none at all means plain `lspci`, not `lspci -vvv`. */
  withCapabilityList: number;
}

const HEADER = /^((?:[0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]) (.{0,300})$/;
const CAPABILITY = /^\s+Capabilities: \[([0-9a-fA-F]{1,4})(?: v(\d{1,2}))?\] (.{0,120})$/;
const FLAG = (name: string) => new RegExp(`\\b${name}([+-])`);

function flag(text: string, name: string): boolean | null {
  const m = FLAG(name).exec(text);
  return m ? m[1] === '+' : null;
}

function hexField(text: string, label: string, digits: number): number | null {
  const m = new RegExp(`${label}:\\s*([0-9a-fA-F]{1,${digits}})\\b`).exec(text);
  return m ? parseInt(m[1]!, 16) : null;
}

/** `SSSS:BB:DD.F` from lspci's address, including VMD domains of more than four hex digits. */
function deviceOf(text: string): string | null {
  const a = parsePciAddress(text);
  if (a) return formatPciAddress(a);
  const wide = /^([0-9a-fA-F]{5,8}):(.+)$/.exec(text);
  const b = wide ? parsePciAddress(wide[2]!) : undefined;
  return b ? formatPciAddress({ ...b, segment: parseInt(wide![1]!, 16) }) : null;
}

function notesFor(d: LspciDevice): string[] {
  const notes: string[] = [];
  if (d.ats && d.ats.enabled === false) notes.push('ATS is supported but not enabled: the IOMMU driver enables it only when the device is attached to a domain that uses the device TLB.');
  if (d.pri) {
    if (d.pri.responseFailure) notes.push('PRI received a Response Failure: the device has stopped sending page requests until PRI is reset.');
    if (d.pri.unexpectedResponse) notes.push('PRI received a response for a page request group it did not send (UPRGI).');
    if (d.pri.enabled && d.pri.allocation === 0) notes.push('PRI is enabled with an allocation of 0 outstanding requests.');
  }
  if (d.pasid && d.pasid.enabled === false && (d.pri?.enabled || d.ats?.enabled)) notes.push('PASID is supported but not enabled, so PASID-tagged DMA (SVA, PASID attach) will fault.');
  if (d.pri?.enabled && d.ats?.enabled === false) notes.push('PRI is enabled but ATS is not: page requests need ATS.');
  return notes;
}

/** Whether the text output lists the device: it has one of the capabilities, or they could not be read. */
export function isListed(d: LspciDevice): boolean {
  return Boolean(d.ats || d.pri || d.pasid || d.accessDenied);
}

export interface LspciReader {
  push(line: string, lineNo: number): LspciDevice[];
  end(totalLines?: number): LspciDevice[];
  summary(): LspciSummary;
}

export function createLspciReader(): LspciReader {
  const s: LspciSummary = { lines: 0, devices: 0, withAts: 0, withPri: 0, withPasid: 0, accessDenied: 0, withNone: 0, withCapabilityList: 0 };
  let current: LspciDevice | null = null;
  let capabilityList = false;
  let section: 'ats' | 'pri' | 'pasid' | null = null;

  function finish(out: LspciDevice[]): void {
    if (!current) return;
    current.notes = notesFor(current);
    s.devices++;
    if (current.ats) s.withAts++;
    if (current.pri) s.withPri++;
    if (current.pasid) s.withPasid++;
    if (current.accessDenied) s.accessDenied++;
    if (!isListed(current)) s.withNone++;
    if (capabilityList) s.withCapabilityList++;
    out.push(current);
    current = null;
    capabilityList = false;
    section = null;
  }

  function field(text: string): void {
    const d = current!;
    if (section === 'ats' && d.ats) {
      if (text.includes('ATSCap:')) {
        const q = hexField(text, 'Invalidate Queue Depth', 2);
        d.ats.invalidateQueueDepth = q;
        d.ats.queueDepth = q === null ? null : q === 0 ? 32 : q;
      } else if (text.includes('ATSCtl:')) {
        d.ats.enabled = flag(text, 'Enable');
        const stu = hexField(text, 'Smallest Translation Unit', 2);
        d.ats.smallestTranslationUnit = stu;
        d.ats.smallestTranslationBytes = stu === null || stu > 31 ? null : 4096 * 2 ** stu;
      }
    } else if (section === 'pri' && d.pri) {
      if (text.includes('PRICtl:')) {
        d.pri.enabled = flag(text, 'Enable');
        d.pri.reset = flag(text, 'Reset');
      } else if (text.includes('PRISta:')) {
        d.pri.responseFailure = flag(text, 'RF');
        d.pri.unexpectedResponse = flag(text, 'UPRGI');
        d.pri.stopped = flag(text, 'Stopped');
        d.pri.responsePasidRequired = flag(text, 'PASID');
      } else if (text.includes('Page Request Capacity:')) {
        d.pri.capacity = hexField(text, 'Page Request Capacity', 8);
        d.pri.allocation = hexField(text, 'Page Request Allocation', 8);
      }
    } else if (section === 'pasid' && d.pasid) {
      if (text.includes('PASIDCap:')) {
        d.pasid.exec = flag(text, 'Exec');
        d.pasid.priv = flag(text, 'Priv');
        const w = hexField(text, 'Max PASID Width', 2);
        d.pasid.widthBits = w;
        d.pasid.maxPasids = w === null || w > 20 ? null : 2 ** w;
      } else if (text.includes('PASIDCtl:')) {
        d.pasid.enabled = flag(text, 'Enable');
        d.pasid.execEnabled = flag(text, 'Exec');
        d.pasid.privEnabled = flag(text, 'Priv');
      }
    }
  }

  return {
    push(line: string, lineNo: number): LspciDevice[] {
      if (lineNo > s.lines) s.lines = lineNo;
      const out: LspciDevice[] = [];
      const text = line.length > 1000 ? line.slice(0, 1000) : line.replace(/\r$/, '');
      const header = HEADER.exec(text);
      if (header) {
        finish(out);
        const device = deviceOf(header[1]!);
        if (device) current = { line: lineNo, device, description: header[2]!, ats: null, pri: null, pasid: null, accessDenied: false, notes: [] };
        return out;
      }
      if (!current) return out;
      if (text.trim() === '') {
        finish(out);
        return out;
      }
      const cap = CAPABILITY.exec(text);
      if (cap || /^\s+Capabilities: /.test(text)) capabilityList = true;
      if (cap) {
        const offset = '0x' + cap[1]!.toLowerCase();
        const version = cap[2] !== undefined ? Number(cap[2]) : null;
        const name = cap[3]!;
        section = null;
        if (name.includes('(ATS)')) {
          section = 'ats';
          current.ats = { offset, version, invalidateQueueDepth: null, queueDepth: null, enabled: null, smallestTranslationUnit: null, smallestTranslationBytes: null };
        } else if (name.includes('(PRI)')) {
          section = 'pri';
          current.pri = { offset, version, enabled: null, reset: null, responseFailure: null, unexpectedResponse: null, stopped: null, responsePasidRequired: null, capacity: null, allocation: null };
        } else if (name.includes('(PASID)')) {
          section = 'pasid';
          current.pasid = { offset, version, widthBits: null, maxPasids: null, exec: null, priv: null, enabled: null, execEnabled: null, privEnabled: null };
        }
        return out;
      }
      if (/^\s+Capabilities: <access denied>/.test(text)) {
        current.accessDenied = true;
        return out;
      }
      if (section) field(text);
      return out;
    },
    end(totalLines?: number): LspciDevice[] {
      if (totalLines !== undefined && totalLines > s.lines) s.lines = totalLines;
      const out: LspciDevice[] = [];
      finish(out);
      return out;
    },
    summary(): LspciSummary {
      return { ...s };
    },
  };
}

/** One device in plain words, for `iommu-lab lspci`. */
export function describeLspciDevice(d: LspciDevice): string[] {
  const yn = (v: boolean | null, yes: string, no: string) => (v === null ? '?' : v ? yes : no);
  const out = [`${d.device} ${d.description}`];
  if (d.accessDenied) out.push('  extended capabilities not readable (run lspci as root)');
  if (d.ats) {
    const stu = d.ats.smallestTranslationBytes === null ? '?' : `${d.ats.smallestTranslationBytes / 1024} KiB`;
    out.push(`  ATS:   ${yn(d.ats.enabled, 'enabled', 'disabled')}, invalidate queue depth ${d.ats.queueDepth ?? '?'}, smallest translation ${stu}`);
  }
  if (d.pri) {
    const state = [d.pri.stopped ? 'stopped' : null, d.pri.responseFailure ? 'response failure' : null, d.pri.unexpectedResponse ? 'unexpected response' : null].filter(Boolean);
    out.push(`  PRI:   ${yn(d.pri.enabled, 'enabled', 'disabled')}, capacity ${d.pri.capacity ?? '?'}, allocation ${d.pri.allocation ?? '?'}${state.length ? `, ${state.join(', ')}` : ''}`);
  }
  if (d.pasid) {
    const n = d.pasid.maxPasids === null ? '' : ` (${d.pasid.maxPasids} PASIDs)`;
    out.push(
      `  PASID: ${d.pasid.widthBits ?? '?'}-bit${n}, execute ${yn(d.pasid.exec, 'supported', 'not supported')}, privileged ${yn(d.pasid.priv, 'supported', 'not supported')}, ` +
        `${yn(d.pasid.enabled, 'enabled', 'disabled')}${d.pasid.enabled ? ` (exec ${yn(d.pasid.execEnabled, 'on', 'off')}, priv ${yn(d.pasid.privEnabled, 'on', 'off')})` : ''}`,
    );
  }
  for (const n of d.notes) out.push(`  note:  ${n}`);
  return out;
}
