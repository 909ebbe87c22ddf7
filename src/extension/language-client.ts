import * as vscode from 'vscode';
import { LanguageClient, type LanguageClientOptions, type ServerOptions, TransportKind } from 'vscode-languageclient/node';
import { LANGUAGE_ID, LANGUAGE_SERVER_NAME } from '../protocol/ids';
import { LANGUAGE_CLIENT_ID } from './manifest';

/** Starts the topology language server as its own Node process over IPC. */
export function createLanguageClient(context: vscode.ExtensionContext, output: vscode.OutputChannel): LanguageClient {
  const module = context.asAbsolutePath('dist/server.js');
  const serverOptions: ServerOptions = {
    run: { module, transport: TransportKind.ipc },
    debug: { module, transport: TransportKind.ipc, options: { execArgv: ['--nolazy', '--inspect=6009'] } },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [
      { language: LANGUAGE_ID, scheme: 'file' },
      { language: LANGUAGE_ID, scheme: 'untitled' },
    ],
    outputChannel: output,
  };
  return new LanguageClient(LANGUAGE_CLIENT_ID, LANGUAGE_SERVER_NAME, serverOptions, clientOptions);
}
