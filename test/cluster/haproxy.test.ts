/**
 * @module
 * The HAProxy configuration generator (cluster/haproxy.ts) as text: every member a server, /git/ to the
 * builder-eligible ones, the same text for the same members in any order, stable server ids, and clear
 * refusals of what HAProxy could not use. `fnix cluster status` and `fnix cluster haproxy-config` run
 * in-process against a local HTTP server standing in for a node's /api/cluster. That HAProxy accepts
 * and routes by the output is test/cluster/haproxy-real.podman.test.ts.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HaproxyConfigError, type HaproxyMember, haproxyConfig } from '../../cluster/haproxy.ts';
import type { ClusterStatus } from '../../cli/api-types.ts';
import { FnixClient } from '../../cli/client.ts';
import { describeCluster, registerCluster } from '../../cli/commands/cluster.ts';
import type { CliContext } from '../../cli/context.ts';
import { CliError } from '../../cli/errors.ts';
import { paletteFor } from '../../cli/output.ts';

const MEMBERS: HaproxyMember[] = [
  { name: 'node-b', url: 'http://10.0.0.2:8080', builderEligible: true },
  { name: 'node-a', url: 'http://10.0.0.1:8080', builderEligible: true },
  { name: 'node-c', url: 'http://10.0.0.3', builderEligible: false },
];

/** The lines of `section` (`backend fnix_nodes`), up to the next blank line. */
function section(text: string, header: string): string[] {
  const lines = text.split('\n');
  const start = lines.indexOf(header);
  expect(start, `no "${header}" in the configuration`).toBeGreaterThanOrEqual(0);
  const end = lines.indexOf('', start);
  return lines.slice(start + 1, end).map((l) => l.trim());
}

const servers = (lines: string[]) => lines.filter((l) => l.startsWith('server '));

