/**
 * JSON Schema (draft 2020-12) of the gateway configuration file (`execlayer.yaml`). The published copy
 * lives at `schema/execlayer-config.schema.json`; a unit test keeps the two identical.
 */

/**
 * The URLs each backend can live in: `sql` for the audit trail, approvals and tool pins; `kv` for limit
 * counters and the stop switch. The loader checks URLs from the environment against the same patterns.
 */
export const STORE_URL_PATTERN = {
  sql: 'sqlite:.+|memory:|postgres(ql)?://.+',
  kv: 'sqlite:.+|memory:|rediss?://.+',
} as const;
/** A whole URL from the environment, checked after interpolation. */
const ENV_URL = '\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}.*';
const sqlUrl = `^(${STORE_URL_PATTERN.sql}|${ENV_URL})$`;
const kvUrl = `^(${STORE_URL_PATTERN.kv}|${ENV_URL})$`;

const stringMap = {
  type: 'object',
  additionalProperties: { type: 'string', maxLength: 65536 },
  propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_.-]{0,127}$' },
} as const;

/** `upstreams.<name>.stateful`: a connection per agent session (see docs/gateway.md "Shared upstreams"). */
const STATEFUL = {
  type: 'boolean',
  default: false,
  description:
    'Start one connection of this upstream per agent session instead of one shared by every session: for servers that keep per-client state (roots, logging level, a session of their own).',
} as const;

