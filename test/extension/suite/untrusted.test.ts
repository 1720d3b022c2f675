/**
 * An untrusted workspace (the runner opens it with workspace trust on): the
 * tunnels its settings keep must not start, and its broker settings are not used.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { CONFIG_SECTION, SETTINGS } from '../../../src/extension/ids';
import { connectError, extensionApi, waitFor } from './helpers';

describe('kept tunnels in an untrusted workspace', () => {
  it('do not start, and the workspace cannot name brokers', async () => {
    assert.equal(vscode.workspace.isTrusted, false, 'the runner opened this workspace untrusted');
    const api = await extensionApi();
    // VS Code hides restricted settings of an untrusted workspace, so read the file the runner wrote.
    const file = path.join(vscode.workspace.workspaceFolders![0].uri.fsPath, '.vscode', 'settings.json');
    const onDisk = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, Array<Record<string, string>>>;
    const fwd = onDisk[`${CONFIG_SECTION}.${SETTINGS.tunnels}`].find((k) => k.forward);
    assert.ok(fwd, 'the workspace settings keep a forward');
    assert.equal(vscode.workspace.getConfiguration(CONFIG_SECTION).inspect(SETTINGS.tunnels)?.workspaceValue, undefined, 'VS Code ignores them while untrusted');
    assert.deepEqual(api.manager.list(), [], 'no tunnel was started');
    assert.equal(api.tree.getChildren().length, 0, 'the view shows its welcome content');
    assert.equal(await connectError(fwd.bind), 'ECONNREFUSED', 'nothing listens on the kept forward port');
    assert.equal(api.brokers.get('kept-broker'), undefined, 'a restricted setting: the workspace value is ignored');
  });
});

describe('trusting the workspace', () => {
  it('starts the kept tunnels once the user trusts the workspace', async () => {
    const api = await extensionApi();
    const granted = new Promise<void>((resolve) => {
      const d = vscode.workspace.onDidGrantWorkspaceTrust(() => {
        d.dispose();
        resolve();
      });
    });
    // The runner clicks "Trust" in the Workspace Trust editor, as a user would.
    await vscode.commands.executeCommand('workbench.trust.manage');
    await granted;
    assert.equal(vscode.workspace.isTrusted, true);
    await api.restored;
    const kept = vscode.workspace.getConfiguration(CONFIG_SECTION).get<Array<Record<string, string>>>(SETTINGS.tunnels) ?? [];
    const fwd = kept.find((k) => k.forward);
    assert.ok(fwd, 'the workspace settings are visible once trusted');
    await waitFor(api, 'the kept tunnels are ready', () => api.manager.list().length === 2 && api.manager.list().every((e) => e.state === 'ready'));
    assert.equal(await connectError(fwd.bind), undefined, 'the kept forward port listens');
    for (const e of api.manager.list()) await api.manager.remove(e);
  });
});
