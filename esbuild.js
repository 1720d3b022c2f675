// Bundles: the stream library for Node programs (dist/stream.js), and, once
// they exist, the CLI (dist/cli.js) and the extension (dist/extension.js).
// `--production` minifies; type-checking is `npm run typecheck` (tsc --noEmit).
const esbuild = require('esbuild');
const fs = require('node:fs');

const production = process.argv.includes('--production');

const entries = [
  { in: 'src/stream/index.ts', out: 'stream', external: ['amqplib'] },
  { in: 'src/cli/main.ts', out: 'cli', external: [], banner: { js: '#!/usr/bin/env node' } },
  { in: 'src/extension/extension.ts', out: 'extension', external: ['vscode'] },
].filter((e) => fs.existsSync(e.in));

async function main() {
  await Promise.all(
    entries.map((e) =>
      esbuild.build({
        entryPoints: [e.in],
        outfile: `dist/${e.out}.js`,
        bundle: true,
        platform: 'node',
        target: 'node20',
        format: 'cjs',
        sourcemap: !production,
        minify: production,
        external: e.external,
        banner: e.banner,
        logLevel: 'warning',
      }),
    ),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
