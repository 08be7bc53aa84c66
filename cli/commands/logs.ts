/**
 * @module
 * `fnix logs <fn>` (the function's log lines, or --follow them as they come), `fnix invocations <fn>`
 * (its invocation records, newest first) and `fnix invocation <ID>` (one record and its lines).
 * Against a cluster, lines and records carry the node that keeps them, which is printed before them;
 * `--node` asks one node, and a node that did not answer is said on stderr (docs/logs.md#in-a-cluster).
 */
import type { Command } from 'commander';
import type { InvocationRecord, LogLine, MissingNode } from '../api-types.ts';
import { chunksOf } from '../client.ts';
import { type CliContext, jsonOption } from '../context.ts';
import { CliError } from '../errors.ts';
import { formatBytes, formatDuration, formatFields, formatJson, formatTable, type Palette } from '../output.ts';
import { parseCount, sinceParam } from '../since.ts';

/** Registers `logs`, `invocations` and `invocation`. */
export function registerLogs(program: Command, context: CliContext): void {
  jsonOption(
    program
      .command('logs')
      .description("a function's log lines (its stderr, a serve instance's stdout and stderr), oldest first")
      .argument('<fn>', 'the function')
      .option('-f, --follow', 'keep printing new lines as they come, until interrupted')
      .option('--since <when>', 'only lines since then: a duration back from now (30s, 10m, 2h, 7d) or an ISO time')
      .option('--invocation <id>', "only this invocation's lines")
      .option('--limit <n>', 'at most the last n lines (default 100, at most 10000)')
      .option('--node <name>', 'in a cluster: only the lines kept on this node'),
  ).action(async (name: string, options: { follow?: boolean; since?: string; invocation?: string; limit?: string; node?: string; json?: boolean }) => {
    const query = new URLSearchParams();
    if (options.since) query.set('since', sinceParam(options.since));
    if (options.limit) query.set('limit', String(parseCount(options.limit, '--limit', 10_000)));
    if (options.invocation) query.set('invocation', options.invocation);
    if (options.node) query.set('node', options.node);
    const client = await context.client();
    const path = `/api/functions/${encodeURIComponent(name)}/logs`;
    const { out, paint } = context.output;
    const print = (line: LogLine) => out(options.json ? `${JSON.stringify(line)}\n` : formatLogLine(line, paint));
    if (!options.follow) {
      const answer = await client.json<{ lines: LogLine[]; missing?: MissingNode[] }>(`${path}?${query}`);
      if (options.json) return out(formatJson(answer));
      for (const line of answer.lines) print(line);
      for (const missing of answer.missing ?? []) context.output.err(describeMissing(missing, 'lines', context.output.paintErr));
      return;
    }
    query.set('follow', '1');
    const response = await client.fetch(`${path}?${query}`, { headers: { accept: 'application/x-ndjson' } });
    if (!response.ok) throw client.errorOf(response, await client.text(response));
    // A connection that breaks (the gateway stopped) ends it with CONNECTION_LOST, exit 3.
    for await (const value of ndjson(response.body!, client.url)) {
      const event = (value as { event?: unknown }).event;
      if (event === undefined) print(value as LogLine);
      else if (options.json) out(`${JSON.stringify(value)}\n`);
      // A node that failed, stopped or left the cluster: the others' lines go on.
      else if (event === 'node-gone') context.output.err(describeGone(value as MissingNode, context.output.paintErr));
    }
  });

  jsonOption(
    program
      .command('invocations')
      .description("a function's invocation records, newest first")
      .argument('<fn>', 'the function')
      .option('--limit <n>', 'at most n records')
      .option('--since <when>', 'only those since then (30s, 10m, 2h, 7d, or an ISO time)')
      .option('--outcome <code>', 'only those with this outcome (OK, FUNCTION_FAILED, ...)')
      .option('--node <name>', 'in a cluster: only the records kept on this node'),
  ).action(async (name: string, options: { limit?: string; since?: string; outcome?: string; node?: string; json?: boolean }) => {
    const query = new URLSearchParams();
    if (options.limit) query.set('limit', String(parseCount(options.limit, '--limit')));
    if (options.since) query.set('since', sinceParam(options.since));
    if (options.outcome) query.set('outcome', options.outcome);
    if (options.node) query.set('node', options.node);
    const answer = await (await context.client()).json<{ invocations: InvocationRecord[]; missing?: MissingNode[] }>(
      `/api/functions/${encodeURIComponent(name)}/invocations?${query}`,
    );
    if (options.json) return context.output.out(formatJson(answer));
    context.output.out(describeInvocations(answer.invocations, context.output.paint));
    for (const missing of answer.missing ?? []) context.output.err(describeMissing(missing, 'records', context.output.paintErr));
  });

  jsonOption(
    program
      .command('invocation')
      .description('one invocation: its record and its log lines')
      .argument('<id>', 'the invocation id')
      .option('--node <name>', 'in a cluster: ask this node only'),
  ).action(async (id: string, options: { node?: string; json?: boolean }) => {
    const query = options.node ? `?${new URLSearchParams({ node: options.node })}` : '';
    const answer = await (await context.client()).json<{ invocation: InvocationRecord; lines: LogLine[] }>(
      `/api/invocations/${encodeURIComponent(id)}${query}`,
    );
    if (options.json) return context.output.out(formatJson(answer));
    const { paint } = context.output;
    context.output.out(describeInvocation(answer.invocation, paint));
    // The record names the node; its lines are all from there.
    const lines = answer.lines.map(({ node: _node, ...line }) => formatLogLine(line, paint));
    context.output.out(lines.length ? `\n${lines.join('')}` : '\nno log lines\n');
  });
}

