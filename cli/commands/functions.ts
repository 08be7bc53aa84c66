/**
 * @module
 * `fnix ls` and `fnix show <fn>`: the functions being served (/api/functions), and one of them with its
 * version, packages, closure and, for a serve function, its instances.
 */
import type { Command } from 'commander';
import type { Closure, FunctionView } from '../api-types.ts';
import { type CliContext, jsonOption } from '../context.ts';
import { formatAge, formatBytes, formatFields, formatJson, formatTable, type Palette } from '../output.ts';

/** Registers `ls` and `show`. */
export function registerFunctions(program: Command, context: CliContext): void {
  jsonOption(program.command('ls').description('the functions being served')).action(async (options: { json?: boolean }) => {
    const answer = await (await context.client()).json<{ functions: FunctionView[]; closure: Closure }>('/api/functions');
    if (options.json) return context.output.out(formatJson(answer));
    context.output.out(describeFunctions(answer.functions, answer.closure, context.output.paint));
  });

  jsonOption(program.command('show').description('one function: version, packages, closure, instances').argument('<fn>', 'the function')).action(
    async (name: string, options: { json?: boolean }) => {
      const fn = await (await context.client()).json<FunctionView>(`/api/functions/${encodeURIComponent(name)}`);
      if (options.json) return context.output.out(formatJson(fn));
      context.output.out(describeFunction(fn, context.output.paint));
    },
  );
}

/** The functions as a table, and their closures' union. */
export function describeFunctions(functions: readonly FunctionView[], union: Closure | undefined, paint: Palette): string {
  if (functions.length === 0) return 'no functions are served\n';
  const rows = functions.map((f) => [
    f.name,
    f.status === 'ready' ? paint.green('ready') : paint.red('broken'),
    f.version ?? '-',
    f.packages?.join(' ') || '-',
    f.closure ? `${formatBytes(f.closure.totalBytes)}` : f.error ? paint.red(f.error.code) : '-',
  ]);
  const total = union ? `\n${functions.length} functions; their closures together: ${union.count} store paths, ${formatBytes(union.totalBytes)}\n` : '';
  return formatTable(['NAME', 'STATUS', 'VERSION', 'PACKAGES', 'CLOSURE'], rows, paint.bold) + total;
}

/** One function, field by field. */
export function describeFunction(fn: FunctionView, paint: Palette): string {
  const fields: [string, string][] = [
    ['name', fn.name],
    ['status', fn.status === 'ready' ? paint.green('ready') : paint.red('broken')],
  ];
  if (fn.error) fields.push(['error', `${paint.red(fn.error.code)}: ${fn.error.message}`]);
  if (fn.version) fields.push(['version', fn.version]);
  if (fn.deployment) fields.push(['deployment', `${fn.deployment}${fn.commit ? ` (commit ${fn.commit.slice(0, 12)})` : ''}`]);
  if (fn.command) fields.push(['command', fn.command.join(' ')]);
  if (fn.packages) fields.push(['packages', fn.packages.join(' ') || '(none)']);
  for (const path of fn.storePaths ?? []) fields.push(['', path]);
  if (fn.closure) fields.push(['closure', `${fn.closure.count} store path${fn.closure.count === 1 ? '' : 's'}, ${formatBytes(fn.closure.totalBytes)}`]);
  if (fn.limits)
    fields.push([
      'limits',
      Object.entries(fn.limits)
        .map(([key, value]) => `${key} ${value}`)
        .join(', '),
    ]);
  let text = formatFields(fields, paint.bold);
  if (fn.instances) {
    text +=
      fn.instances.length === 0
        ? '\nno instances\n'
        : `\n${formatTable(
            ['INSTANCE', 'STATE', 'VERSION', 'IN FLIGHT', 'REQUESTS', 'STARTED', 'CONTAINER'],
            fn.instances.map((i) => [i.id, i.state, i.version, String(i.inFlight), String(i.requests), formatAge(i.startedAt), i.container]),
            paint.bold,
          )}`;
  }
  return text;
}
