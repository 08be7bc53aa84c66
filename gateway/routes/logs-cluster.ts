/**
 * @module
 * The records API across a cluster's nodes. Each node keeps its own lines and records
 * (runtime/records/); a request to one node gathers them from every member: this node's from its
 * store, the others' over HTTP (`?local=1`, which answers from that node alone, with the admin token),
 * in parallel, each within a timeout. Every line and record is labelled with its `node`; lines are
 * merged by time, then node, then their order on their node, and `limit` applies after the merge. A
 * member that does not answer is named (`missing`, or a `node-gone` event in a follow), never waited
 * for past its timeout and never left out silently. gateway/routes/logs.ts decides when to gather.
 */
import type { ClusterMember, ClusterView } from '../../cluster/view.ts';
import { FnixError } from '../../runtime/errors.ts';
import type { LogLine } from '../../runtime/records/types.ts';
import { errorOf, type MemberAnswer, MemberClient, type MemberClientOptions, type MemberStream } from '../cluster-fetch.ts';
import type { FollowStream, LocalFollow } from './logs-stream.ts';

/** A line or a record, with the node that keeps it. */
export type Labelled<T> = T & { node: string };

/** A member whose part is not in an answer, and why. */
export interface Missing {
  node: string;
  error: string;
}

/** Which nodes one request asks: this node, and the other members. */
export interface Targets {
  self: boolean;
  remotes: ClusterMember[];
}

/** What the records routes are given in a cluster (see gateway/routes/logs.ts). */
export interface ClusterLogsOptions extends Omit<MemberClientOptions, 'token'> {
  view: ClusterView;
  /** The admin token, FNIX_TOKEN: the other members' APIs are asked with it. */
  token: string;
  /** How often a follow checks that the members it reads are still members. @default 1000 */
  membershipCheckMs?: number | undefined;
}

/** One gathering of lines or records. */
export interface GatherRequest<T> {
  targets: Targets;
  /** This node's part; undefined when this node knows no such function. */
  local: () => T[] | undefined;
  /** The path to ask the others, `?local=1` and the query included. */
  path: string;
  /** The answer's field that holds the items (`lines`, `invocations`). */
  key: string;
  /** Each item's time (ISO). */
  time: (item: T) => string;
  /** Records come newest first, lines oldest first. */
  newestFirst: boolean;
  limit: number;
}

/** The gathered items, and who did not answer. `known`: some node that answered knows the function. */
export interface Gathered<T> {
  items: Labelled<T>[];
  missing: Missing[];
  known: boolean;
}

/** The gathering, over one view of the cluster and one pool of connections to its members. */
export class ClusterLogs {
  readonly view: ClusterView;
  readonly client: MemberClient;
  readonly #membershipCheckMs: number;

  constructor(options: ClusterLogsOptions) {
    this.view = options.view;
    this.client = new MemberClient(options);
    this.#membershipCheckMs = options.membershipCheckMs ?? 1000;
  }

  /** This node's name. */
  get self(): string {
    return this.view.self;
  }

  /** The nodes to ask: `node` alone when given (BAD_REQUEST if no member has that name), else every member. */
  targets(node: string | undefined): Targets {
    const others = this.view.members().filter((member) => member.name !== this.self);
    if (node === undefined || node === '') return { self: true, remotes: others };
    if (node === this.self) return { self: true, remotes: [] };
    const member = others.find((m) => m.name === node);
    if (!member) {
      const names = [this.self, ...others.map((m) => m.name)].sort();
      throw new FnixError(
        'BAD_REQUEST',
        `node=${JSON.stringify(node.slice(0, 80))}: no member of the cluster has that name; the members now are ${names.join(', ')} (GET /api/cluster)`,
        { details: { node: node.slice(0, 80), members: names } },
      );
    }
    return { self: false, remotes: [member] };
  }

  /** Each target's items, labelled and merged, `limit` after the merge. */
  async gather<T extends object>(request: GatherRequest<T>): Promise<Gathered<T>> {
    const parts: { node: string; items: T[] }[] = [];
    const missing: Missing[] = [];
    let known = false;
    if (request.targets.self) {
      const items = request.local();
      if (items) {
        known = true;
        parts.push({ node: this.self, items });
      }
    }
    const answers = await Promise.all(request.targets.remotes.map((member) => this.client.json(member, request.path)));
    for (const answer of answers) {
      const outcome = itemsOf(answer, request.key);
      if ('error' in outcome) missing.push({ node: answer.node, error: outcome.error });
      else if (outcome.items) {
        known = true;
        parts.push({ node: answer.node, items: outcome.items as T[] });
      }
    }
    return { items: merge(parts, request.time, request.newestFirst, request.limit), missing, known };
  }