describe('haproxyConfig', () => {
  it('makes every member a checked server of the nodes, in name order, and only the builder-eligible ones servers of /git/', () => {
    const text = haproxyConfig({ members: MEMBERS });
    const nodes = servers(section(text, 'backend fnix_nodes'));
    expect(nodes.map((l) => l.split(' ').slice(0, 3).join(' '))).toEqual([
      'server node-a 10.0.0.1:8080',
      'server node-b 10.0.0.2:8080',
      'server node-c 10.0.0.3:80',
    ]);
    for (const line of nodes) expect(line).toMatch(/ id \d+ check$/);
    expect(servers(section(text, 'backend fnix_builder')).map((l) => l.split(' ')[1])).toEqual(['node-a', 'node-b']);
    expect(section(text, 'backend fnix_builder')).toContain('http-check send meth GET uri /cluster/builder ver HTTP/1.1 hdr Host localhost');
  });

  it('sends /git/ to the builder, refuses /cluster/ with 404, and sends the rest to the nodes', () => {
    const front = section(haproxyConfig({ members: MEMBERS }), 'frontend fnix');
    expect(front).toContain('bind *:80');
    expect(front).toContain('acl fnix_git path,url_dec -m reg ^/+git/');
    expect(front).toContain('use_backend fnix_builder if fnix_git');
    expect(front).toContain('default_backend fnix_nodes');
    expect(front).toContain('acl fnix_internal path,url_dec -m reg ^/+cluster(/|$)');
    const refusal = front.find((l) => l.startsWith('http-request return status 404'))!;
    expect(refusal).toMatch(/ if fnix_internal$/);
    // The body is a gateway-shaped error, which the CLI reads.
    const body = /string '([^']*)'/.exec(refusal)![1]!;
    expect(JSON.parse(body).error.code).toBe('ROUTE_NOT_FOUND');
  });

  it('hashes on the function name, consistently, and resends only idempotent requests once sent', () => {
    const nodes = section(haproxyConfig({ members: MEMBERS }), 'backend fnix_nodes');
    expect(nodes).toContain('http-request set-var(txn.fnix_function) path,field(3,/) if { path_beg /fn/ /sessions/ }');
    expect(nodes).toContain('balance hash var(txn.fnix_function)');
    expect(nodes).toContain('hash-type consistent');
    expect(nodes).toContain('http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost');
    expect(nodes).toContain('retry-on conn-failure empty-response');
    expect(nodes).toContain('http-request disable-l7-retry unless { method GET HEAD OPTIONS }');
    expect(nodes.join('\n')).not.toMatch(/^retry-on .*response-timeout/m);
    expect(nodes.join('\n')).not.toMatch(/^default-server .*(layer7|shutdown-sessions)/m);
  });

  it('gives the same text for the same members in any order, and keeps a server id when others join or leave', () => {
    const once = haproxyConfig({ members: MEMBERS, bind: '127.0.0.1:8000' });
    expect(haproxyConfig({ members: [...MEMBERS].reverse(), bind: '127.0.0.1:8000' })).toBe(once);
    const idOf = (text: string, name: string) =>
      servers(section(text, 'backend fnix_nodes'))
        .find((l) => l.startsWith(`server ${name} `))!
        .split(' ')[4];
    const fewer = haproxyConfig({ members: MEMBERS.filter((m) => m.name !== 'node-a') });
    const more = haproxyConfig({ members: [...MEMBERS, { name: 'node-0', url: 'http://10.0.0.9:8080', builderEligible: false }] });
    for (const name of ['node-b', 'node-c']) {
      expect(idOf(fewer, name)).toBe(idOf(once, name));
      expect(idOf(more, name)).toBe(idOf(once, name));
    }
    const ids = servers(section(once, 'backend fnix_nodes')).map((l) => Number(l.split(' ')[4]));
    expect(new Set(ids).size).toBe(3);
    for (const id of ids) expect(id).toBeLessThan(2 ** 20);
  });

  it('takes the options it is given, and says where the members came from', () => {
    const text = haproxyConfig({
      members: MEMBERS,
      bind: '*:443 ssl crt /etc/haproxy/site.pem',
      serverTimeout: '16m',
      pushTimeout: '30m',
      source: 'http://n1/api/cluster',
    });
    expect(section(text, 'frontend fnix')).toContain('bind *:443 ssl crt /etc/haproxy/site.pem');
    expect(section(text, 'defaults')).toContain('timeout server 16m');
    expect(section(text, 'backend fnix_builder')).toContain('timeout server 30m');
    expect(text).toContain('from http://n1/api/cluster');
  });

  it('sanitises names HAProxy could not take', () => {
    const text = haproxyConfig({ members: [{ name: 'a b/c', url: 'http://10.0.0.1:1', builderEligible: false }] });
    expect(servers(section(text, 'backend fnix_nodes'))[0]).toMatch(/^server a_b_c 10\.0\.0\.1:1 /);
  });

  const refusals: [string, HaproxyMember[], RegExp][] = [
    ['no members', [], /no members/],
    [
      'a URL that is not one',
      [{ name: 'x', url: 'not a url', builderEligible: true }],
      /member "x" has the URL "not a url", which is not a URL: its FNIX_NODE_URL must be http:/,
    ],
    ['https', [{ name: 'x', url: 'https://10.0.0.1:8443', builderEligible: true }], /plain HTTP/],
    ['a path', [{ name: 'x', url: 'http://10.0.0.1:8080/fnix', builderEligible: true }], /more than a host and a port/],
    ['credentials', [{ name: 'x', url: 'http://u:p@10.0.0.1:8080', builderEligible: true }], /more than a host and a port/],
    [
      'two names that become one',
      [
        { name: 'a b', url: 'http://10.0.0.1:1', builderEligible: true },
        { name: 'a_b', url: 'http://10.0.0.2:1', builderEligible: true },
      ],
      /same name in HAProxy \(a_b\)/,
    ],
    [
      'two members at one URL',
      [
        { name: 'a', url: 'http://10.0.0.1:8080', builderEligible: true },
        { name: 'b', url: 'http://10.0.0.1:8080/', builderEligible: true },
      ],
      /both say they are at 10\.0\.0\.1:8080/,
    ],
  ];
  for (const [what, members, message] of refusals) {
    it(`refuses ${what}, saying why`, () => {
      expect(() => haproxyConfig({ members })).toThrow(message);
      try {
        haproxyConfig({ members });
      } catch (error) {
        expect(error).toBeInstanceOf(HaproxyConfigError);
        expect((error as HaproxyConfigError).code).toBe('HAPROXY_CONFIG_INVALID');
        expect((error as HaproxyConfigError).option).toBeUndefined();
      }
    });
  }

  it('refuses options that would break the file, naming the option', () => {
    for (const [options, option] of [
      [{ bind: '*:80\n    server evil 1.2.3.4:80' }, 'bind'],
      [{ bind: "*:80 '" }, 'bind'],
      [{ bind: '' }, 'bind'],
      [{ serverTimeout: '1 minute' }, 'serverTimeout'],
      [{ pushTimeout: '5m\n' }, 'pushTimeout'],
    ] as const) {
      let caught: unknown;
      try {
        haproxyConfig({ members: MEMBERS, ...options });
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(HaproxyConfigError);
      expect((caught as HaproxyConfigError).option).toBe(option);
    }
    // A source with a newline stays one comment line.
    expect(haproxyConfig({ members: MEMBERS, source: 'x\nserver evil 1.2.3.4:80' })).not.toMatch(/^server evil/m);
  });
});

