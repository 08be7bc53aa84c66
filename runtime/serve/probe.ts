/**
 * @module
 * The readiness probe of a serve function: `GET <readyPath>` on the server's port, over a relay, until
 * it answers with a status below 500. Written as raw HTTP/1.1 (one request, `Connection: close`, the
 * status line read and the rest dropped): runtime/ speaks to a server, it does not carry HTTP traffic.
 */
import type { Socket } from 'node:net';

/** The first wait between probes; each later one is half as long again, up to {@link PROBE_MAX_INTERVAL_MS}. */
export const PROBE_FIRST_INTERVAL_MS = 5;
export const PROBE_MAX_INTERVAL_MS = 100;
/** How long one probe may take to be answered. */
const PROBE_TIMEOUT_MS = 2000;
/** The most of an answer read for its status line. */
const STATUS_LINE_MAX = 1024;
const NOTHING_YET = 'no probe was answered';

/** A probe that had no answer within its time. */
class ProbeTimeout extends Error {}

/** What {@link probeReady} needs. */
export interface ProbeOptions {
  /** Opens a connection to the server; rejects when nothing listens yet. */
  open: (timeoutMs: number) => Promise<Socket>;
  path: string;
  /** performance.now() by which the server must be ready. */
  deadline: number;
  /** Settles when the server has ended: probing stops. */
  gone: Promise<void>;
}

/** Resolves once the server answers `path` below 500; rejects with the last problem at the deadline or when it ends. */
export async function probeReady(options: ProbeOptions): Promise<void> {
  let interval = PROBE_FIRST_INTERVAL_MS;
  let lastProblem = NOTHING_YET;
  let gone = false;
  void options.gone.then(() => {
    gone = true;
  });
  for (;;) {
    const left = options.deadline - performance.now();
    if (gone) throw new Error(`the server ended (last probe: ${lastProblem})`);
    if (left <= 0) throw new Error(`last probe: ${lastProblem}`);
    const budget = Math.min(left, PROBE_TIMEOUT_MS);
    try {
      const status = await probeOnce(options, budget);
      if (status < 500) return;
      lastProblem = `GET ${options.path} answered ${status}`;
    } catch (error) {
      // A probe that the deadline cut short says less than the problem seen before it.
      // The open's own timeout too (a RelayOpenError ETIMEDOUT): with a fraction of a ms left the agent cannot connect.
      const timedOut = error instanceof ProbeTimeout || (error as { errno?: string }).errno === 'ETIMEDOUT';
      const cutShort = timedOut && budget < PROBE_TIMEOUT_MS && lastProblem !== NOTHING_YET;
      if (!cutShort) lastProblem = (error as Error).message;
    }
    await Promise.race([new Promise((resolve) => setTimeout(resolve, Math.min(interval, Math.max(0, options.deadline - performance.now())))), options.gone]);
    interval = Math.min(PROBE_MAX_INTERVAL_MS, interval * 1.5);
  }
}

/** One probe: the status the server answered with. */
async function probeOnce(options: ProbeOptions, timeoutMs: number): Promise<number> {
  const socket = await options.open(timeoutMs);
  try {
    return await new Promise<number>((resolve, reject) => {
      let head = '';
      const timer = setTimeout(() => reject(new ProbeTimeout(`GET ${options.path} was not answered within ${Math.round(timeoutMs)} ms`)), timeoutMs);
      const finish = (fn: () => void) => {
        clearTimeout(timer);
        fn();
      };
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => {
        head += chunk;
        const end = head.indexOf('\r\n');
        if (end === -1 && head.length < STATUS_LINE_MAX) return;
        const match = /^HTTP\/1\.[01] (\d{3})/.exec(head);
        finish(() => (match ? resolve(Number(match[1])) : reject(new Error(`GET ${options.path} got no HTTP answer: ${JSON.stringify(head.slice(0, 80))}`))));
      });
      socket.on('end', () => finish(() => reject(new Error(`the server closed the connection without answering GET ${options.path}`))));
      socket.on('error', (error) => finish(() => reject(error)));
      socket.write(`GET ${options.path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: fnix-probe\r\nConnection: close\r\n\r\n`);
    });
  } finally {
    socket.destroy();
  }
}
