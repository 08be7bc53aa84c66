/**
 * @module
 * The HAProxy configuration in front of a cluster, made from its membership (`GET /api/cluster`):
 * a pure function, no I/O, and no imports but a type, so that the CLI (`fnix cluster haproxy-config`)
 * can use it without pulling in the server (test/architecture.test.ts allows cli/ this file alone).
 * Written for HAProxy 2.6 (Debian 12's); the output explains each choice in its own comments.
 *
 * Why each choice:
 * - **One function, one node.** `balance hash` on the function's name (the third field of
 *   `/fn/<name>/...` and `/sessions/<name>`), not `balance uri depth N`: a URI prefix cannot send
 *   `/fn/x` and `/sessions/x` to the same node, and the name can. `hash-type consistent` moves only a
 *   dead node's functions when it goes, and each server's `id` comes from its name (consistent hashing
 *   places a server on the ring by its id, which HAProxy otherwise numbers by position): a node that
 *   joins or leaves does not reshuffle the others, and two HAProxies with the same members agree.
 *   `weight 100` puts 1600 points per server on the ring instead of 16, for an even spread.
 * - **A dead node fails fast.** Checks of `/healthz` every second (half a second while failing), down
 *   after two failures; `timeout connect 1s`; `observe layer4` marks a node down after three refused
 *   connections of real traffic, before the checks notice. Not `observe layer7`: it counts a function's
 *   own 500s and 503s against the node, and one failing function would take the nodes down one by one.
 * - **No POST runs twice.** `retries 2` with `option redispatch 1` (each retry on another node).
 *   Every request is retried when it could not be sent (`conn-failure`). GET, HEAD and OPTIONS are
 *   retried too when the node closed the connection without an answer (`empty-response`): HAProxy
 *   keeps idle connections to the nodes, and a request sent on one that a dying node has just closed
 *   fails so; HTTP lets a client retry those methods, and browsers do. Other methods are not
 *   (`http-request disable-l7-retry`): the node may have run the invocation. Never
 *   `response-timeout`: a slow function would run again. (`option http-server-close` would avoid
 *   reused connections instead, but measured here it cost 4.5 times the throughput.)
 * - **No `on-marked-down shutdown-sessions`.** A node is marked down when its /healthz answers 503:
 *   while it shuts down and drains (FNIX_SHUTDOWN_GRACE_MS), or when it is stale under
 *   FNIX_CLUSTER_STALE=unhealthy. Its in-flight requests and open sessions should finish then, not be cut.
 * - **WebSockets.** `timeout tunnel 1h` replaces the client and server timeouts once a connection is
 *   upgraded (the sessions ping every 15 s); `timeout client-fin`/`server-fin` bound half-closed ones.
 * - **Pushes to the builder.** `/git/`'s backend holds every builder-eligible member and checks
 *   `/cluster/builder`, which answers 200 on the elected builder alone; `timeout server 15m`, as a
 *   push builds before it answers.
 * - **The cluster's routes refused.** `/cluster/` (the builder's binary cache and its check) is for
 *   the nodes and for these checks: nodes reach each other directly, never through HAProxy.
 */
import type { ClusterMember } from './view.ts';

/** What the configuration needs of a member. */
export type HaproxyMember = Pick<ClusterMember, 'name' | 'url' | 'builderEligible'>;

/** Options of {@link haproxyConfig}. */
export interface HaproxyOptions {
  /** The members, as `GET /api/cluster` lists them; their order does not matter. */
  members: readonly HaproxyMember[];
  /** The frontend's `bind` line: `*:80`, `127.0.0.1:8080`, `*:443 ssl crt /etc/haproxy/site.pem`. @default '*:80' */
  bind?: string | undefined;
  /**
   * How long HAProxy waits for a node's answer. It must outlast your longest function's `timeoutMs`
   * (30 s by default, at most 15 m) plus FNIX_QUEUE_TIMEOUT (10 s). @default '60s'
   */
  serverTimeout?: string | undefined;
  /** How long a push may take to answer (it builds first). @default '15m' */
  pushTimeout?: string | undefined;
  /** Where the members came from, said in the header comment (`http://10.0.0.2:8080/api/cluster`). */
  source?: string | undefined;
}