const STATUS: ClusterStatus = {
  self: 'node-b',
  builder: 'node-a',
  members: [
    { name: 'node-c', url: 'http://10.0.0.3:8080', builderEligible: false, since: '2026-12-02T00:58:00.000Z' },
    { name: 'node-a', url: 'http://10.0.0.1:8080', builderEligible: true, since: '2026-12-02T00:55:00.000Z' },
    { name: 'node-b', url: 'http://10.0.0.2:8080', builderEligible: true, since: '2026-12-02T00:55:00.000Z' },
  ],
  live: { deployment: 'd-42', revision: '117', by: 'node-a', at: '2026-12-02T00:59:00.000Z' },
  acks: {
    'node-a': { deployment: 'd-42', ok: true },
    'node-b': { deployment: 'd-42', ok: false, error: 'store path missing' },
  },
};
const NOW = Date.parse('2026-12-02T01:00:00.000Z');

describe('fnix cluster', () => {
  let server: Server;
  let url: string;
  let answer: { status: number; body: unknown } = { status: 200, body: STATUS };
  const asked: { path: string; authorization: string | undefined }[] = [];

  beforeAll(async () => {
    server = createServer((request, response) => {
      asked.push({ path: request.url!, authorization: request.headers.authorization });
      response.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  /** Runs `fnix cluster <args>` in-process: what it printed, or the error it threw. */
  async function fnix(...args: string[]): Promise<{ out: string; error?: unknown }> {
    let out = '';
    const program = new Command('fnix').exitOverride();
    const plain = paletteFor(false);
    const context: CliContext = {
      env: {},
      output: {
        paint: plain,
        paintErr: plain,
        out: (text) => {
          out += text;
        },
        err: () => {},
      },
      settings: async () => ({ url, token: 'the-token', tokenSource: 'FNIX_TOKEN', key: undefined, credentialsPath: '/nonexistent' }),
      client: async () => new FnixClient(await context.settings()),
      exitCode: 0,
    };
    registerCluster(program, context);
    try {
      await program.parseAsync(['node', 'fnix', 'cluster', ...args]);
      return { out };
    } catch (error) {
      return { out, error };
    }
  }

  it('status: the builder, the live deployment and which node serves it, from /api/cluster with the token', async () => {
    answer = { status: 200, body: STATUS };
    const { out, error } = await fnix('status');
    expect(error).toBeUndefined();
    expect(asked.at(-1)).toEqual({ path: '/api/cluster', authorization: 'Bearer the-token' });
    expect(out).toMatch(/^builder +node-a$/m);
    expect(out).toMatch(/^live +d-42 \(etcd revision 117\), made live by node-a .*; 1 of 3 serve it$/m);
    const table = describeCluster(STATUS, paletteFor(false), NOW);
    expect(table).toContain('live     d-42 (etcd revision 117), made live by node-a 1 m ago; 1 of 3 serve it');
    expect(table.split('\n').filter((l) => l.startsWith('node-'))).toEqual([
      'node-a    http://10.0.0.1:8080  builder   5 m ago       yes',
      'node-b *  http://10.0.0.2:8080  eligible  5 m ago       failed: store path missing',
      'node-c    http://10.0.0.3:8080  no        2 m ago       not yet',
    ]);
  });

  it('status --json: the answer as it came', async () => {
    answer = { status: 200, body: STATUS };
    const { out } = await fnix('status', '--json');
    expect(JSON.parse(out)).toEqual(STATUS);
  });

  it('haproxy-config: the configuration for the members /api/cluster lists', async () => {
    answer = { status: 200, body: STATUS };
    const { out, error } = await fnix('haproxy-config', '--bind', '127.0.0.1:8000');
    expect(error).toBeUndefined();
    expect(out).toBe(haproxyConfig({ members: STATUS.members, bind: '127.0.0.1:8000', source: `${url}/api/cluster (node node-b)` }));
  });

  it('haproxy-config: a bad flag is a usage error, a bad member an error naming it', async () => {
    answer = { status: 200, body: STATUS };
    const flag = (await fnix('haproxy-config', '--server-timeout', 'soon')).error as CliError;
    expect(flag).toBeInstanceOf(CliError);
    expect(flag.code).toBe('USAGE');
    expect(flag.message).toBe('--server-timeout is "soon": expected an HAProxy duration such as 60s, 5m or 1h');
    answer = { status: 200, body: { ...STATUS, members: [{ name: 'x', url: 'https://10.0.0.1', builderEligible: true, since: STATUS.live!.at }] } };
    const member = (await fnix('haproxy-config')).error as CliError;
    expect(member.code).toBe('HAPROXY_CONFIG_INVALID');
    expect(member.message).toMatch(/member "x" is at "https:\/\/10\.0\.0\.1"/);
    expect(member.exitCode).toBe(1);
  });

  it('says so when the gateway is not in a cluster', async () => {
    answer = { status: 404, body: { error: { code: 'ROUTE_NOT_FOUND', message: 'no route for GET /api/cluster' } } };
    const error = (await fnix('status')).error as CliError;
    expect(error.code).toBe('ROUTE_NOT_FOUND');
    expect(error.message).toBe(`${url} is not a node of a cluster (it has no /api/cluster)`);
    expect(error.hint).toMatch(/FNIX_CLUSTER_ETCD/);
  });
});
