/**
 * @module
 * What the records store keeps: an invocation record (one per invocation of any kind, refused ones
 * included) and a log line (a function's stderr, a serve instance's stdout and stderr, and the lines
 * fnix adds itself). These are the shapes the API returns (docs/logs.md).
 */

/** How an invocation was asked for. */
export type RecordKind = 'http' | 'session' | 'serve' | 'websocket';

/** Which stream a log line came from; `fnix` is a line fnix wrote itself ("312 lines dropped"). */
export type LogStream = 'stdout' | 'stderr' | 'fnix';

/** One invocation, once it has ended (or was refused before it started). */
export interface InvocationRecord {
  id: string;
  function: string;
  version: string;
  /** The deployment that was live when it started; null when none was known. */
  deployment: string | null;
  kind: RecordKind;
  /** ISO time of the request. */
  startedAt: string;
  /** From the request to the end, in ms. */
  durationMs: number;
  /** `OK`, or the error code the client got. */
  outcome: string;
  /** The HTTP status the client got; null where there is none (a WebSocket that was upgraded). */
  status: number | null;
  exitCode: number | null;
  signal: string | null;
  /** Request body bytes received (for a session or WebSocket: what the client sent). */
  bytesIn: number;
  /** Output bytes: the function's stdout, or the server's response body. */
  bytesOut: number;
  /** Whether the container was started for it; null where that does not apply (serve, refused). */
  cold: boolean | null;
  /** The serve instance that answered it. */
  instance: string | null;
  container: string | null;
}

/** One line of output. */
export interface LogLine {
  /** ISO time at which fnix read it. */
  time: string;
  function: string;
  invocationId: string | null;
  instance: string | null;
  stream: LogStream;
  line: string;
}

/** A line to append; `time` is now unless given (ms since the epoch). */
export interface LineInput {
  function: string;
  invocationId?: string | null | undefined;
  instance?: string | null | undefined;
  stream: LogStream;
  line: string;
  time?: number | undefined;
}
