/**
 * @module
 * The two halves of a log follow (`/api/functions/<name>/logs?follow=1`): {@link localFollow} reads
 * this node's records (the recent lines, then every new one, none lost or told twice between them),
 * and {@link FollowStream} writes to the client as NDJSON or server-sent events, with SSE keep-alives,
 * and cuts a client that reads too slowly. gateway/routes/logs.ts joins them for one node, and
 * logs-cluster.ts merges several nodes into one stream.
 */
import type { ServerResponse } from 'node:http';
import type { Logger } from '../../runtime/log.ts';
import type { StoredLine } from '../../runtime/records/follow.ts';
import type { LinesQuery } from '../../runtime/records/queries.ts';
import type { RecordStore } from '../../runtime/records/store.ts';
import type { LogLine } from '../../runtime/records/types.ts';

/** Bytes a follower may leave unread in its connection before it is cut. */
export const FOLLOW_MAX_BUFFER = 1024 * 1024;
/** How often an SSE follower gets a comment, so that proxies and clients see the stream is alive. */
export const SSE_KEEPALIVE_MS = 15_000;

/** A stored line as the API shows it (without its position). */
export function view({ seq: _seq, ...line }: StoredLine): LogLine {
  return line;
}

/** One node's follow of a function's lines, subscribed and with its recent lines read. */
export interface LocalFollow {
  /** The recent lines (the query's last `limit`), oldest first. */
  readonly recent: LogLine[];
  /** From now on, every new line to `send`: first those stored while the recent ones were read. */
  live(send: (line: LogLine) => void): void;
  /** Unsubscribes. */
  close(): void;
}

/**
 * Subscribes to `query.function`'s new lines, then reads the recent ones: the subscription comes first,
 * so no line falls between them, and lines seen in both are told once (by their position). `onEnd` is
 * called if the store closes. Throws NO_CAPACITY (too many followers) before anything is sent.
 */
export function localFollow(store: RecordStore, query: LinesQuery, onEnd: () => void): LocalFollow {
  let sink: ((line: LogLine) => void) | undefined;
  let last = 0;
  const early: StoredLine[] = [];
  const pass = (line: StoredLine) => {
    if (query.invocationId !== undefined && line.invocationId !== query.invocationId) return;
    sink!(view(line));
  };
  const unsubscribe = store.follow(query.function, (line) => (sink ? pass(line) : early.push(line)), onEnd);
  let recent: StoredLine[];
  try {
    recent = store.lines(query);
  } catch (error) {
    unsubscribe();
    throw error;
  }
  if (recent.length > 0) last = recent[recent.length - 1]!.seq;
  return {
    recent: recent.map(view),
    live(send) {
      sink = send;
      // The lines stored while the recent ones were read are in both: only those after the last recent one.
      for (const line of early) if (line.seq > last) pass(line);
      early.length = 0;
    },
    close: unsubscribe,
  };
}

/** A follower's connection: the head written at once, then lines and events until it ends. */
export class FollowStream {
  readonly #outgoing: ServerResponse;
  readonly #sse: boolean;
  readonly #log: Logger;
  readonly #function: string;
  readonly #onClose: Array<() => void> = [];
  readonly #keepalive: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: { outgoing: ServerResponse; sse: boolean; log: Logger; function: string }) {
    const { outgoing, sse } = options;
    this.#outgoing = outgoing;
    this.#sse = sse;
    this.#log = options.log;
    this.#function = options.function;
    outgoing.on('close', () => this.#finish());
    outgoing.writeHead(200, {
      'content-type': sse ? 'text/event-stream; charset=utf-8' : 'application/x-ndjson',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    });
    outgoing.flushHeaders();
    if (sse) this.#keepalive = setInterval(() => this.#write(': keep-alive\n\n'), SSE_KEEPALIVE_MS).unref();
  }

  /** Whether the stream has ended (the client went, was cut, or it was ended). */
  get closed(): boolean {
    return this.#closed || this.#outgoing.destroyed;
  }

  /** Called once when the stream ends, however it ends. */
  onClose(listener: () => void): void {
    if (this.#closed) listener();
    else this.#onClose.push(listener);
  }

  /** A line: `<json>\n`, or `data: <json>` as an SSE message. */
  line(value: object): void {
    const json = JSON.stringify(value);
    this.#write(this.#sse ? `data: ${json}\n\n` : `${json}\n`);
  }

  /** An event in the stream: `{"event":name,...fields}` in NDJSON, an SSE event named `name` with the same data. */
  event(name: string, fields: object = {}): void {
    const json = JSON.stringify({ event: name, ...fields });
    this.#write(this.#sse ? `event: ${name}\ndata: ${json}\n\n` : `${json}\n`);
  }

  /** Ends the response (and so the stream). */
  end(): void {
    if (!this.#outgoing.writableEnded && !this.#outgoing.destroyed) this.#outgoing.end();
    this.#finish();
  }

  #write(text: string): void {
    if (this.closed) return;
    this.#outgoing.write(text);
    if (this.#outgoing.writableLength > FOLLOW_MAX_BUFFER) {
      this.#log.warn('a log follower was cut: it read too slowly', { function: this.#function, buffered: this.#outgoing.writableLength });
      this.#outgoing.destroy();
      this.#finish();
    }
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#keepalive);
    for (const listener of this.#onClose.splice(0)) listener();
  }
}
