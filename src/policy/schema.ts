/**
 * JSON Schema (draft-07) of the policy file. The loader validates with it; `schema/policy.schema.json`
 * is this object written out for editors (a test keeps the two identical). The fields of the typed
 * conditions (`path`, `url`, `sql`, `shell`, `email`) come from each canonicaliser's own declaration.
 */
import { canonicalisers } from '../facts/index.js';
import type { Canonicaliser } from '../facts/types.js';
import { flowsSchema } from '../flows/fields.js';

const mode = {
  enum: ['enforce', 'shadow'],
  description: '`enforce` applies decisions; `shadow` records them and lets actions run.',
};
const strings = { type: 'array', items: { type: 'string', minLength: 1 } } as const;
const toolPatterns = {
  description: 'Tool name or glob (`crm.*`); a list means any of them.',
  oneOf: [
    { type: 'string', minLength: 1 },
    { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 },
  ],
};
const argSelector = {
  arg: { type: 'string', minLength: 1, description: 'Argument to read (dotted path for nested fields).' },
  args: {
    ...strings,
    minItems: 1,
    description: 'Arguments to read; every value must satisfy the condition.',
  },
};

/** A canonicaliser's condition, from its own field declarations (the one definition of its fields). */
function canon(c: Canonicaliser<unknown, unknown>) {
  const fields: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(c.fields))
    fields[name] = { ...f.schema, description: f.description };
  return {
    type: 'object',
    description: c.description,
    additionalProperties: false,
    properties: { ...argSelector, ...fields },
  };
}

/** The condition language (`when`/`unless`), shared with declarations so both speak one language. */
export const conditionsSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'All given conditions must hold.',
  properties: {
    path: canon(canonicalisers.path),
    url: canon(canonicalisers.url),
    sql: canon(canonicalisers.sql),
    shell: canon(canonicalisers.shell),
    email: canon(canonicalisers.email),
    args: {
      type: 'object',
      description: 'Typed constraints on individual arguments (no coercion: "5" is not a number).',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: {
          type: {
            enum: ['string', 'number', 'integer', 'boolean', 'object', 'array', 'null'],
            description: 'JSON type the value must have; implied by the other keys when omitted.',
          },
          min: { type: 'number', description: 'Inclusive lower bound (value >= min).' },
          max: { type: 'number', description: 'Inclusive upper bound (value <= max).' },
          gt: { type: 'number', description: 'Exclusive lower bound (value > gt).' },
          lt: { type: 'number', description: 'Exclusive upper bound (value < lt).' },
          equals: { type: ['string', 'number', 'boolean', 'null'], description: 'The only value allowed.' },
          in: {
            type: 'array',
            items: { type: ['string', 'number', 'boolean'] },
            minItems: 1,
            description: 'The values allowed.',
          },
          max_length: {
            type: 'integer',
            minimum: 0,
            description: 'Longest string (UTF-16 code units) or, with `type: array`, list.',
          },
          glob: { type: 'string', description: 'String glob with `*` (no regular expressions).' },
          present: {
            type: 'boolean',
            description: '`false`: the key must be absent (`null` is a value and is refused).',
          },
        },
      },
    },
    cel: {
      type: 'string',
      minLength: 1,
      maxLength: 4096,
      description: 'CEL over args, facts, agent, session, principal, context and now (ms since epoch).',
    },
  },
};

const limit = {
  type: 'object',
  additionalProperties: false,
  description: 'One of calls, sum (with max), concurrent or steps.',
  properties: {
    id: { type: 'string', minLength: 1 },
    calls: { type: 'integer', minimum: 1, description: 'Calls per window.' },
    sum: {
      type: 'string',
      minLength: 1,
      description: 'Dotted path of a number to add up, e.g. `args.amount`.',
    },
    max: { type: 'number', minimum: 0 },
    concurrent: { type: 'integer', minimum: 1 },
    steps: { type: 'integer', minimum: 1, description: 'Allowed actions per session.' },
    per: { type: 'string', description: 'Window: second, minute, hour, day, week, or `15m`, `2h`, `7d`.' },
    scope: {
      oneOf: [
        { enum: ['agent', 'role', 'tool', 'session', 'principal', 'global'] },
        {
          type: 'array',
          items: { enum: ['agent', 'role', 'tool', 'session', 'principal', 'global'] },
          minItems: 1,
        },
      ],
    },
  },
};
const limits = { oneOf: [limit, { type: 'array', items: limit, minItems: 1 }] };

