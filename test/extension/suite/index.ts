/**
 * The in-editor suite's entry: `run(): Promise<void>`, the shape both
 * @vscode/test-electron and test/extension/runner.ts (VS Code server +
 * headless Chromium) load through `extensionTestsPath`. Which test files run
 * depends on the workspace the runner opened: "untrusted-*" folders run the
 * untrusted-workspace tests, every other folder the main suite.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Mocha from 'mocha';
import * as vscode from 'vscode';

export function run(): Promise<void> {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? '';
  const untrusted = path.basename(folder).startsWith('untrusted');
  const mocha = new Mocha({ ui: 'bdd', color: false, timeout: 60_000, slow: 5_000, reporter: 'spec' });
  const files = fs
    .readdirSync(__dirname)
    .filter((f) => f.endsWith('.test.js'))
    .filter((f) => (untrusted ? f.startsWith('untrusted') : !f.startsWith('untrusted')));
  for (const f of files) mocha.addFile(path.join(__dirname, f));
  return new Promise((resolve, reject) => {
    const runner = mocha.run((failures) => {
      const result = { passes: runner.stats?.passes ?? 0, failures, tests: runner.stats?.tests ?? 0, pending: runner.stats?.pending ?? 0 };
      if (folder) fs.writeFileSync(path.join(folder, '..', `${path.basename(folder)}.result.json`), JSON.stringify(result));
      if (failures > 0) reject(new Error(`${failures} tests failed`));
      else resolve();
    });
  });
}
