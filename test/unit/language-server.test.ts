import * as assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import {
  createProtocolConnection,
  DiagnosticSeverity,
  DocumentDiagnosticRequest,
  type FullDocumentDiagnosticReport,
  HoverRequest,
  InitializeRequest,
  type InitializeResult,
  type MarkupContent,
  DidOpenTextDocumentNotification,
  DidChangeTextDocumentNotification,
  ExitNotification,
  InitializedNotification,
  type ProtocolConnection,
  ShutdownRequest,
  StreamMessageReader,
  StreamMessageWriter,
} from 'vscode-languageserver-protocol/node';

const root = join(__dirname, '../../..');

/** The language server as a real child process, spoken to over stdio the way any LSP client would. */
describe('language server process', () => {
  let server: ChildProcess;
  let connection: ProtocolConnection;
  let init: InitializeResult;
  const uri = 'file:///tmp/t.iommu';

  before(async () => {
    server = spawn(process.execPath, [join(root, 'dist/server.js'), '--stdio'], { stdio: ['pipe', 'pipe', 'inherit'] });
    connection = createProtocolConnection(new StreamMessageReader(server.stdout!), new StreamMessageWriter(server.stdin!));
    connection.listen();
    init = await connection.sendRequest(InitializeRequest.type, {
      processId: process.pid,
      rootUri: null,
      capabilities: {},
      workspaceFolders: null,
    });
    await connection.sendNotification(InitializedNotification.type, {});
  });

  after(async () => {
    await connection.sendRequest(ShutdownRequest.type);
    const exited = new Promise((resolve) => server.once('exit', resolve));
    await connection.sendNotification(ExitNotification.type);
    await exited;
    connection.dispose();
  });

  const diagnostics = async () =>
    ((await connection.sendRequest(DocumentDiagnosticRequest.type, { textDocument: { uri } })) as FullDocumentDiagnosticReport).items;

  it('announces itself and its pull-diagnostics and hover capabilities', () => {
    assert.equal(init.serverInfo?.name, 'IOMMU Topology Language Server');
    assert.ok(init.capabilities.diagnosticProvider);
    assert.equal(init.capabilities.hoverProvider, true);
  });

  it('reports lexical errors with range, code and source', async () => {
    await connection.sendNotification(DidOpenTextDocumentNotification.type, {
      textDocument: { uri, languageId: 'iommu-topology', version: 1, text: 'device 00:20.0 on dmar0\n' },
    });
    const items = await diagnostics();
    assert.equal(items.length, 1);
    assert.deepEqual(items[0], {
      range: { start: { line: 0, character: 7 }, end: { line: 0, character: 14 } },
      severity: DiagnosticSeverity.Error,
      code: 'bad-pci-address',
      source: 'iommu-lab',
      message: "device 0x20 is out of range (00-1f) in PCI address '00:20.0'",
    });
  });

  it('follows incremental edits: fixing the address clears the diagnostic', async () => {
    await connection.sendNotification(DidChangeTextDocumentNotification.type, {
      textDocument: { uri, version: 2 },
      contentChanges: [{ range: { start: { line: 0, character: 10 }, end: { line: 0, character: 11 } }, text: '1' }],
    });
    assert.deepEqual(await diagnostics(), []);
  });

  it('answers hovers on PCI addresses with the decoded RID', async () => {
    const hover = await connection.sendRequest(HoverRequest.type, { textDocument: { uri }, position: { line: 0, character: 9 } });
    // The edit above made it 00:10.0: device 0x10, so RID 0x0080.
    assert.match((hover!.contents as MarkupContent).value, /RID \(source-id\) `0x0080` · devfn `0x80`/);
  });
});
