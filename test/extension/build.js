// Bundles the in-editor test suite (test/extension/suite/*.ts) into
// out/test/extension/suite/*.js: one CommonJS file per test file, with
// `vscode` (given by the extension host), `mocha` and `playwright-core` (from node_modules) left out.
const esbuild = require('esbuild');
const fs = require('node:fs');
const path = require('node:path');

const dir = path.join(__dirname, 'suite');
const entries = fs.readdirSync(dir).filter((f) => f.endsWith('.ts')).map((f) => path.join(dir, f));

const outdir = path.join(__dirname, '..', '..', 'out', 'test', 'extension', 'suite');
fs.rmSync(outdir, { recursive: true, force: true });

esbuild
  .build({
    entryPoints: entries,
    outdir,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    sourcemap: 'inline',
    external: ['vscode', 'mocha', 'playwright-core'],
    logLevel: 'warning',
  })
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
