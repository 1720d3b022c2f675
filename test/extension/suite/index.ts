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
import { suiteFiles } from './files';

export function run(): Promise<void> {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? '';
  const untrusted = path.basename(folder).startsWith('untrusted');
  // A .only or .skip left in a test must fail the run, not silence the rest.
  const mocha = new Mocha({ ui: 'bdd', color: false, timeout: 60_000, slow: 5_000, reporter: 'spec', forbidOnly: true, forbidPending: true });
  const files = suiteFiles(fs.readdirSync(__dirname), untrusted);
  for (const f of files) mocha.addFile(path.join(__dirname, f));
  const resultFile = folder ? path.join(folder, '..', `${path.basename(folder)}.result.json`) : undefined;
  return new Promise((resolve, reject) => {
    const runner = mocha.run((failures) => {
      // test/extension/runner.ts requires this file: a host that died mid-run writes none.
      const result = { files, passes: runner.stats?.passes ?? 0, failures, tests: runner.stats?.tests ?? 0, pending: runner.stats?.pending ?? 0 };
      if (resultFile) fs.writeFileSync(resultFile, JSON.stringify(result));
      if (failures > 0) reject(new Error(`${failures} tests failed`));
      else resolve();
    });
  });
}