/** A member or an option the configuration cannot be made from. */
export class HaproxyConfigError extends Error {
  override readonly name = 'HaproxyConfigError';
  /** Stable, as the CLI reports it. */
  readonly code = 'HAPROXY_CONFIG_INVALID';
  /** The option at fault (`bind`, `serverTimeout`, `pushTimeout`); undefined when it is the members. */
  readonly option: string | undefined;

  constructor(message: string, option?: string) {
    super(message);
    this.option = option;
  }
}

/** A server of the configuration: a member, checked and named for HAProxy. */
interface Server {
  member: HaproxyMember;
  /** Its name in HAProxy: the member's, with anything but letters, digits, `_`, `.` and `-` made `_`. */
  name: string;
  /** `host:port`. */
  address: string;
  /** A stable `id`, from the name. */
  id: number;
}

/** HAProxy's time format: a number and a unit (`us`, `ms`, `s`, `m`, `h`, `d`; milliseconds without one). */
const DURATION = /^[0-9]{1,9}(us|ms|s|m|h|d)?$/;
/** Server ids stay below 2^20: HAProxy places a server on the consistent-hash ring at hash(id * 4096 + n), in 32 bits. */
const ID_SPACE = 1_000_000;

/**
 * The configuration, as the text of an haproxy.cfg. The same members give the same text, whatever
 * their order. Throws {@link HaproxyConfigError} for no members, a member URL HAProxy cannot use
 * (not `http://host[:port]`), two members with one name or one URL, or a malformed option.
 */