/** The configuration schema as a plain object (ajv compiles it once). */
export const CONFIG_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'https://execlayer.dev/schema/execlayer-config.schema.json',
  title: 'ExecLayer gateway configuration',
  type: 'object',
  additionalProperties: false,
  required: ['policy'],
  properties: {
    $schema: { type: 'string' },
    policy: {
      type: 'string',
      minLength: 1,
      description: 'Policy file or bundle (a directory, or a file with `include:`), relative to this file.',
    },
    policyKey: {
      type: 'string',
      minLength: 1,
      description:
        'Require a signed policy: the Ed25519 public key (PEM file, relative to this file) that `<policy>.sig` must verify against, at start and at every reload.',
    },
    store: {
      default: 'sqlite:./execlayer.db',
      description:
        'Where state lives: one `sqlite:<file>` (relative to this file) or `memory:` for all of it, or one URL per backend so replicas can share PostgreSQL and Redis. URLs may take credentials from environment variables, as upstream fields do.',
      oneOf: [
        { type: 'string', pattern: '^(sqlite:.+|memory:)$' },
        {
          type: 'object',
          additionalProperties: false,
          required: ['audit'],
          properties: {
            audit: {
              type: 'string',
              pattern: sqlUrl,
              description: 'The audit trail: `sqlite:<file>`, `postgres://…` or `memory:`.',
            },
            approvals: {
              type: 'string',
              pattern: sqlUrl,
              description: 'Pending approvals and grants (default: `audit`).',
            },
            limits: {
              type: 'string',
              pattern: kvUrl,
              description: 'Limit counters: `sqlite:<file>`, `redis://…` or `memory:` (default: `audit`).',
            },
            state: {
              type: 'string',
              pattern: kvUrl,
              description: 'The stop switch: `sqlite:<file>`, `redis://…` or `memory:` (default: `audit`).',
            },
            pins: {
              type: 'string',
              pattern: sqlUrl,
              description: 'Tool pins (default: `audit`).',
            },
            key: {
              type: 'string',
              minLength: 1,
              description:
                "The audit log's signing key, relative to this file (default: `<db>.key` for SQLite, `execlayer-audit.key` next to this file for PostgreSQL).",
            },
            timeoutMs: {
              type: 'integer',
              minimum: 50,
              maximum: 60000,
              description:
                'Deadline of every PostgreSQL and Redis operation (ms); past it the action is denied, naming the store. Default: 2000 for PostgreSQL, 500 for Redis.',
            },
            keyFingerprint: {
              type: 'string',
              pattern: '^sha256:[0-9a-fA-F]{64}$',
              description:
                'The fingerprint of the public key the audit log must be signed with (`execlayer audit key --fingerprint`); `execlayer audit verify --config` checks the log against it.',
            },
          },
        },
      ],
    },
    agent: {
      type: 'string',
      pattern: '^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$',
      description: 'Agent id of the stdio front door (`execlayer mcp`); `--agent` overrides it.',
    },
    upstreams: {
      type: 'object',
      default: {},
      propertyNames: { pattern: '^[a-z][a-z0-9_-]{0,63}$' },
      additionalProperties: {
        type: 'object',
        if: { required: ['command'] },
        // biome-ignore lint/suspicious/noThenProperty: JSON Schema's `then` keyword, not a thenable.
        then: {
          type: 'object',
          additionalProperties: false,
          required: ['command'],
          properties: {
            command: { type: 'string', minLength: 1 },
            args: { type: 'array', items: { type: 'string' }, default: [] },
            env: stringMap,
            cwd: { type: 'string', minLength: 1 },
            expose: { enum: ['prefixed', 'bare'], default: 'prefixed' },
            stateful: STATEFUL,
          },
        },
        else: {
          additionalProperties: false,
          required: ['url'],
          properties: {
            url: { type: 'string', pattern: '^https?://' },
            headers: stringMap,
            expose: { enum: ['prefixed', 'bare'], default: 'prefixed' },
            stateful: STATEFUL,
          },
        },
      },
    },
    auth: {
      type: 'object',
      additionalProperties: false,
      properties: {
        apiKeys: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['sha256', 'agent'],
            properties: {
              sha256: { type: 'string', pattern: '^[0-9a-fA-F]{64}$' },
              agent: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$' },
              principal: { type: 'string', maxLength: 256 },
              roles: {
                type: 'array',
                uniqueItems: true,
                items: { enum: ['viewer', 'approver', 'operator', 'admin', 'pdp-client'] },
                description:
                  'What this credential may do besides act as its agent: read the console and metrics (viewer), decide approvals (approver), operate the stop switch, tool pins and policy reloads (operator), all of these (admin), ask the decision API about any subject (pdp-client).',
              },
            },
          },
        },
        jwt: {
          type: 'object',
          additionalProperties: false,
          required: ['jwks', 'issuer', 'audience'],
          properties: {
            jwks: { type: 'string', minLength: 1, description: 'JWKS URL (https://…) or file path.' },
            issuer: { type: 'string', minLength: 1 },
            audience: { type: 'string', minLength: 1 },
            agentClaim: { type: 'string', minLength: 1, default: 'sub' },
            principalClaim: { type: 'string', minLength: 1 },
            rolesClaim: {
              type: 'string',
              minLength: 1,
              default: 'roles',
              description:
                'Claim holding the credential roles (array, or space-separated string); unknown roles are ignored.',
            },
            algorithms: { type: 'array', items: { type: 'string' } },
          },
        },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        callTimeoutMs: { type: 'integer', minimum: 1, maximum: 86400000 },
        maxArgBytes: { type: 'integer', minimum: 2, maximum: 268435456 },
        maxResultBytes: { type: 'integer', minimum: 2, maximum: 268435456 },
        maxMessageBytes: { type: 'integer', minimum: 256, maximum: 268435456 },
      },
    },
    http: {
      type: 'object',
      additionalProperties: false,
      properties: {
        host: { type: 'string', minLength: 1 },
        port: { type: 'integer', minimum: 0, maximum: 65535 },
        allowedHosts: { type: 'array', items: { type: 'string' } },
        allowedOrigins: {
          type: 'array',
          items: { type: 'string' },
          description:
            'Origins accepted besides the loopback origins on the bound port (`http://127.0.0.1:<port>`, `http://localhost:<port>`, `http://[::1]:<port>`), which are always accepted.',
        },
        maxSessions: { type: 'integer', minimum: 1, maximum: 100000, default: 256 },
        maxSessionsPerAgent: {
          type: 'integer',
          minimum: 1,
          maximum: 100000,
          default: 32,
          description: 'Open MCP sessions one agent may hold at once (at most `maxSessions`).',
        },
        sessionIdleMs: { type: 'integer', minimum: 1000 },
        maxConnections: {
          type: 'integer',
          minimum: 1,
          maximum: 1000000,
          description:
            'Open TCP connections; past it the oldest connection that has not authenticated is closed. Default 1024, or half the open-file limit when that is lower.',
        },
        headersTimeoutMs: {
          type: 'integer',
          minimum: 100,
          maximum: 600000,
          default: 10000,
          description: "Time a client has to send a request's headers, from its first byte.",
        },
        requestTimeoutMs: {
          type: 'integer',
          minimum: 100,
          maximum: 3600000,
          default: 30000,
          description:
            'Time a client has to send a whole request (headers and body); responses, SSE streams included, are not limited.',
        },
        keepAliveTimeoutMs: {
          type: 'integer',
          minimum: 100,
          maximum: 600000,
          default: 65000,
          description: 'How long an idle keep-alive connection is kept open between requests.',
        },
        tls: {
          type: 'object',
          additionalProperties: false,
          required: ['cert', 'key'],
          description:
            'Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with this PEM certificate (chain) and private key; both files are re-read when they change.',
          properties: {
            cert: {
              type: 'string',
              minLength: 1,
              description: 'Certificate file (PEM), relative to this file.',
            },
            key: {
              type: 'string',
              minLength: 1,
              description: 'Private key file (PEM), relative to this file.',
            },
          },
        },
        publicUrl: {
          type: 'string',
          pattern: '^https?://',
          description:
            "The base URL clients reach this server at (e.g. behind a TLS proxy); used in discovery documents. Default: the scheme of this server and the request's Host.",
        },
      },
    },
    approvals: {
      type: 'object',
      additionalProperties: false,
      properties: {
        wait: { enum: ['block', 'return'] },
        maxWaitMs: { type: 'integer', minimum: 0, maximum: 86400000 },
        twoPersonRule: {
          type: 'boolean',
          default: false,
          description: 'A grant needs the approval of two different approvers.',
        },
      },
    },
    notifications: {
      type: 'object',
      additionalProperties: false,
      properties: {
        webhooks: {
          type: 'array',
          maxItems: 32,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['url', 'secret'],
            properties: {
              url: { type: 'string', pattern: '^(https?://|\\$\\{)' },
              secret: {
                type: 'string',
                minLength: 1,
                description:
                  'HMAC-SHA256 key of the `x-execlayer-signature` header; it may come from an environment variable.',
              },
              events: {
                type: 'array',
                uniqueItems: true,
                minItems: 1,
                items: { enum: ['approval.requested', 'agent.suspended', 'agent.resumed', 'tool.changed'] },
              },
              format: { enum: ['execlayer', 'slack'], default: 'execlayer' },
              timeoutMs: { type: 'integer', minimum: 100, maximum: 60000, default: 3000 },
              retries: { type: 'integer', minimum: 0, maximum: 10, default: 3 },
            },
          },
        },
      },
    },
    pins: {
      type: 'object',
      description: 'Expected sha256 of tool definitions, by exposed policy name (`files.read_file`).',
      additionalProperties: { type: 'string', pattern: '^[0-9a-f]{64}$' },
    },
  },
} as const;
