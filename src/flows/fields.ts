/**
 * The one definition of the `flows:` section of a policy: every key, its JSON Schema and what it means.
 * The policy JSON Schema (`policy/schema.ts`) is built from these declarations, the checker reads them,
 * and the documentation test holds docs/flows.md to exactly these keys.
 */
import { flag, stringList } from '../facts/fields.js';
import type { ConditionField, ConditionFields } from '../facts/types.js';

/** Schemas the flows section shares with the rest of the policy (passed in: no import cycle). */
export interface SharedSchemas {
  /** A `when:`/`unless:` block of typed conditions. */
  conditions: Record<string, unknown>;
  /** A tool name, glob or list of them. */
  toolPatterns: Record<string, unknown>;
  /** One typed argument constraint (`{ type, min, in, glob, … }`). */
  argConstraint: Record<string, unknown>;
  mode: Record<string, unknown>;
}

const text = (description: string, maxLength = 1000): ConditionField => ({
  schema: { type: 'string', minLength: 1, maxLength },
  description,
});
const oneOf = (values: readonly string[], description: string): ConditionField => ({
  schema: { enum: [...values] },
  description,
});

/** The fields of a label as a policy writes it. */
export const LABEL_FIELDS: ConditionFields = {
  integrity: oneOf(['trusted', 'untrusted'], '`trusted` or `untrusted` (default `untrusted`).'),
  level: text('Confidentiality level, one of `flows.levels` (default: the most confidential).', 64),
  readers: stringList('Who may receive it: addresses, domains (their addresses and hosts) or principals.'),
  tags: stringList('Free-form tags (`pii`, `finance`), joined by union.'),
};

/** Conditions on a session's context (what it has been shown so far). */
export const CONTEXT_FIELDS: ConditionFields = {
  integrity: oneOf(['trusted', 'untrusted'], 'Holds when the context has this integrity.'),
  level_at_least: text('Holds when the context is at least this confidential.', 64),
  tags_any: stringList('Holds when the context carries any of these tags.'),
};

/** Fields of one `produces:` entry, keyed by tool name or glob. */
export const PRODUCES_FIELDS: ConditionFields = {
  label: { schema: { $ref: '#/definitions/label' }, description: 'The label of every result of the tool.' },
  overrides: {
    schema: { type: 'array', items: { $ref: '#/definitions/override' }, maxItems: 64 },
    description: 'Argument-aware labels: the first whose `when` holds replaces the fields it gives.',
  },
  items: {
    schema: { type: 'array', items: { $ref: '#/definitions/item' }, maxItems: 64 },
    description: 'Labels of parts of a result, selected by JSONPath (`where` picks among them).',
  },
  withhold: {
    schema: { type: 'array', items: { $ref: '#/definitions/withhold' }, maxItems: 64 },
    description: 'Parts dropped or redacted before the agent sees them; they never taint the session.',
  },
  extract: {
    schema: {
      type: 'object',
      additionalProperties: { type: 'string', minLength: 1, maxLength: 512 },
      maxProperties: 32,
    },
    description: 'Named sets of values seen from trusted results: set name → JSONPath.',
  },
};

/** Fields of one `items:` or `withhold:` entry. */
export const ITEM_FIELDS: ConditionFields = {
  path: text('JSONPath of the items: `$`, `.name`, `[n]`, `[*]`, `.*`.', 512),
  where: {
    schema: { type: 'object', additionalProperties: { $ref: '#/definitions/argConstraint' } },
    description: 'Typed constraints on fields of the item (dotted paths); all must hold.',
  },
  unless: {
    schema: { type: 'object', additionalProperties: { $ref: '#/definitions/argConstraint' } },
    description: 'The entry does not apply to items whose fields satisfy these constraints.',
  },
  label: { schema: { $ref: '#/definitions/label' }, description: '`items:` only: the label of the items.' },
  action: oneOf(['drop', 'redact'], '`withhold:` only: remove the item, or replace it with `[withheld]`.'),
};

