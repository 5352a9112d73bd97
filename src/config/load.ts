/**
 * Loads the gateway configuration (`execlayer.yaml`): YAML with source positions, validated against the
 * published JSON Schema, `${VAR}` interpolation for secrets in upstream env, headers, args and URLs, and
 * relative paths resolved against the file's directory. Every problem carries file:line:column.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { type DataPath, parseYaml } from '../yaml-source.js';
import { CONFIG_SCHEMA, STORE_URL_PATTERN } from './schema.js';

/** An upstream MCP server started by the gateway over stdio. */
export interface StdioUpstreamConfig {
  kind: 'stdio';
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string;
  expose: 'prefixed' | 'bare';
  /** One connection per agent session instead of one shared by every session of the gateway. */
  stateful: boolean;
}

/** An upstream MCP server reached over Streamable HTTP. */
export interface HttpUpstreamConfig {
  kind: 'http';
  url: string;
  headers: Record<string, string>;
  expose: 'prefixed' | 'bare';
  /** One connection per agent session instead of one shared by every session of the gateway. */
  stateful: boolean;
}

export type UpstreamConfig = StdioUpstreamConfig | HttpUpstreamConfig;

/**
 * What a credential may do besides act as its agent: `viewer` reads the console and `/metrics`,
 * `approver` decides approvals, `operator` suspends and resumes agents, approves tool definitions and
 * reloads the policy, `admin` does all of that, `pdp-client` asks the decision API about any subject.
 */
export type CredentialRole = 'viewer' | 'approver' | 'operator' | 'admin' | 'pdp-client';

/** Every credential role, in a fixed order. */
export const CREDENTIAL_ROLES: readonly CredentialRole[] = [
  'viewer',
  'approver',
  'operator',
  'admin',
  'pdp-client',
];

/** One accepted API key: only its sha256 is stored. */
export interface ApiKeyConfig {
  sha256: string;
  agent: string;
  principal?: string;
  /** None unless given: a key an agent uses carries no roles. */
  roles?: CredentialRole[];
}

export interface JwtConfig {
  jwks: string;
  issuer: string;
  audience: string;
  agentClaim: string;
  principalClaim?: string;
  /** Claim holding the credential roles; default `roles` (the loader always sets it). */
  rolesClaim?: string;
  algorithms?: string[];
}

export interface AuthConfig {
  apiKeys: ApiKeyConfig[];
  jwt?: JwtConfig;
}

export interface LimitsConfig {
  callTimeoutMs: number;
  maxArgBytes: number;
  maxResultBytes: number;
  maxMessageBytes: number;
}

export interface HttpConfig {
  host: string;
  port: number;
  /** Host header values accepted (DNS-rebinding defence); empty = loopback names on the bound port. */
  allowedHosts: string[];
  /** Origin header values accepted besides the loopback origins on the bound port (always accepted). */
  allowedOrigins: string[];
  /** Open MCP sessions in all. */
  maxSessions: number;
  /** Open MCP sessions one agent may hold. */
  maxSessionsPerAgent: number;
  sessionIdleMs: number;
  /** Open TCP connections; unset = 1024, or half the process's open-file limit when lower. */
  maxConnections?: number;
  /** Node's `headersTimeout`: time to send a request's headers. */
  headersTimeoutMs: number;
  /** Node's `requestTimeout`: time to send a whole request (headers and body), not the response. */
  requestTimeoutMs: number;
  /** Node's `keepAliveTimeout`: idle time between requests on one connection. */
  keepAliveTimeoutMs: number;
  /** Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate and key; absolute paths, reloaded on change. */
  tls?: { cert: string; key: string };
  /** The URL clients reach this server at (behind a proxy), published in discovery documents. */
  publicUrl?: string;
}

export interface ApprovalsConfig {
  wait: 'block' | 'return';
  maxWaitMs: number;
  /** Two different approvers must approve before a grant exists (the console and the operator API). */
  twoPersonRule: boolean;
}

/** Which events a webhook receives. */
export type WebhookEventKind = 'approval.requested' | 'agent.suspended' | 'agent.resumed' | 'tool.changed';

/** One webhook from `notifications.webhooks`. */
export interface WebhookConfig {
  url: string;
  /** HMAC-SHA256 key for the signature header (at least 16 characters). */
  secret: string;
  events: WebhookEventKind[];
  /** `execlayer` (signed JSON) or `slack` (a Slack-compatible `{text, blocks}` body, also signed). */
  format: 'execlayer' | 'slack';
  timeoutMs: number;
  /** Deliveries after the first one, with doubling back-off from 1 s. */
  retries: number;
}

