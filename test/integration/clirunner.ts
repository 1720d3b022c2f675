/**
 * The amqp-tunnel CLI as a child process (dist/cli.js; run `npm run build`
 * first), with its --json events awaitable and its output kept for failure
 * messages.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { AMQP_URL as BROKER } from './support';

export const CLI = path.resolve(__dirname, '../../dist/cli.js');

export type Event = Record<string, unknown> & { event: string };

export class Cli {
  readonly proc: ChildProcess;
  readonly events: Event[] = [];
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: Array<() => void> = [];

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.proc = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, AMQP_URL: BROKER, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = '';
    this.proc.stdout!.on('data', (d: Buffer) => {
      this.stdout += d.toString();
      partial += d.toString();
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        try {
          this.events.push(JSON.parse(line) as Event);
        } catch {
          // a human line
        }
      }
      this.notify();
    });
    this.proc.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      this.notify();
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })));
    void this.exited.then(() => this.notify());
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Wait until `pred` holds for an event (JSON mode), failing with the output on timeout or exit. */
  async waitFor(pred: (e: Event) => boolean, timeoutMs = 15_000, from = 0): Promise<Event> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.slice(from).find(pred);
      if (hit) return hit;
      if (this.proc.exitCode !== null || Date.now() > deadline) {
        throw new Error(`no matching event (exit ${this.proc.exitCode}); stdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Wait for a 'state' event with `state`, among the events after index `from`. */
  state(state: string, from = 0, timeoutMs?: number): Promise<Event> {
    return this.waitFor((e) => e.event === 'state' && e.state === state, timeoutMs, from);
  }

  async ready(): Promise<Event> {
    return this.waitFor((e) => e.event === 'ready');
  }

  /** The forwarded local port, from the 'state' event of the forward tunnel. */
  async forwardPort(): Promise<number> {
    const e = await this.waitFor((x) => x.event === 'state' && x.state === 'ready' && typeof x.address === 'string');
    return Number(String(e.address).split(':').pop());
  }

  async stop(signal: NodeJS.Signals = 'SIGINT'): Promise<number | null> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    return (await this.exited).code;
  }
}

/** Spawn the CLI and register its teardown in `cleanup`: SIGKILL if it still runs, then wait for its exit. */
export function spawnCli(cleanup: Array<() => Promise<unknown> | void>, args: string[], env?: NodeJS.ProcessEnv): Cli {
  const c = new Cli(args, env);
  cleanup.push(async () => {
    if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await c.exited;
  });
  return c;
}