/** Fields of one `sinks:` entry, keyed by tool name or glob. */
export const SINK_FIELDS: ConditionFields = {
  effect: oneOf(['deny', 'ask'], 'What a violation does (default `deny`).'),
  trusted: flag('The context must be trusted.'),
  max_level: text('The context must be at most this confidential.', 64),
  recipients: {
    schema: {
      type: 'object',
      additionalProperties: false,
      properties: {
        email: stringList('Arguments holding email recipients.').schema,
        url: stringList('Arguments holding URLs; their hosts are recipients.').schema,
        text: stringList('Free-text arguments; the addresses and URLs found inside are recipients.').schema,
      },
    },
    description: 'Every recipient must be among the context readers.',
  },
  seen: {
    schema: { type: 'object', additionalProperties: { type: 'string', minLength: 1 } },
    description: 'Argument → `extract` set: each value must have been seen from a trusted result.',
  },
  reason: text('Text shown to the agent on a violation.'),
};

/** Fields of one `guards:` rule: only tightens (allow → ask or deny, ask → deny), never grants. */
export const GUARD_FIELDS: ConditionFields = {
  id: text('Stable id (default `guard[<n>]`).', 128),
  deny: { schema: { $ref: '#/definitions/toolPatterns' }, description: 'Tools this guard turns into deny.' },
  ask: { schema: { $ref: '#/definitions/toolPatterns' }, description: 'Tools this guard turns into ask.' },
  when: { schema: { $ref: '#/definitions/conditions' }, description: 'Typed conditions on the call.' },
  unless: {
    schema: { $ref: '#/definitions/conditions' },
    description: 'The guard does not apply when these hold.',
  },
  context: { schema: { $ref: '#/definitions/context' }, description: 'Conditions on the session context.' },
  reason: text('Text shown to the agent.'),
};

/** Fields of one `sequences:` rule, compiled to a small automaton stepped per delivered result. */
export const SEQUENCE_FIELDS: ConditionFields = {
  id: text('Stable id (default `sequence[<n>]`).', 128),
  after: {
    schema: { type: 'array', items: { $ref: '#/definitions/toolPatterns' }, minItems: 1, maxItems: 8 },
    description: 'Tools whose results were delivered, in this order (others may come between).',
  },
  // biome-ignore lint/suspicious/noThenProperty: `then` is the policy keyword; this object is never awaited
  then: {
    schema: { $ref: '#/definitions/toolPatterns' },
    description: 'The call the rule refuses afterwards.',
  },
  within: text('Only when `then` comes within this long of the last `after` step (`10m`, `2h`).', 32),
  effect: oneOf(['deny', 'ask'], 'What a match does (default `deny`).'),
  reason: text('Text shown to the agent.'),
};

/** Fields of a preset (`lethal_trifecta`, `rule_of_two`). */
export const PRESET_FIELDS: ConditionFields = {
  effect: oneOf(['deny', 'ask'], 'What a match does (default `ask`).'),
  sensitive: text('The level from which data counts as sensitive (default: the second level).', 64),
  egress: {
    schema: { $ref: '#/definitions/toolPatterns' },
    description: 'Tools that communicate externally (`lethal_trifecta`) or change state (`rule_of_two`).',
  },
};

