/**
 * The processes of the benchmark: the target service, the raw amqplib peers
 * and the CLI pair (`node dist/cli.js publish` + `forward`), each with its
 * own broker connection.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..');
export const CLI = path.join(ROOT, 'dist', 'cli.js');

/** A forked helper (bench/*.ts through tsx) that talks over IPC. */
export class Helper {
  readonly proc: ChildProcess;
  private readonly replies: unknown[] = [];
  private waiting?: (m: unknown) => void;
  private failed?: Error;

  private constructor(file: string, env: NodeJS.ProcessEnv) {
    this.proc = fork(path.join(__dirname, file), [], { execArgv: ['--import', 'tsx'], env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (m: Record<string, unknown>) => {
      if (typeof m.error === 'string') this.failed = new Error(`${file}: ${m.error}`);
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w(m);
      } else this.replies.push(m);
    });
    this.proc.once('exit', (code) => {
      this.failed ??= new Error(`${file} exited (${code})`);
      this.waiting?.({ error: this.failed.message });
    });
  }

  static async start(file: string, env: NodeJS.ProcessEnv = process.env): Promise<{ helper: Helper; first: Record<string, unknown> }> {
    const helper = new Helper(file, env);
    const first = await helper.next();
    return { helper, first };
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** The next message from the helper; rejects if it reported an error or exited. */
  async next<T = Record<string, unknown>>(): Promise<T> {
    const m = this.replies.length > 0 ? this.replies.shift() : await new Promise<unknown>((resolve) => (this.waiting = resolve));
    if (this.failed) throw this.failed;
    return m as T;
  }

  async call<T = Record<string, unknown>>(msg: Record<string, unknown>): Promise<T> {
    this.proc.send(msg);
    return this.next<T>();
  }

  send(msg: Record<string, unknown>): void {
    this.proc.send(msg);
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    this.proc.disconnect();
    if (this.proc.exitCode === null) await once(this.proc, 'exit');
  }
}

/** One `amqp-tunnel` CLI process; its stderr is kept (and searched for the ready line). */
class CliProcess {
  readonly proc: ChildProcess;
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(cli: string, args: string[], nodeArgs: string[], env: NodeJS.ProcessEnv) {
    this.proc = spawn(process.execPath, [...nodeArgs, cli, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc.stderr!.on('data', (d: Buffer) => {
      // Keep the head (start-up problems) and the tail (the latest lines).
      this.stderr = this.stderr.length < 64 * 1024 ? this.stderr + d.toString() : this.stderr.slice(0, 32 * 1024) + this.stderr.slice(-16 * 1024) + d.toString();
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  async waitFor(re: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.stderr);
      if (m) return m;
      if (this.proc.exitCode !== null || Date.now() > deadline) {
        throw new Error(`amqp-tunnel did not print ${re} (exit ${this.proc.exitCode}):\n${this.stderr}`);
      }
      await Promise.race([once(this.proc.stderr!, 'data'), this.exited, new Promise((r) => setTimeout(r, 200))]);
    }
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGINT');
    await this.exited;
  }
}

/** `amqp-tunnel publish TARGET --queue Q` + `amqp-tunnel forward Q 127.0.0.1:0`, with extra CLI args for both. */
export class CliPair {
  readonly publisher: CliProcess;
  readonly forwarder: CliProcess;
  port = 0;

  constructor(
    readonly queue: string,
    targetPort: number,
    extraArgs: string[],
    nodeArgs: string[],
    env: NodeJS.ProcessEnv,
    cli = CLI,
  ) {
    this.publisher = new CliProcess(cli, ['publish', `127.0.0.1:${targetPort}`, '--queue', queue, ...extraArgs], nodeArgs, env);
    this.forwarder = new CliProcess(cli, ['forward', queue, '127.0.0.1:0', ...extraArgs], nodeArgs, env);
  }

  async ready(): Promise<void> {
    await this.publisher.waitFor(/publishing \S+ on queue/);
    const m = await this.forwarder.waitFor(/forwarding [^\s]*:(\d+) -> queue/);
    this.port = Number(m[1]);
  }

  get pids(): number[] {
    return [this.publisher.pid, this.forwarder.pid];
  }

  /** Each process's problems so far (lines with "warning" or "error"), for the report. */
  problems(): string[] {
    return [this.publisher, this.forwarder].flatMap((p) => p.stderr.split('\n').filter((l) => /warning|error/i.test(l)));
  }

  async stop(): Promise<void> {
    await Promise.all([this.forwarder.stop(), this.publisher.stop()]);
  }
}
