// Lint rules, including the import boundaries of ../shared/STYLE.md:
// common imports nothing of ours; stream: node + amqplib + common;
// tunnel: stream + common (never vscode); cli: never vscode; only extension imports vscode.
import tseslint from 'typescript-eslint';

const noVscode = { name: 'vscode', message: 'only src/extension may import vscode' };
const layer = (files, patterns, paths = [noVscode]) => ({
  files,
  rules: { 'no-restricted-imports': ['error', { paths, patterns }] },
});

export default tseslint.config(
  { ignores: ['dist/**', 'out/**', 'node_modules/**', '.test-output/**', '.vscode-test/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  layer(['src/common/**'], [{ group: ['../*', '!../common/*'], message: 'src/common imports nothing of ours' }]),
  layer(['src/stream/**'], [{ group: ['**/tunnel/**', '**/cli/**', '**/extension/**'], message: 'stream may import only node:*, amqplib and common' }]),
  layer(['src/tunnel/**'], [{ group: ['**/cli/**', '**/extension/**'], message: 'tunnel may import only stream and common' }]),
  layer(['src/cli/**'], [{ group: ['**/extension/**'], message: 'the CLI never loads the extension' }]),
  {
    files: ['src/stream/**', 'src/tunnel/**', 'src/common/**'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: "MemberExpression[object.name='process'][property.name='exit']", message: 'process.exit only in src/cli' },
        { selector: "MemberExpression[object.name='console']", message: 'console only in src/cli; use the Logger' },
      ],
    },
  },
  {
    files: ['test/**', 'esbuild.js', '.ci/**'],
    rules: { '@typescript-eslint/no-require-imports': 'off', '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
