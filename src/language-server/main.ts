import { createConnection, ProposedFeatures } from 'vscode-languageserver/node';
import { startServer } from './server';

declare const IOMMU_LAB_VERSION: string;

// createConnection reads the transport from argv (--node-ipc from the VS Code client, --stdio for other editors
// and for the tests, which drive this file as a real process).
startServer(createConnection(ProposedFeatures.all), IOMMU_LAB_VERSION);
