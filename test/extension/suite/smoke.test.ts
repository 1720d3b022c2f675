import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import { COMMANDS } from '../../../src/extension/ids';
import { extensionApi } from './helpers';

describe('the extension in a real VS Code', () => {
  it('activates and registers every command of the manifest', async () => {
    await extensionApi();
    const all = new Set(await vscode.commands.getCommands(true));
    for (const id of Object.values(COMMANDS)) assert.ok(all.has(id), `${id} is registered`);
  });
});