/** One URL per backend; a single `store:` URL fills all of them. */
export interface StoreConfig {
  audit: string;
  approvals: string;
  limits: string;
  state: string;
  pins: string;
  /**
   * The audit log's signing key: `store.key`, else for a PostgreSQL audit trail `execlayer-audit.key` next
   * to the config file; unset for SQLite (the key sits beside the database, `<db>.key`).
   */
  auditKey?: string;
  /** `store.timeoutMs`: deadline of every PostgreSQL and Redis operation (unset: each backend's default). */
  timeoutMs?: number;
  /** `store.keyFingerprint`: the audit key's pinned fingerprint (`sha256:<hex>`), for `audit verify`. */
  auditKeyFingerprint?: string;
}

/** The validated gateway configuration with defaults applied and paths absolute. */
export interface GatewayConfig {
  /** Absolute path of the file it came from, or `<inline>`. */
  file: string;
  /** Absolute path of the policy file or bundle. */
  policy: string;
  /** Absolute path of the public key a signed policy must verify against (`policyKey`). */
  policyKey?: string;
  /** Where each backend lives (`sqlite:<absolute path>`, `postgres://…`, `redis://…` or `memory:`). */
  store: StoreConfig;
  agent?: string;
  upstreams: Record<string, UpstreamConfig>;
  auth: AuthConfig;
  limits: LimitsConfig;
  http: HttpConfig;
  approvals: ApprovalsConfig;
  pins: Record<string, string>;
  notifications: { webhooks: WebhookConfig[] };
}

/** One thing wrong with a configuration file, with its place. */
export interface ConfigProblem {
  file: string;
  line: number;
  column: number;
  /** JSON pointer of the offending value. */
  path: string;
  message: string;
}

/** Raised at the edge (CLI) when a configuration cannot be used. `code` is stable. */
export class ConfigError extends Error {
  readonly code: 'config_invalid' | 'config_unreadable';
  readonly problems: ConfigProblem[];
  constructor(
    code: 'config_invalid' | 'config_unreadable',
    problems: ConfigProblem[],
    options?: { cause?: unknown },
  ) {
    super(problems.map((p) => `${p.file}:${p.line}:${p.column}: ${p.message}`).join('\n'), options);
    this.name = 'ConfigError';
    this.code = code;
    this.problems = problems;
  }
}

export const DEFAULT_LIMITS: LimitsConfig = {
  callTimeoutMs: 60_000,
  maxArgBytes: 1024 * 1024,
  maxResultBytes: 8 * 1024 * 1024,
  maxMessageBytes: 16 * 1024 * 1024,
};

/** Default deadlines of the HTTP front doors (`http.*`); see src/enforce/front-door.ts. */
export const DEFAULT_HTTP_LIMITS = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 65_000,
} as const;

const MAX_CONFIG_BYTES = 1024 * 1024;
const MAX_CONFIG_DEPTH = 32;

/** What each backend can live in, as the schema says. */
const STORE_URL = {
  sql: new RegExp(`^(${STORE_URL_PATTERN.sql})$`),
  kv: new RegExp(`^(${STORE_URL_PATTERN.kv})$`),
} as const;
const STORE_URL_TEXT = {
  sql: 'a `sqlite:<file>`, `postgres://…` or `memory:` URL',
  kv: 'a `sqlite:<file>`, `redis://…` or `memory:` URL',
} as const;

/** A data path as a JSON pointer (`/upstreams/files/args/0`). */
function toPointer(path: DataPath): string {
  return path.map((s) => `/${String(s).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
}

let validator: ReturnType<Ajv2020['compile']> | undefined;
function validate(data: unknown): ErrorObject[] {
  if (!validator) {
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    validator = ajv.compile(CONFIG_SCHEMA);
  }
  return validator(data) ? [] : [...(validator.errors ?? [])];
}

/** Reads and validates a configuration file. Throws ConfigError with positions. */
export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : 'cannot read file';
    throw new ConfigError(
      'config_unreadable',
      [{ file, line: 1, column: 1, path: '', message: `${reason}: \`${path}\`` }],
      { cause: err },
    );
  }
  return parseConfig(text, file, env);
}

