/**
 * @module
 * The shapes of the gateway's answers, as far as the CLI reads them (docs/http.md has the whole of each).
 * Written out here rather than imported: the CLI is a client, and shares no code with the gateway.
 */

export interface Health {
  status: string;
  podman: { version: string; ociRuntime: string; cgroupManager: string; cgroupVersion: string };
  nix: { version: string };
  packageSet: { kind: string; description: string };
  pool: {
    warm: number;
    idle: number;
    busy: number;
    serving: number;
    starting: number;
    queued: number;
    total: number;
    max: number;
    size: number;
    lastError?: string;
  };
  functions: { name: string; status: string; version?: string; serve?: boolean; error?: { code: string; message: string } }[];
}

export interface Closure {
  count: number;
  totalBytes: number;
  paths?: { path: string; bytes: number }[];
}

export interface Instance {
  id: string;
  version: string;
  state: string;
  inFlight: number;
  requests: number;
  startedAt: string;
  container: string;
}

export interface FunctionView {
  name: string;
  status: 'ready' | 'broken';
  deployment?: string;
  commit?: string;
  version?: string;
  packages?: string[];
  storePaths?: string[];
  command?: string[];
  limits?: Record<string, number | boolean>;
  closure?: Closure;
  serve?: unknown;
  instances?: Instance[];
  error?: { code: string; message: string };
}

export interface Deployment {
  id: string;
  commit: string;
  subject: string;
  createdAt: string;
  source: string;
  status: 'active' | 'superseded' | 'ready' | 'refused';
  reason?: string;
  functions: { name: string; version: string }[];
  activations: string[];
}

export interface InvocationRecord {
  id: string;
  function: string;
  version: string;
  deployment: string | null;
  kind: string;
  startedAt: string;
  durationMs: number;
  outcome: string;
  status: number | null;
  exitCode: number | null;
  signal: string | null;
  bytesIn: number;
  bytesOut: number;
  cold: boolean | null;
  instance: string | null;
  container: string | null;
  /** The node that keeps it, in a cluster. */
  node?: string;
}

export interface LogLine {
  time: string;
  function: string;
  invocationId: string | null;
  instance: string | null;
  stream: 'stdout' | 'stderr' | 'fnix';
  line: string;
  /** The node that keeps it, in a cluster. */
  node?: string;
}

/** A cluster member whose part is not in an answer (`missing`), or one gone from a follow (`node-gone`). */
export interface MissingNode {
  node: string;
  error: string;
}

export interface Secret {
  name: string;
  setAt: string;
  usedBy: string[];
}

export interface Key {
  id: string;
  name: string | null;
  function: string | null;
  createdAt: string;
  lastUsedAt: string | null;
}

/** `GET /api/cluster`: the cluster as the node asked sees it. */
export interface ClusterStatus {
  /** The node that answered. */
  self: string;
  /** The elected builder, if any. */
  builder: string | null;
  members: { name: string; url: string; builderEligible: boolean; since: string }[];
  /** The live deployment, and the etcd revision of the key that says so. */
  live: { deployment: string; revision: string; by: string; at: string } | null;
  /** By node: the deployment it acknowledged (the live one), and whether it serves it. */
  acks: Record<string, { deployment: string; ok: boolean; error?: string }>;
}
