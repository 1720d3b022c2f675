// `npm run package`: build the production bundle and package the extension
// into dist/amqp-tunnel.vsix with @vscode/vsce.
//
// package.json serves two packages: the npm library (its "files" list) and
// the extension. vsce refuses a manifest that has both "files" and a
// .vscodeignore, so the .vsix is packed from a staging folder that holds only
// what .vscodeignore lets through: the bundle, media/, README, CHANGELOG,
// LICENSE and a package.json without "files" and scripts.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const stage = path.join(root, 'out', 'vsix');
const out = path.join(root, 'dist', 'amqp-tunnel.vsix');

execFileSync(process.execPath, [path.join(root, 'esbuild.js'), '--production'], { cwd: root, stdio: 'inherit' });

fs.rmSync(stage, { recursive: true, force: true });
fs.mkdirSync(path.join(stage, 'dist'), { recursive: true });
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
for (const key of ['files', 'scripts', 'devDependencies', 'dependencies', 'bin', 'exports', 'types']) delete pkg[key];
fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
fs.copyFileSync(path.join(root, 'dist', 'extension.js'), path.join(stage, 'dist', 'extension.js'));
fs.cpSync(path.join(root, 'media'), path.join(stage, 'media'), { recursive: true });
for (const f of ['README.md', 'CHANGELOG.md', 'LICENSE', '.vscodeignore']) fs.copyFileSync(path.join(root, f), path.join(stage, f));

const vsce = path.join(root, 'node_modules', '@vscode', 'vsce', 'vsce');
execFileSync(process.execPath, [vsce, 'package', '--allow-missing-repository', '--no-dependencies', '--no-rewrite-relative-links', '--out', out], {
  cwd: stage,
  stdio: 'inherit',
});
