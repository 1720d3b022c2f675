/**
 * A fresh machine: the README's two commands. `npm run setup` makes sure a
 * broker answers (scripts/setup-broker.sh) and `npm test` checks the broker
 * once before the integration tests (scripts/check-broker.ts), stopping with
 * one line instead of every test failing. "No broker" is a port where
 * nothing listens (the shared broker is never stopped).
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { freePort } from '../../src/tunnel/spec';
import { AMQP_URL } from './support';

const root = path.join(__dirname, '..', '..');

function runIn(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d));
    p.stderr.on('data', (d: Buffer) => (stderr += d));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('set-up on a fresh machine (npm run setup, npm test)', function () {
  this.timeout(60_000);

  it('npm run test:integration with no broker at AMQP_URL stops before any test with one line that names the broker and what to run', async () => {
    const port = await freePort(); // nothing listens there
    const r = await runIn('npm', ['run', '--silent', 'test:integration'], { AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}` });
    assert.equal(r.code, 1);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line, got:\n${r.stderr}`);
    assert.match(lines[0]!, new RegExp(`^no usable broker for the integration tests: cannot reach the broker at 127\\.0\\.0\\.1:${port}: connection refused .*; run \`npm run setup\``));
    assert.doesNotMatch(r.stdout + r.stderr, /passing|failing/, 'no test ran');
    assert.doesNotMatch(r.stderr, /guest:guest/, 'no password');
  });

  it('the broker check passes quietly when the broker accepts the login', async () => {
    const r = await runIn(process.execPath, ['--import', 'tsx', 'scripts/check-broker.ts', '--quiet'], { AMQP_URL });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
  });

  it('npm run setup\'s broker step: a broker that answers is left alone; nothing on a port it cannot start RabbitMQ on is one line saying what to do', async () => {
    const up = await runIn('bash', ['scripts/setup-broker.sh'], { AMQP_URL });
    assert.equal(up.code, 0, up.stderr);
    const u = new URL(AMQP_URL);
    assert.equal(up.stdout, `setup: RabbitMQ answers at ${u.hostname}:${u.port || 5672}\n`);
    const port = await freePort();
    const down = await runIn('bash', ['scripts/setup-broker.sh'], { AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}` });
    assert.equal(down.code, 1);
    assert.equal(down.stderr.trim().split('\n').length, 1, down.stderr);
    assert.match(down.stderr, new RegExp(`nothing answers at 127\\.0\\.0\\.1:${port} \\(AMQP_URL\\).*start yours on ${port}, or unset AMQP_URL`));
  });
});