/** Top-level fields of `flows:`. */
export const FLOWS_FIELDS: ConditionFields = {
  mode: {
    schema: { $ref: '#/definitions/mode' },
    description: '`shadow` records flow verdicts without applying them.',
  },
  scope: oneOf(
    ['session', 'principal'],
    '`session` (default): state per channel session; `principal`: per agent and principal across sessions.',
  ),
  levels: {
    schema: {
      type: 'array',
      items: { type: 'string', minLength: 1, maxLength: 64 },
      minItems: 1,
      maxItems: 16,
    },
    description: 'Confidentiality levels, least to most (default public, internal, confidential, secret).',
  },
  produces: {
    schema: { type: 'object', additionalProperties: { $ref: '#/definitions/produces' } },
    description: "What each tool's results carry. A tool not declared produces untrusted, most confidential.",
  },
  sinks: {
    schema: { type: 'object', additionalProperties: { $ref: '#/definitions/sink' } },
    description: 'Tools that send data out or act, and what context and recipients they accept.',
  },
  guards: {
    schema: { type: 'array', items: { $ref: '#/definitions/guard' }, maxItems: 256 },
    description: 'Rules that only tighten (allow → ask or deny): layered over any policy, they open nothing.',
  },
  sequences: {
    schema: { type: 'array', items: { $ref: '#/definitions/sequence' }, maxItems: 256 },
    description: 'Rules on the order of calls in a session (`after` … `then` … `within`).',
  },
  presets: {
    schema: {
      type: 'object',
      additionalProperties: false,
      properties: {
        lethal_trifecta: { $ref: '#/definitions/preset' },
        rule_of_two: { $ref: '#/definitions/preset' },
      },
    },
    description: '`lethal_trifecta`, `rule_of_two`: untrusted input + sensitive data + egress → ask or deny.',
  },
};

/** Every declared section, by the name docs/flows.md uses for it. */
export const FLOW_SECTIONS: Readonly<Record<string, ConditionFields>> = {
  flows: FLOWS_FIELDS,
  label: LABEL_FIELDS,
  context: CONTEXT_FIELDS,
  produces: PRODUCES_FIELDS,
  item: ITEM_FIELDS,
  sink: SINK_FIELDS,
  guard: GUARD_FIELDS,
  sequence: SEQUENCE_FIELDS,
  preset: PRESET_FIELDS,
};

function object(fields: ConditionFields, description: string, required: string[] = []) {
  const properties: Record<string, unknown> = {};
  for (const [k, f] of Object.entries(fields)) properties[k] = { ...f.schema, description: f.description };
  return {
    type: 'object',
    additionalProperties: false,
    description,
    properties,
    ...(required.length > 0 ? { required } : {}),
  };
}

/**
 * The JSON Schema of `flows:`, self-contained: its `$ref`s point into its own `definitions`, so the
 * policy schema embeds it as one property.
 */
export function flowsSchema(shared: SharedSchemas) {
  const item = object(ITEM_FIELDS, 'Items of a result selected by JSONPath.', ['path']);
  const props = item.properties as Record<string, unknown>;
  const { action: _a, ...itemProps } = props;
  const { label: _l, ...withholdProps } = props;
  const fix = (v: unknown): unknown => {
    // `$ref`s inside the embedded schema resolve against its own `definitions`.
    if (Array.isArray(v)) return v.map(fix);
    if (v === null || typeof v !== 'object') return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>))
      out[k] =
        k === '$ref' && typeof x === 'string'
          ? x.replace('#/definitions/', '#/properties/flows/definitions/')
          : fix(x);
    return out;
  };
  return fix({
    ...object(FLOWS_FIELDS, 'Session flow policy: labels, sinks, guards and sequence rules.'),
    definitions: {
      mode: shared.mode,
      conditions: shared.conditions,
      toolPatterns: shared.toolPatterns,
      argConstraint: shared.argConstraint,
      label: object(LABEL_FIELDS, 'A label: integrity, confidentiality level, readers, tags.'),
      context: object(CONTEXT_FIELDS, 'Conditions on the session context.'),
      produces: object(PRODUCES_FIELDS, "What a tool's results carry."),
      override: {
        type: 'object',
        additionalProperties: false,
        required: ['when', 'label'],
        properties: { when: { $ref: '#/definitions/conditions' }, label: { $ref: '#/definitions/label' } },
      },
      item: { ...item, properties: itemProps, required: ['path', 'label'] },
      withhold: { ...item, properties: withholdProps, required: ['path', 'action'] },
      sink: object(SINK_FIELDS, 'What a sink accepts.'),
      guard: object(GUARD_FIELDS, 'A rule that only tightens.'),
      sequence: object(SEQUENCE_FIELDS, 'A sequence rule.', ['after', 'then']),
      preset: object(PRESET_FIELDS, 'A preset.', ['egress']),
    },
  }) as Record<string, unknown>;
}