/** Validates configuration text. `file` names it in problems and anchors relative paths. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const parsed = parseYaml(text, {
    what: 'configuration',
    maxBytes: MAX_CONFIG_BYTES,
    maxDepth: MAX_CONFIG_DEPTH,
  });
  if (!parsed.ok) {
    throw new ConfigError(
      'config_invalid',
      parsed.problems.map((p) => ({
        file,
        line: p.line,
        column: p.column,
        path: toPointer(p.path),
        message: p.message,
      })),
    );
  }
  const { position, offsetOf } = parsed.source;
  const problems: ConfigProblem[] = [];
  const at = (offset: number | undefined, path: string, message: string) => {
    problems.push({ file, ...position(offset ?? 0), path, message });
  };
  const data = parsed.source.data ?? {};
  const locate = (pointer: string, key = false): number | undefined =>
    offsetOf(
      pointer
        .split('/')
        .slice(1)
        .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~')),
      key,
    );

  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    at(0, '', 'configuration must be a mapping');
    throw new ConfigError('config_invalid', problems);
  }
  const errors = validate(data);
  // oneOf reports every branch. Where a branch of the value's own type failed on something else (a pattern,
  // an unknown key), that is the message; the other branches' "must be <type>" say nothing.
  const typeMatched = new Set(
    errors.filter((e) => e.keyword !== 'type' && e.keyword !== 'oneOf').map((e) => e.instancePath),
  );
  const fitsBetter = (path: string) => [...typeMatched].some((p) => p === path || p.startsWith(`${path}/`));
  for (const e of errors) {
    if (e.keyword === 'oneOf' || e.keyword === 'if') continue;
    if (e.keyword === 'type' && fitsBetter(e.instancePath)) continue;
    const path = e.instancePath;
    if (e.keyword === 'additionalProperties') {
      const extra = String((e.params as { additionalProperty: string }).additionalProperty);
      at(locate(`${path}/${extra}`, true), `${path}/${extra}`, `unknown key \`${extra}\``);
    } else if (e.keyword === 'required') {
      at(locate(path), path, `missing \`${(e.params as { missingProperty: string }).missingProperty}\``);
    } else if (e.keyword === 'propertyNames') {
    } else if ((e as { propertyName?: string }).propertyName !== undefined) {
      const name = String((e as { propertyName?: string }).propertyName);
      at(locate(`${path}/${name}`, true), `${path}/${name}`, `invalid name \`${name}\``);
    } else {
      at(locate(path), path, `\`${path || '/'}\` ${e.message ?? 'is invalid'}`);
    }
  }
  if (problems.length > 0) throw new ConfigError('config_invalid', dedupe(problems));

  const raw = data as Record<string, unknown> & {
    policy: string;
    policyKey?: string;
    store?:
      | string
      | {
          audit: string;
          approvals?: string;
          limits?: string;
          state?: string;
          pins?: string;
          key?: string;
          timeoutMs?: number;
          keyFingerprint?: string;
        };
    agent?: string;
    upstreams?: Record<string, Record<string, unknown>>;
    auth?: {
      apiKeys?: ApiKeyConfig[];
      jwt?: Partial<JwtConfig> & { jwks: string; issuer: string; audience: string };
    };
    limits?: Partial<LimitsConfig>;
    http?: Partial<HttpConfig>;
    approvals?: Partial<ApprovalsConfig>;
    pins?: Record<string, string>;
    notifications?: { webhooks?: Array<Partial<WebhookConfig> & { url: string; secret: string }> };
  };
  const base = file.startsWith('<') ? process.cwd() : dirname(file);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));

  const interpolate = (value: string, pointer: string): string =>
    value.replace(/\$\$|\$\{([^}]*)\}/g, (m, name: string | undefined) => {
      if (m === '$$') return '$';
      if (!name || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        at(locate(pointer), pointer, `invalid variable reference \`${m}\``);
        return '';
      }
      const v = env[name];
      if (v === undefined) {
        at(locate(pointer), pointer, `environment variable \`${name}\` is not set`);
        return '';
      }
      return v;
    });
  const interpolateMap = (m: Record<string, string> | undefined, pointer: string) =>
    Object.fromEntries(Object.entries(m ?? {}).map(([k, v]) => [k, interpolate(v, `${pointer}/${k}`)]));

  const upstreams: Record<string, UpstreamConfig> = {};
  for (const [name, u] of Object.entries(raw.upstreams ?? {})) {
    const p = `/upstreams/${name}`;
    const expose = (u.expose as 'prefixed' | 'bare' | undefined) ?? 'prefixed';
    const stateful = u.stateful === true;
    if (typeof u.command === 'string') {
      const cfg: StdioUpstreamConfig = {
        kind: 'stdio',
        command: interpolate(u.command, `${p}/command`),
        args: ((u.args as string[] | undefined) ?? []).map((a, i) => interpolate(a, `${p}/args/${i}`)),
        env: interpolateMap(u.env as Record<string, string> | undefined, `${p}/env`),
        expose,
        stateful,
      };
      if (typeof u.cwd === 'string') cfg.cwd = abs(interpolate(u.cwd, `${p}/cwd`));
      upstreams[name] = cfg;
    } else {
      upstreams[name] = {
        kind: 'http',
        url: interpolate(String(u.url), `${p}/url`),
        headers: interpolateMap(u.headers as Record<string, string> | undefined, `${p}/headers`),
        expose,
        stateful,
      };
    }
  }
  const bare = Object.entries(upstreams).filter(([, u]) => u.expose === 'bare');
  if (bare.length > 1) {
    at(
      locate(`/upstreams/${bare[1]?.[0]}/expose`),
      `/upstreams/${bare[1]?.[0]}/expose`,
      'only one upstream may use `expose: bare`',
    );
  }

  const jwtRaw = raw.auth?.jwt;
  const auth: AuthConfig = {
    apiKeys: (raw.auth?.apiKeys ?? []).map((k) => ({ ...k, sha256: k.sha256.toLowerCase() })),
  };
  if (jwtRaw) {
    const jwt: JwtConfig = {
      jwks: /^https?:\/\//.test(jwtRaw.jwks) ? jwtRaw.jwks : abs(jwtRaw.jwks),
      issuer: jwtRaw.issuer,
      audience: jwtRaw.audience,
      agentClaim: jwtRaw.agentClaim ?? 'sub',
      rolesClaim: jwtRaw.rolesClaim ?? 'roles',
    };
    if (jwtRaw.principalClaim) jwt.principalClaim = jwtRaw.principalClaim;
    if (jwtRaw.algorithms) jwt.algorithms = jwtRaw.algorithms;
    auth.jwt = jwt;
  }
  const seen = new Set<string>();
  auth.apiKeys.forEach((k, i) => {
    if (seen.has(k.sha256))
      at(locate(`/auth/apiKeys/${i}/sha256`), `/auth/apiKeys/${i}/sha256`, 'duplicate api key hash');
    seen.add(k.sha256);
  });

  const storeUrl = (url: string, pointer: string, kind: 'sql' | 'kv'): string => {
    const v = interpolate(url, pointer);
    // A URL that came from the environment is checked once its variables are filled in (never echoed:
    // it may hold a password).
    if (!STORE_URL[kind].test(v)) {
      at(
        locate(pointer),
        pointer,
        `\`${pointer}\` must be ${STORE_URL_TEXT[kind]} once its variables are filled in`,
      );
    }
    return v.startsWith('sqlite:') ? `sqlite:${abs(v.slice('sqlite:'.length))}` : v;
  };
  const rawStore = raw.store ?? 'sqlite:./execlayer.db';
  let store: StoreConfig;
  if (typeof rawStore === 'string') {
    const one = storeUrl(rawStore, '/store', 'sql');
    store = { audit: one, approvals: one, limits: one, state: one, pins: one };
  } else {
    const audit = storeUrl(rawStore.audit, '/store/audit', 'sql');
    const each = (k: 'approvals' | 'limits' | 'state' | 'pins', kind: 'sql' | 'kv') =>
      rawStore[k] === undefined ? audit : storeUrl(rawStore[k], `/store/${k}`, kind);
    store = {
      audit,
      approvals: each('approvals', 'sql'),
      limits: each('limits', 'kv'),
      state: each('state', 'kv'),
      pins: each('pins', 'sql'),
    };
    if (rawStore.key !== undefined) store.auditKey = abs(rawStore.key);
    if (rawStore.timeoutMs !== undefined) store.timeoutMs = rawStore.timeoutMs;
    if (rawStore.keyFingerprint !== undefined)
      store.auditKeyFingerprint = rawStore.keyFingerprint.toLowerCase();
  }
  if (store.auditKey === undefined && !store.audit.startsWith('sqlite:') && store.audit !== 'memory:') {
    store.auditKey = abs('execlayer-audit.key');
  }
  const cfg: GatewayConfig = {
    file,
    policy: abs(raw.policy),
    ...(raw.policyKey !== undefined ? { policyKey: abs(raw.policyKey) } : {}),
    store,
    upstreams,
    auth,
    limits: { ...DEFAULT_LIMITS, ...raw.limits },
    http: {
      host: raw.http?.host ?? '127.0.0.1',
      port: raw.http?.port ?? 8787,
      allowedHosts: raw.http?.allowedHosts ?? [],
      allowedOrigins: raw.http?.allowedOrigins ?? [],
      maxSessions: raw.http?.maxSessions ?? 256,
      maxSessionsPerAgent: raw.http?.maxSessionsPerAgent ?? 32,
      sessionIdleMs: raw.http?.sessionIdleMs ?? 30 * 60_000,
      headersTimeoutMs: raw.http?.headersTimeoutMs ?? DEFAULT_HTTP_LIMITS.headersTimeoutMs,
      requestTimeoutMs: raw.http?.requestTimeoutMs ?? DEFAULT_HTTP_LIMITS.requestTimeoutMs,
      keepAliveTimeoutMs: raw.http?.keepAliveTimeoutMs ?? DEFAULT_HTTP_LIMITS.keepAliveTimeoutMs,
      ...(raw.http?.maxConnections !== undefined ? { maxConnections: raw.http.maxConnections } : {}),
      ...(raw.http?.tls !== undefined
        ? { tls: { cert: abs(raw.http.tls.cert), key: abs(raw.http.tls.key) } }
        : {}),
      ...(raw.http?.publicUrl !== undefined ? { publicUrl: raw.http.publicUrl.replace(/\/+$/, '') } : {}),
    },
    approvals: {
      wait: raw.approvals?.wait ?? 'return',
      maxWaitMs: raw.approvals?.maxWaitMs ?? 120_000,
      twoPersonRule: raw.approvals?.twoPersonRule ?? false,
    },
    pins: raw.pins ?? {},
    notifications: {
      webhooks: (raw.notifications?.webhooks ?? []).map((w, i) => ({
        url: interpolate(w.url, `/notifications/webhooks/${i}/url`),
        secret: interpolate(w.secret, `/notifications/webhooks/${i}/secret`),
        events: w.events ?? ['approval.requested', 'agent.suspended', 'agent.resumed', 'tool.changed'],
        format: w.format ?? 'execlayer',
        timeoutMs: w.timeoutMs ?? 3000,
        retries: w.retries ?? 3,
      })),
    },
  };
  if (raw.agent !== undefined) cfg.agent = raw.agent;
  cfg.notifications.webhooks.forEach((w, i) => {
    const p = `/notifications/webhooks/${i}/secret`;
    // Checked after interpolation: the length that matters is the key's, not the `${VAR}` reference's.
    if (w.secret.length < 16) at(locate(p), p, 'a webhook `secret` must be at least 16 characters');
  });
  // Node refuses a header deadline past the whole-request deadline; say so here, with the place.
  if (cfg.http.headersTimeoutMs > cfg.http.requestTimeoutMs) {
    const p = raw.http?.headersTimeoutMs !== undefined ? '/http/headersTimeoutMs' : '/http/requestTimeoutMs';
    at(
      locate(p),
      p,
      `\`http.headersTimeoutMs\` (${cfg.http.headersTimeoutMs}) must not exceed \`http.requestTimeoutMs\` (${cfg.http.requestTimeoutMs})`,
    );
  }
  if (cfg.http.maxSessionsPerAgent > cfg.http.maxSessions && raw.http?.maxSessionsPerAgent !== undefined) {
    at(
      locate('/http/maxSessionsPerAgent'),
      '/http/maxSessionsPerAgent',
      `\`http.maxSessionsPerAgent\` (${cfg.http.maxSessionsPerAgent}) must not exceed \`http.maxSessions\` (${cfg.http.maxSessions})`,
    );
  }
  if (raw.http?.publicUrl !== undefined && !isBaseUrl(raw.http.publicUrl)) {
    at(
      locate('/http/publicUrl'),
      '/http/publicUrl',
      `\`http.publicUrl\` \`${raw.http.publicUrl}\` must be an http(s) URL without credentials, query or fragment`,
    );
  }
  if (problems.length > 0) throw new ConfigError('config_invalid', dedupe(problems));
  return cfg;
}

/** An absolute http(s) URL a client can be pointed at: no userinfo, query or fragment (AuthZEN §9.1.1). */
function isBaseUrl(value: string): boolean {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return false;
  }
  return (
    (u.protocol === 'https:' || u.protocol === 'http:') &&
    u.username === '' &&
    u.password === '' &&
    u.search === '' &&
    u.hash === '' &&
    !value.includes('?') &&
    !value.includes('#')
  );
}

function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const k = `${p.line}:${p.column}:${p.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