/** A log line as people read it: `time stream [invocation] line`, after its node in a cluster (`n2 time ...`). */
export function formatLogLine(line: LogLine, paint: Palette): string {
  const stream = line.stream === 'stderr' ? paint.yellow('stderr') : line.stream === 'fnix' ? paint.dim('fnix  ') : 'stdout';
  const source = line.invocationId ?? line.instance;
  const node = line.node ? `${paint.bold(line.node)} ` : '';
  return `${node}${paint.dim(line.time)} ${stream} ${source ? `[${source}] ` : ''}${line.line}\n`;
}

/** A node whose lines (or records) are not in the answer: `fnix: n3 did not answer, so its lines are not shown: <why>`. */
export function describeMissing(missing: MissingNode, what: 'lines' | 'records', paint: Palette): string {
  return paint.yellow(`fnix: ${missing.node} did not answer, so its ${what} are not shown: ${missing.error}\n`);
}

/** A node gone from a follow: `fnix: n3 is gone from the stream: <why>`; the others' lines go on. */
export function describeGone(gone: MissingNode, paint: Palette): string {
  return paint.yellow(`fnix: ${gone.node} is gone from the stream: ${gone.error}\n`);
}

/** An outcome, green when OK. */
function outcomeOf(record: InvocationRecord, paint: Palette): string {
  return record.outcome === 'OK' ? paint.green('OK') : paint.red(record.outcome);
}

/** Invocation records as a table. */
export function describeInvocations(records: readonly InvocationRecord[], paint: Palette): string {
  if (records.length === 0) return 'no invocations\n';
  // In a cluster, each record's node comes first.
  const nodes = records.some((r) => r.node !== undefined);
  return formatTable(
    [...(nodes ? ['NODE'] : []), 'ID', 'STARTED', 'KIND', 'OUTCOME', 'STATUS', 'EXIT', 'DURATION', 'IN', 'OUT', 'START'],
    records.map((r) => [
      ...(nodes ? [r.node ?? '-'] : []),
      r.id,
      r.startedAt,
      r.kind,
      outcomeOf(r, paint),
      r.status === null ? '-' : String(r.status),
      r.signal ?? (r.exitCode === null ? '-' : String(r.exitCode)),
      formatDuration(r.durationMs),
      formatBytes(r.bytesIn),
      formatBytes(r.bytesOut),
      r.cold === null ? '-' : r.cold ? 'cold' : 'warm',
    ]),
    paint.bold,
  );
}

/** One invocation record, field by field. */
export function describeInvocation(r: InvocationRecord, paint: Palette): string {
  const fields: [string, string][] = [
    ['id', r.id],
    ...(r.node ? [['node', r.node] as [string, string]] : []),
    ['function', `${r.function} (version ${r.version}${r.deployment ? `, deployment ${r.deployment}` : ''})`],
    ['kind', r.kind],
    ['started', r.startedAt],
    ['duration', formatDuration(r.durationMs)],
    ['outcome', outcomeOf(r, paint)],
  ];
  if (r.status !== null) fields.push(['status', String(r.status)]);
  if (r.exitCode !== null) fields.push(['exit code', String(r.exitCode)]);
  if (r.signal !== null) fields.push(['signal', r.signal]);
  fields.push(['bytes', `${formatBytes(r.bytesIn)} in, ${formatBytes(r.bytesOut)} out`]);
  if (r.cold !== null) fields.push(['start', r.cold ? 'cold' : 'warm']);
  if (r.instance) fields.push(['instance', r.instance]);
  if (r.container) fields.push(['container', r.container]);
  return formatFields(fields, paint.bold);
}

/**
 * The JSON values of an NDJSON stream from `url`, one per line, as they come; CONNECTION_LOST when the
 * connection breaks, BAD_ANSWER for a line that is not JSON.
 */
export async function* ndjson(body: ReadableStream<Uint8Array>, url: string): AsyncGenerator<unknown> {
  const decoder = new TextDecoder();
  let pending = '';
  const parse = (line: string) => {
    try {
      return JSON.parse(line) as unknown;
    } catch (error) {
      throw new CliError('BAD_ANSWER', `${url} sent a line that is not JSON: ${line.slice(0, 200)}`, { cause: error });
    }
  };
  for await (const chunk of chunksOf(body, url)) {
    pending += decoder.decode(chunk, { stream: true });
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line) yield parse(line);
      newline = pending.indexOf('\n');
    }
  }
  if (pending.trim()) yield parse(pending);
}