  /**
   * The first target with invocation `found` by `local` (this node) or `path` (`/api/invocations/<id>?local=1`,
   * the others at once); the others are not waited for once one has it.
   */
  async find<T extends object>(
    targets: Targets,
    local: () => Promise<T | undefined>,
    path: string,
  ): Promise<{ node: string; found: T; missing: Missing[] } | { missing: Missing[] }> {
    if (targets.self) {
      const found = await local();
      if (found) return { node: this.self, found, missing: [] };
    }
    const missing: Missing[] = [];
    if (targets.remotes.length === 0) return { missing };
    const controller = new AbortController();
    return await new Promise((resolve) => {
      let pending = targets.remotes.length;
      let done = false;
      for (const member of targets.remotes) {
        void this.client.json(member, path, controller.signal).then((answer) => {
          if (done) return;
          if ('error' in answer) missing.push({ node: answer.node, error: answer.error });
          else if (answer.status === 200 && typeof answer.body === 'object' && answer.body !== null) {
            done = true;
            controller.abort();
            return resolve({ node: answer.node, found: answer.body as T, missing });
          } else if (!(answer.status === 404 && errorOf(answer.body)?.code === 'INVOCATION_NOT_FOUND')) {
            missing.push({ node: answer.node, error: describeAnswer(answer.status, answer.body) });
          }
          pending -= 1;
          if (pending === 0) resolve({ missing });
        });
      }
    });
  }

  /**
   * Follows every target at once into `stream`: the recent lines of each merged (as {@link gather}
   * merges them) once each has sent them, then each new line as it comes, labelled. A member that
   * fails, ends, or leaves the cluster is announced with a `node-gone` event; the follow goes on with
   * the others, and ends when none is left. The client's going closes every upstream request.
   */
  follow(options: { targets: Targets; local: LocalFollow | undefined; path: string; stream: FollowStream; limit: number }): void {
    new MergedFollow(this, options, this.#membershipCheckMs).start();
  }
}

/** One source of a merged follow. */
interface Source {
  node: string;
  /** Its recent lines have all come. */
  live: boolean;
  gone: boolean;
  recent: Labelled<LogLine>[];
  /** Bytes read before the merged stream caught up. */
  bytes: number;
  close: () => void;
  timer?: NodeJS.Timeout | undefined;
}

/** The state of one merged follow (see {@link ClusterLogs.follow}). */
class MergedFollow {
  readonly #logs: ClusterLogs;
  readonly #options: { targets: Targets; local: LocalFollow | undefined; path: string; stream: FollowStream; limit: number };
  readonly #membershipCheckMs: number;
  readonly #sources: Source[] = [];
  /** What came after a source's recent lines, before every source sent its own (written in order once they have). */
  readonly #pending: ({ line: Labelled<LogLine> } | Missing)[] = [];
  #caughtUp = false;
  #ended = false;
  #membership: NodeJS.Timeout | undefined;

  constructor(
    logs: ClusterLogs,
    options: { targets: Targets; local: LocalFollow | undefined; path: string; stream: FollowStream; limit: number },
    membershipCheckMs: number,
  ) {
    this.#logs = logs;
    this.#options = options;
    this.#membershipCheckMs = membershipCheckMs;
  }