export function haproxyConfig(options: HaproxyOptions): string {
  const bind = options.bind ?? '*:80';
  if (!/^[^\s#'"\\][^#'"\\\r\n]*$/.test(bind) || bind.trim() !== bind) {
    throw new HaproxyConfigError(
      `bind is ${JSON.stringify(bind)}: expected an HAProxy bind address such as *:80 or 127.0.0.1:8080, on one line, without # or quotes`,
      'bind',
    );
  }
  const serverTimeout = duration(options.serverTimeout ?? '60s', 'serverTimeout');
  const pushTimeout = duration(options.pushTimeout ?? '15m', 'pushTimeout');
  const servers = serversOf(options.members);
  const builders = servers.filter((s) => s.member.builderEligible);
  const source = (options.source ?? '').replace(/[\r\n]+/g, ' ').trim();
  const names = (list: Server[]) => (list.length ? list.map((s) => s.name).join(', ') : 'none');

  const lines: string[] = [
    `# HAProxy (2.6 or later) in front of a fnix cluster: ${servers.length} node${servers.length === 1 ? '' : 's'} (${names(servers)}),`,
    `# ${builders.length} of them builder-eligible (${names(builders)}).`,
    `# Made by \`fnix cluster haproxy-config\`${source ? ` from ${source}` : ''}. It holds the membership as it was then:`,
    '# make it again and reload HAProxy (systemctl reload haproxy) when a node joins or leaves.',
    '',
    'global',
    '    log stdout format raw local0',
    '',
    'defaults',
    '    mode http',
    '    log global',
    '    option httplog',
    '    option dontlognull',
    '    # The client address, for the functions (the gateway appends it to X-Forwarded-For).',
    '    option forwardfor',
    '    timeout connect 2s',
    '    timeout client 60s',
    `    # Waiting for a node's answer: longer than the longest function timeout plus FNIX_QUEUE_TIMEOUT.`,
    `    timeout server ${serverTimeout}`,
    '    timeout http-request 10s',
    '    timeout http-keep-alive 10s',
    "    # A WebSocket (a session, or a serve function's socket) once upgraded: idle for up to an hour",
    '    # (sessions ping every 15 s); the fin timeouts bound connections that one side half-closed.',
    '    timeout tunnel 1h',
    '    timeout client-fin 5s',
    '    timeout server-fin 5s',
    '    timeout check 1s',
    '',
    'frontend fnix',
    `    bind ${bind}`,
    "    # /cluster/ is for the nodes (the builder's binary cache) and for the checks below: nodes reach",
    '    # each other directly, never through here. Matched decoded, and with any number of leading',
    '    # slashes, so that /%63luster/ is refused too.',
    '    acl fnix_internal path,url_dec -m reg ^/+cluster(/|$)',
    `    http-request return status 404 content-type application/json string '${errorBody('ROUTE_NOT_FOUND', 'the /cluster/ routes are for the nodes of the cluster, not for clients of the load balancer')}' hdr x-fnix-error ROUTE_NOT_FOUND if fnix_internal`,
    '    # Pushes (git over HTTP) go to the builder; everything else to the nodes.',
    '    acl fnix_git path,url_dec -m reg ^/+git/',
    '    use_backend fnix_builder if fnix_git',
    '    default_backend fnix_nodes',
    '',
    'backend fnix_nodes',
    '    # Every request for one function goes to one node, where its containers are warm: the hash of',
    '    # its name, the third field of /fn/<name>/... and of /sessions/<name> (WebSocket sessions).',
    "    # Other paths (/api/, /healthz, the terminal page's files) have no name and go round robin.",
    '    http-request set-var(txn.fnix_function) path,field(3,/) if { path_beg /fn/ /sessions/ }',
    '    balance hash var(txn.fnix_function)',
    "    # Consistent: a node that goes down moves only its own functions. Each server's id comes from",
    '    # its name (the ring is built from ids), so that the others keep theirs when nodes join or leave.',
    '    hash-type consistent',
    '    # HTTP/1.1 with a Host (localhost, which every node accepts): fnix refuses a request without one.',
    '    option httpchk',
    '    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost',
    '    http-check expect status 200',
    '    # A node that does not accept a connection within 1 s is dead to this request: try another.',
    '    timeout connect 1s',
    '    # Retries, each on another node (redispatch 1): any request that could not be sent',
    '    # (conn-failure); GET, HEAD and OPTIONS also when the node closed the connection without an',
    '    # answer (empty-response: a kept-alive connection that a dying node had just closed). Other',
    '    # methods are never resent: the node may have run the invocation, and a POST must not run',
    '    # twice. Not response-timeout: a slow function would run again.',
    '    retries 2',
    '    option redispatch 1',
    '    retry-on conn-failure empty-response',
    '    http-request disable-l7-retry unless { method GET HEAD OPTIONS }',
    '    # Checked every 1 s (every 0.5 s while failing), down after 2 failed checks, up after 2 good ones.',
    '    # observe layer4: 3 refused connections of real traffic mark a node down before its checks do.',
    "    # Not layer7, which would count a function's own 5xx answers against the node. No",
    '    # on-marked-down shutdown-sessions: a node marked down because its /healthz answers 503 is',
    '    # draining (shutdown) or stale, and its requests and sessions in flight should finish.',
    '    # weight 100 gives each server 1600 points on the hash ring (16 at weight 1): an even spread.',
    '    default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 2 weight 100 observe layer4 error-limit 3 on-error mark-down',
    `    http-error status 503 content-type application/json string '${errorBody('CLUSTER_UNAVAILABLE', 'no fnix node is up behind the load balancer')}' hdr x-fnix-error CLUSTER_UNAVAILABLE`,
    ...servers.map(serverLine),
    '',
    'backend fnix_builder',
    '    # The builder-eligible nodes; /cluster/builder answers 200 on the elected builder and 503 on the',
    '    # others, so that exactly one is up here. After an election the new builder is up within a second.',
    '    balance first',
    '    option httpchk',
    '    http-check send meth GET uri /cluster/builder ver HTTP/1.1 hdr Host localhost',
    '    http-check expect status 200',
    '    timeout connect 1s',
    '    # A push answers once it is built and live (or refused): it may take minutes.',
    `    timeout server ${pushTimeout}`,
    '    # As for the nodes: a push (a POST) is resent only if it could not be sent.',
    '    retries 2',
    '    option redispatch 1',
    '    retry-on conn-failure empty-response',
    '    http-request disable-l7-retry unless { method GET HEAD OPTIONS }',
    '    default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 1',
    `    http-error status 503 content-type application/json string '${errorBody('CLUSTER_UNAVAILABLE', 'no builder is elected now: push again in a few seconds (fnix cluster status)')}' hdr x-fnix-error CLUSTER_UNAVAILABLE`,
    ...(builders.length ? builders.map(serverLine) : ['    # No member may be the builder (FNIX_BUILDER=false on every node): pushes get 503.']),
    '',
  ];
  return lines.join('\n');
}

/** The members as servers, sorted by name, each checked. */
function serversOf(members: readonly HaproxyMember[]): Server[] {
  if (members.length === 0) throw new HaproxyConfigError('the cluster has no members: start a node (or check that this node reaches etcd), then try again');
  const sorted = [...members].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const byName = new Map<string, HaproxyMember>();
  const byAddress = new Map<string, HaproxyMember>();
  const ids = new Set<number>();
  return sorted.map((member) => {
    const name = String(member.name ?? '').replace(/[^A-Za-z0-9_.-]/g, '_');
    if (!/[A-Za-z0-9]/.test(name))
      throw new HaproxyConfigError(`a member is named ${JSON.stringify(member.name)}: a node's name (FNIX_NODE_NAME) needs letters or digits`);
    const twin = byName.get(name);
    if (twin)
      throw new HaproxyConfigError(
        `members ${JSON.stringify(twin.name)} and ${JSON.stringify(member.name)} have the same name in HAProxy (${name}): rename one (FNIX_NODE_NAME)`,
      );
    byName.set(name, member);
    const address = addressOf(member);
    const other = byAddress.get(address);
    if (other)
      throw new HaproxyConfigError(
        `members ${JSON.stringify(other.name)} and ${JSON.stringify(member.name)} both say they are at ${address}: each node's FNIX_NODE_URL must be its own`,
      );
    byAddress.set(address, member);
    // Collisions (rare) are settled in name order, so the same members always give the same ids.
    let id = 1 + (fnv1a(name) % ID_SPACE);
    while (ids.has(id)) id = 1 + (id % ID_SPACE);
    ids.add(id);
    return { member, name, address, id };
  });
}

/** `host:port` of a member's URL; throws unless it is `http://host[:port]`. */
function addressOf(member: HaproxyMember): string {
  const fix = `its FNIX_NODE_URL must be http://<address>:<port>, such as http://10.0.0.2:8080`;
  let url: URL;
  try {
    url = new URL(String(member.url));
  } catch {
    throw new HaproxyConfigError(`member ${JSON.stringify(member.name)} has the URL ${JSON.stringify(member.url)}, which is not a URL: ${fix}`);
  }
  if (url.protocol !== 'http:') {
    throw new HaproxyConfigError(
      `member ${JSON.stringify(member.name)} is at ${JSON.stringify(member.url)}: this configuration talks plain HTTP to the nodes (terminate TLS in HAProxy's bind); ${fix}`,
    );
  }
  if (url.username || url.password || (url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw new HaproxyConfigError(`member ${JSON.stringify(member.name)} has the URL ${JSON.stringify(member.url)}, with more than a host and a port: ${fix}`);
  }
  if (!/^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)$/i.test(url.hostname)) {
    throw new HaproxyConfigError(`member ${JSON.stringify(member.name)} has the URL ${JSON.stringify(member.url)}, whose host HAProxy cannot use: ${fix}`);
  }
  return `${url.hostname}:${url.port || '80'}`;
}

function serverLine(server: Server): string {
  return `    server ${server.name} ${server.address} id ${server.id} check`;
}

/** A gateway-shaped error body (docs/http.md), for HAProxy's own answers. No single quote: it is written inside one. */
function errorBody(code: string, message: string): string {
  return JSON.stringify({ error: { code, message } });
}

function duration(value: string, option: string): string {
  if (!DURATION.test(value)) throw new HaproxyConfigError(`${option} is ${JSON.stringify(value)}: expected an HAProxy duration such as 60s, 5m or 1h`, option);
  return value;
}

/** FNV-1a, 32 bits, of the name's UTF-16 code units: a stable number for a name. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}