const rule = {
  type: 'object',
  additionalProperties: false,
  description: 'A capability: exactly one of allow, deny or ask.',
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 128 },
    allow: toolPatterns,
    deny: toolPatterns,
    ask: toolPatterns,
    when: conditionsSchema,
    unless: conditionsSchema,
    limit: limits,
    approval: {
      type: 'object',
      additionalProperties: false,
      properties: {
        ttl: { type: 'string', description: 'How long the request and the grant stay valid (default 15m).' },
        uses: { type: 'integer', minimum: 1, description: 'How many calls one grant covers (default 1).' },
        approvers: strings,
      },
    },
    mode,
    reason: { type: 'string', maxLength: 1000 },
    acknowledge: {
      type: 'array',
      items: { type: 'string', pattern: '^[a-z_]+$' },
      description:
        'Warning codes accepted for this rule (e.g. `deny_with_allow_list`); validate stops showing them.',
    },
    description: { type: 'string' },
  },
};

const namePatterns = (what: string) => ({
  type: 'array',
  minItems: 1,
  description: `${what} this team defines: exact names, or a prefix ending in \`*\` (\`payments.*\`).`,
  items: { type: 'string', pattern: '^[A-Za-z0-9_.@:/-]{1,128}\\*?$' },
});
const fileList = (what: string) => ({
  type: 'array',
  description: `${what}, relative to this file; \`*\` allowed in the last segment (\`teams/*.yaml\`).`,
  items: { type: 'string', minLength: 1, maxLength: 1024 },
});

export const policySchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://execlayer.dev/schema/policy.schema.json',
  title: 'ExecLayer policy',
  type: 'object',
  additionalProperties: false,
  required: ['version', 'agents'],
  properties: {
    $schema: { type: 'string' },
    version: { const: 1 },
    mode,
    description: { type: 'string' },
    agents: {
      type: 'object',
      description: 'Agents by id. An agent not named here can do nothing.',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: {
          owner: { type: 'string' },
          purpose: { type: 'string' },
          risk: { enum: ['low', 'medium', 'high'] },
          documented: strings,
          roles: strings,
          mode,
          rules: { type: 'array', items: rule },
          limits,
        },
      },
    },
    roles: { type: 'object', additionalProperties: { type: 'array', items: rule } },
    tools: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: {
          description: { type: 'string' },
          args: {
            type: 'object',
            additionalProperties: {
              type: 'object',
              properties: {
                type: {
                  oneOf: [
                    { enum: ['string', 'number', 'integer', 'boolean', 'object', 'array', 'null'] },
                    {
                      type: 'array',
                      items: { enum: ['string', 'number', 'integer', 'boolean', 'object', 'array', 'null'] },
                    },
                  ],
                },
              },
            },
          },
          redact: strings,
        },
      },
    },
    redact: strings,
    include: fileList('Bundle root only: more policy files of this bundle'),
    base: fileList(
      'Bundle root only: files that belong to the base team (shared roles, tools and guardrails)',
    ),
    team: {
      type: 'string',
      pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$',
      description: 'Bundle files: the team that owns this file (in the root: the base team, default `base`).',
    },
    owns: {
      type: 'object',
      additionalProperties: false,
      minProperties: 1,
      description: 'Team files of a bundle: the names this file may define.',
      properties: {
        agents: namePatterns('Agents'),
        roles: namePatterns('Roles'),
        tools: namePatterns('Tools'),
      },
    },
    flows: flowsSchema({
      conditions: conditionsSchema,
      toolPatterns,
      argConstraint: conditionsSchema.properties.args.additionalProperties,
      mode,
    }),
  },
} as const;

/** One file of a policy bundle: a policy whose `agents` may be absent (a file of roles or tools). */
export const policyFileSchema = {
  ...policySchema,
  $id: 'https://execlayer.dev/schema/policy-file.schema.json',
  required: ['version'],
} as const;