  start(): void {
    const { local, stream } = this.#options;
    stream.onClose(() => this.#closeAll());
    if (local) {
      const self: Source = {
        node: this.#logs.self,
        live: true,
        gone: false,
        recent: local.recent.map((line) => ({ ...line, node: this.#logs.self })),
        bytes: 0,
        close: () => local.close(),
      };
      this.#sources.push(self);
      local.live((line) => this.#line(self, { ...line, node: self.node }));
    }
    const { timeoutMs, maxAnswerBytes } = this.#logs.client;
    for (const member of this.#options.targets.remotes) {
      const source: Source = { node: member.name, live: false, gone: false, recent: [], bytes: 0, close: () => {} };
      this.#sources.push(source);
      let upstream: MemberStream | undefined;
      source.close = () => upstream?.close();
      source.timer = setTimeout(() => this.#gone(source, `its recent lines did not come within ${timeoutMs / 1000} s`), timeoutMs);
      upstream = this.#logs.client.stream(member, this.#options.path, {
        onValue: (value, bytes) => {
          if (!this.#caughtUp) {
            source.bytes += bytes;
            if (source.bytes > maxAnswerBytes) return this.#gone(source, `it sent more than ${maxAnswerBytes} bytes before its new lines: cut`);
          }
          const event = (value as { event?: unknown }).event;
          if (event === 'live') {
            source.live = true;
            clearTimeout(source.timer);
            return this.#check();
          }
          if (event !== undefined || typeof value !== 'object' || value === null) return;
          this.#line(source, { ...(value as LogLine), node: source.node });
        },
        onEnd: (error) => this.#gone(source, error ?? 'its stream ended: the node stopped, or its records closed'),
      });
      if (source.gone) upstream.close();
    }
    if (this.#options.targets.remotes.length > 0) {
      this.#membership = setInterval(() => this.#checkMembers(), this.#membershipCheckMs);
      this.#membership.unref();
    }
    this.#check();
  }

  #line(source: Source, line: Labelled<LogLine>): void {
    if (this.#ended || source.gone) return;
    if (!source.live) source.recent.push(line);
    else if (!this.#caughtUp) this.#pending.push({ line });
    else this.#options.stream.line(line);
  }

  #gone(source: Source, error: string): void {
    if (source.gone || this.#ended) return;
    source.gone = true;
    clearTimeout(source.timer);
    source.close();
    if (this.#caughtUp) this.#options.stream.event('node-gone', { node: source.node, error });
    else this.#pending.push({ node: source.node, error });
    this.#check();
    if (this.#caughtUp && this.#sources.every((s) => s.gone)) this.#end();
  }

  /** Once every source has sent its recent lines (or is gone): those merged, then what waited. */
  #check(): void {
    if (this.#caughtUp || this.#ended || !this.#sources.every((s) => s.live || s.gone)) return;
    this.#caughtUp = true;
    const { stream, limit } = this.#options;
    const parts = this.#sources.map((s) => ({ node: s.node, items: s.recent }));
    for (const source of this.#sources) source.recent = [];
    for (const line of merge(parts, (line) => line.time, false, limit)) stream.line(line);
    for (const item of this.#pending.splice(0)) {
      if ('line' in item) stream.line(item.line);
      else stream.event('node-gone', item);
    }
  }

  /** A member that left the cluster (its lease ended) is gone, even if its connection stays open (a cut network). */
  #checkMembers(): void {
    const members = new Set(this.#logs.view.members().map((m) => m.name));
    for (const source of this.#sources) {
      if (source.node !== this.#logs.self && !source.gone && !members.has(source.node)) {
        this.#gone(source, 'it left the cluster: its membership lease ended');
      }
    }
  }

  #end(): void {
    this.#closeAll();
    this.#options.stream.end();
  }

  #closeAll(): void {
    if (this.#ended) return;
    this.#ended = true;
    clearInterval(this.#membership);
    for (const source of this.#sources) {
      clearTimeout(source.timer);
      source.close();
    }
  }
}

/** A member's answer as items, as "this node knows no such function" (items undefined), or as an error. */
function itemsOf(answer: MemberAnswer, key: string): { items: object[] | undefined } | { error: string } {
  if ('error' in answer) return { error: answer.error };
  if (answer.status === 404 && errorOf(answer.body)?.code === 'FUNCTION_NOT_FOUND') return { items: undefined };
  const items = answer.status === 200 ? (answer.body as Record<string, unknown> | null)?.[key] : undefined;
  if (!Array.isArray(items)) return { error: describeAnswer(answer.status, answer.body) };
  return { items: items.filter((item): item is object => typeof item === 'object' && item !== null) };
}

function describeAnswer(status: number, body: unknown): string {
  const error = errorOf(body);
  if (error) return `it answered ${status} ${error.code}: ${error.message}`;
  return status === 200 ? 'it answered 200 without the expected fields' : `it answered ${status}`;
}

/**
 * Merges each node's items: by time (oldest first, or newest first), then by node name, then by their
 * order on their node; then the last `limit` (oldest first) or the first `limit` (newest first).
 */
export function merge<T extends object>(
  parts: readonly { node: string; items: readonly T[] }[],
  time: (item: T) => string,
  newestFirst: boolean,
  limit: number,
): Labelled<T>[] {
  const all = parts.flatMap(({ node, items }) =>
    items.map((item, index) => ({ item: { ...item, node } as Labelled<T>, ms: Date.parse(time(item)) || 0, node, index })),
  );
  const direction = newestFirst ? -1 : 1;
  all.sort((a, b) => direction * (a.ms - b.ms) || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0) || a.index - b.index);
  const items = all.map((entry) => entry.item);
  return newestFirst ? items.slice(0, limit) : items.slice(Math.max(0, items.length - limit));
}
