/**
 * @module
 * What the gateway's routes tell the records store, in their terms: an invocation started, ended (with
 * what it knows of it), or was refused before it started; a line of output. It fills in what every
 * record shares (the version, the live deployment, the status of an error code) so each route says only
 * what it alone knows. HTTP-free: the status of an outcome comes from `statusOf`, which the gateway gives.
 */
import { nanoid } from 'nanoid';
import type { FunctionVersion } from '../functions/version.ts';
import type { RecordStore } from './store.ts';
import { LineTap } from './tap.ts';
import type { LineInput, RecordKind } from './types.ts';

/** Options for {@link Recorder}. */
export interface RecorderOptions {
  store: RecordStore;
  /** The id of the live deployment, or undefined. */
  deployment: () => string | undefined;
  /** The HTTP status a client gets for an error code (gateway/errors.ts STATUS_BY_CODE). */
  statusOf: (code: string) => number;
}

/** What a route knows of an invocation that ran. */
export interface EndedInvocation {
  id: string;
  fn: Pick<FunctionVersion, 'name' | 'version'>;
  kind: RecordKind;
  /** When the request came, in ms since the epoch. */
  startedAt: number;
  durationMs: number;
  outcome: string;
  /** The status the client got; undefined: the one noted, else the outcome's (200 for OK). Null: none (an upgraded WebSocket). */
  status?: number | null | undefined;
  exitCode?: number | undefined;
  signal?: string | undefined;
  bytesIn?: number | undefined;
  bytesOut?: number | undefined;
  cold?: boolean | undefined;
  instance?: string | undefined;
  container?: string | undefined;
}

/** What a route knows of an invocation refused before it started (NO_CAPACITY, BODY_TOO_LARGE...). */
export interface RefusedInvocation {
  /** The id the client was told, if any; else one is made. */
  id?: string | undefined;
  fn: Pick<FunctionVersion, 'name' | 'version'>;
  kind: RecordKind;
  outcome: string;
  startedAt: number;
  /** How long it waited before it was refused. */
  waitMs: number;
}

/** Feeds the records store from the gateway's routes. */
export class Recorder {
  readonly store: RecordStore;
  readonly #deployment: () => string | undefined;
  readonly #statusOf: (code: string) => number;
  /** What routes note of invocations still running, read when their record is written. */
  readonly #notes = new Map<string, { status?: number; bytesIn?: number }>();

  constructor(options: RecorderOptions) {
    this.store = options.store;
    this.#deployment = options.deployment;
    this.#statusOf = options.statusOf;
  }

  /** Invocation `id` has started: a query for it waits a little for its record. */
  started(id: string): void {
    this.store.expect(id);
  }

  /**
   * Notes what the route learnt of a running invocation (the status it answered, the body bytes it
   * read). A note of an invocation whose record is already written (or that never started) is ignored:
   * nothing would ever read it.
   */
  note(id: string, fields: { status?: number; bytesIn?: number }): void {
    if (!this.store.expects(id)) return;
    this.#notes.set(id, { ...this.#notes.get(id), ...fields });
  }

  /** Invocations with notes not yet read by their record (for tests: it stays bounded). */
  get notes(): number {
    return this.#notes.size;
  }

  /** Writes the record of an invocation that ran. */
  ended(invocation: EndedInvocation): void {
    const noted = this.#notes.get(invocation.id);
    this.#notes.delete(invocation.id);
    // What the client got: what the route says, else what it noted (a head already sent), else the outcome's.
    const status =
      invocation.status !== undefined ? invocation.status : (noted?.status ?? (invocation.outcome === 'OK' ? 200 : this.#statusOf(invocation.outcome)));
    this.store.record({
      id: invocation.id,
      function: invocation.fn.name,
      version: invocation.fn.version,
      deployment: this.#deployment() ?? null,
      kind: invocation.kind,
      startedAt: new Date(invocation.startedAt).toISOString(),
      durationMs: Math.round(invocation.durationMs * 10) / 10,
      outcome: invocation.outcome,
      status,
      exitCode: invocation.exitCode ?? null,
      signal: invocation.signal ?? null,
      bytesIn: invocation.bytesIn ?? noted?.bytesIn ?? 0,
      bytesOut: invocation.bytesOut ?? 0,
      cold: invocation.cold ?? null,
      instance: invocation.instance ?? null,
      container: invocation.container ?? null,
    });
  }

  /** Writes the record of an invocation refused before it started. */
  refused(refusal: RefusedInvocation): void {
    const id = refusal.id ?? nanoid();
    this.#notes.delete(id);
    this.ended({ id, fn: refusal.fn, kind: refusal.kind, startedAt: refusal.startedAt, durationMs: refusal.waitMs, outcome: refusal.outcome });
  }

  /** A tap that feeds a stream's lines to the store, cheaply over the rate (tap.ts); `mask`, the invocation's secrets' (Invocation.mask). */
  tap(base: Omit<LineInput, 'line' | 'time'>, mask?: (line: string) => string): LineTap {
    return new LineTap(this.store, base, mask);
  }

  /** Appends a line of output. */
  line(input: LineInput): void {
    this.store.line(input);
  }
}
