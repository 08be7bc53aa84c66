/**
 * @module
 * HAProxy in host `lb`'s network namespace, in master-worker mode (`haproxy -W -db -f <file>`): one pid
 * for its whole life, reloaded with SIGUSR2 after the new configuration is checked (`haproxy -c`), and
 * each start or reload waited for on the master's "Loading success." line.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Daemon, ProcessRegistry } from './registry.ts';
import { sh } from './shell.ts';

const LOADED = /Loading success\./g;

/** The lab's HAProxy. */
export class Haproxy {
  readonly #registry: ProcessRegistry;
  readonly #labDir: string;
  readonly #nsPath: string;
  #daemon: Daemon | undefined;

  constructor(registry: ProcessRegistry, labDir: string, nsPath: string) {
    this.#registry = registry;
    this.#labDir = labDir;
    this.#nsPath = nsPath;
  }

  get configFile(): string {
    return join(this.#labDir, 'haproxy.cfg');
  }

  get logFile(): string {
    return join(this.#labDir, 'lb.log');
  }

  /** The master's process, while it runs. */
  get process(): Daemon | undefined {
    return this.#daemon?.running() ? this.#daemon : undefined;
  }

  /** Writes `config`, checks it and starts HAProxy on it; resolves once it has loaded. */
  async start(config: string, timeoutMs = 10_000): Promise<Daemon> {
    if (this.#daemon?.running()) throw new Error('cluster lab: HAProxy runs already; reload it instead');
    await this.#write(config);
    const before = await this.#loads();
    const argv = ['nsenter', `--net=${this.#nsPath}`, '--', 'haproxy', '-W', '-db', '-f', this.configFile];
    this.#daemon = this.#registry.spawn('haproxy', argv, { log: this.logFile });
    await this.#waitLoaded(before, timeoutMs);
    return this.#daemon;
  }

  /** Writes `config`, checks it and reloads the running HAProxy on it; resolves once the new workers have loaded. */
  async reload(config: string, timeoutMs = 10_000): Promise<void> {
    const daemon = this.#daemon;
    if (!daemon?.running()) throw new Error('cluster lab: HAProxy is not running; start it first');
    await this.#write(config);
    const before = await this.#loads();
    process.kill(daemon.pid, 'SIGUSR2');
    await this.#waitLoaded(before, timeoutMs);
  }

  async stop(): Promise<void> {
    await this.#daemon?.stop(3000);
  }

  async #write(config: string): Promise<void> {
    const text = config.endsWith('\n') ? config : `${config}\n`;
    const candidate = `${this.configFile}.new`;
    await writeFile(candidate, text);
    const check = await sh(['haproxy', '-c', '-q', '-f', candidate], { reject: false });
    if (check.exitCode !== 0)
      throw new Error(`cluster lab: HAProxy refuses the configuration: ${(check.stderr || check.stdout).trim()}\n--- config ---\n${text}`);
    await writeFile(this.configFile, text);
  }

  async #loads(): Promise<number> {
    return ((await readFile(this.logFile, 'utf8').catch(() => '')).match(LOADED) ?? []).length;
  }

  async #waitLoaded(before: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((await this.#loads()) <= before) {
      if (!this.#daemon?.running()) throw new Error(`cluster lab: HAProxy exited; see ${this.logFile}`);
      if (Date.now() > deadline) throw new Error(`cluster lab: HAProxy did not load its configuration within ${timeoutMs} ms; see ${this.logFile}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
