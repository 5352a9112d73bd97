/**
 * Export for governance platforms: per agent, what was declared, what the policy actually enforces and what
 * the agent attempted, with the gap statuses — as JSON (schema `governanceExportSchema`, published as
 * `schema/governance-export.schema.json`) and as a CycloneDX 1.6 BOM: the agent as a component, each tool
 * as a service, the enforced capabilities as properties. The CycloneDX form uses the same `execlayer:*`
 * properties the CycloneDX importer reads, so what is enforced can be imported back as declarations.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../canonical-json.js';
import type { CheckedPolicy } from '../policy/check.js';
import type { Declarations } from './declaration.js';
import { GAP_STATUSES, type GapReport, ruleSpecAt } from './gap.js';

const attempts = {
  type: 'object',
  additionalProperties: false,
  required: ['total', 'allowed', 'denied', 'asked'],
  properties: {
    total: { type: 'integer', minimum: 0 },
    allowed: { type: 'integer', minimum: 0 },
    denied: { type: 'integer', minimum: 0 },
    asked: { type: 'integer', minimum: 0 },
  },
} as const;
const conditions = {
  type: 'object',
  description: 'Conditions in the policy condition language (see the policy schema).',
};

/** JSON Schema (draft-07) of the export. */
export const governanceExportSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://execlayer.dev/schema/governance-export.schema.json',
  title: 'ExecLayer governance export: declared, permitted, attempted',
  type: 'object',
  additionalProperties: false,
  required: ['version', 'window', 'policy', 'agents'],
  properties: {
    $schema: { type: 'string' },
    version: { const: 1 },
    window: {
      type: 'object',
      additionalProperties: false,
      required: ['from', 'to'],
      properties: {
        from: { type: 'string', format: 'date-time' },
        to: { type: 'string', format: 'date-time' },
      },
    },
    policy: {
      type: 'object',
      additionalProperties: false,
      required: ['hash'],
      properties: { hash: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
    },
    agents: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'declared', 'permitted', 'attempted', 'gap'],
        properties: {
          id: { type: 'string' },
          owner: { type: 'string' },
          purpose: { type: 'string' },
          prohibited: { type: 'array', items: { type: 'string' } },
          data: { type: 'array', items: { type: 'string' } },
          risk: {
            type: 'object',
            additionalProperties: false,
            properties: {
              level: { enum: ['low', 'medium', 'high'] },
              euAiActRole: { type: 'string' },
              highRisk: { type: 'boolean' },
              category: { type: 'string' },
            },
          },
          declared: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['id', 'effect'],
              properties: {
                id: { type: 'string' },
                description: { type: 'string' },
                tools: { type: 'array', items: { type: 'string' } },
                effect: { enum: ['allow', 'ask'] },
                when: conditions,
                unless: conditions,
              },
            },
          },
          permitted: {
            type: 'array',
            description: 'The rules the policy enforces for the agent, deny rules included.',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['rule', 'effect', 'tools', 'mode'],
              properties: {
                rule: { type: 'string' },
                effect: { enum: ['allow', 'deny', 'ask'] },
                tools: { type: 'array', items: { type: 'string' } },
                when: conditions,
                unless: conditions,
                mode: { enum: ['enforce', 'shadow'] },
                limits: { type: 'array', items: { type: 'object' } },
              },
            },
          },
          attempted: {
            type: 'array',
            items: {
              ...attempts,
              required: [...attempts.required, 'tool'],
              properties: { tool: { type: 'string' }, ...attempts.properties },
            },
          },
          gap: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['status', 'tool', 'rule', 'capability', 'detail', 'attempts'],
              properties: {
                status: { enum: [...GAP_STATUSES] },
                tool: { type: 'string' },
                rule: { type: ['string', 'null'] },
                capability: { type: ['string', 'null'] },
                detail: { type: 'array', items: { type: 'string' } },
                attempts,
              },
            },
          },
        },
      },
    },
  },
} as const;

/** The export document (JSON form). */
export interface GovernanceExport {
  $schema: string;
  version: 1;
  window: { from: string; to: string };
  policy: { hash: string };
  agents: Record<string, unknown>[];
}

/** The declared + permitted + attempted view of every agent in the report. Deterministic. */
export function governanceExport(
  report: GapReport,
  policy: CheckedPolicy,
  declarations: Declarations,
): GovernanceExport {
  const agents = report.agents.map((a) => {
    const d = declarations.agents.get(a.id);
    const p = policy.agents.get(a.id);
    const eu = d?.risk.euAiAct;
    const risk = {
      ...(d?.risk.level ? { level: d.risk.level } : {}),
      ...(eu
        ? { euAiActRole: eu.role, highRisk: eu.highRisk, ...(eu.category ? { category: eu.category } : {}) }
        : {}),
    };
    return {
      id: a.id,
      ...(d ? { owner: d.owner, purpose: d.purpose, prohibited: d.prohibited, data: d.data } : {}),
      ...(Object.keys(risk).length ? { risk } : {}),
      declared: (d?.capabilities ?? []).map((c) => ({
        id: c.id,
        ...(c.description !== undefined ? { description: c.description } : {}),
        ...(c.tools ? { tools: c.tools } : {}),
        effect: c.effect,
        ...(c.when ? { when: c.when } : {}),
        ...(c.unless ? { unless: c.unless } : {}),
      })),
      permitted: (p?.rules ?? []).map((r) => {
        const raw = ruleSpecAt(policy.doc, r.path);
        return {
          rule: r.id,
          effect: r.effect,
          tools: r.patterns,
          ...(raw?.when ? { when: raw.when } : {}),
          ...(raw?.unless ? { unless: raw.unless } : {}),
          mode: r.mode ?? p?.mode ?? 'enforce',
          ...(r.limits.length ? { limits: r.limits.map((l) => ({ ...l })) } : {}),
        };
      }),
      attempted: a.tools.map((t) => ({ ...t })),
      gap: report.rows
        .filter((r) => r.agent === a.id)
        .map((r) => ({
          status: r.status,
          tool: r.tool,
          rule: r.rule?.id ?? null,
          capability: r.capability?.id ?? null,
          detail: r.detail,
          attempts: { ...r.attempts },
        })),
    };
  });
  return {
    $schema: governanceExportSchema.$id,
    version: 1,
    window: {
      from: new Date(report.window.from).toISOString(),
      to: new Date(report.window.to).toISOString(),
    },
    policy: { hash: report.policy.hash },
    agents,
  };
}

/** A UUID (version 5 layout) derived from content, so the same export has the same serial number. */
function contentUuid(value: unknown): string {
  const h = createHash('sha256').update(canonicalJson(value)).digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x50;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

const prop = (name: string, value: string) => ({ name, value });

/** The export as a CycloneDX 1.6 BOM: agents as components, tools as services, enforcement as properties. */
export function governanceCycloneDx(
  exp: GovernanceExport,
  generatorVersion: string,
): Record<string, unknown> {
  const components: Record<string, unknown>[] = [];
  const services: Record<string, unknown>[] = [];
  const dependencies: Record<string, unknown>[] = [];
  for (const a of exp.agents as {
    id: string;
    owner?: string;
    purpose?: string;
    prohibited?: string[];
    risk?: { euAiActRole?: string; highRisk?: boolean };
    permitted: {
      rule: string;
      effect: string;
      tools: string[];
      when?: unknown;
      unless?: unknown;
      mode: string;
    }[];
    declared: { id: string; tools?: string[] }[];
    attempted: { tool: string; total: number; allowed: number; denied: number; asked: number }[];
    gap: { status: string; tool: string }[];
  }[]) {
    const ref = `agent:${a.id}`;
    const props = [
      prop('execlayer:agent', a.id),
      ...(a.owner ? [prop('execlayer:owner', a.owner)] : []),
      ...(a.prohibited ?? []).map((x) => prop('execlayer:prohibited', x)),
      ...(a.risk?.euAiActRole ? [prop('execlayer:eu-ai-act-role', a.risk.euAiActRole)] : []),
      ...(a.risk?.highRisk !== undefined ? [prop('execlayer:high-risk', String(a.risk.highRisk))] : []),
      ...GAP_STATUSES.map((s) =>
        prop(`execlayer:gap:${s}`, String(a.gap.filter((g) => g.status === s).length)),
      ),
    ];
    components.push({
      type: 'application',
      'bom-ref': ref,
      name: a.id,
      ...(a.purpose ? { description: a.purpose } : {}),
      ...(a.owner ? { authors: [{ name: a.owner }] } : {}),
      properties: props,
    });
    const tools = new Set<string>([
      ...a.permitted.flatMap((p) => p.tools),
      ...a.declared.flatMap((d) => d.tools ?? []),
      ...a.attempted.map((t) => t.tool),
    ]);
    const refs: string[] = [];
    for (const tool of [...tools].sort()) {
      const sref = `tool:${a.id}:${tool}`;
      refs.push(sref);
      const enforced = a.permitted.filter((p) => p.tools.includes(tool));
      const att = a.attempted.find((t) => t.tool === tool);
      services.push({
        'bom-ref': sref,
        name: tool,
        ...(tool.includes('.') ? { group: tool.slice(0, tool.indexOf('.')) } : {}),
        properties: [
          prop('execlayer:tools', tool),
          ...enforced.flatMap((p) => [
            prop('execlayer:enforced:rule', p.rule),
            prop(`execlayer:enforced:${p.rule}:effect`, p.effect),
            prop(`execlayer:enforced:${p.rule}:mode`, p.mode),
            ...(p.when ? [prop(`execlayer:enforced:${p.rule}:when`, canonicalJson(p.when))] : []),
            ...(p.unless ? [prop(`execlayer:enforced:${p.rule}:unless`, canonicalJson(p.unless))] : []),
          ]),
          ...a.declared
            .filter((d) => d.tools?.includes(tool))
            .map((d) => prop('execlayer:declared:capability', d.id)),
          ...a.gap.filter((g) => g.tool === tool).map((g) => prop('execlayer:gap:status', g.status)),
          ...(att
            ? [
                prop(
                  'execlayer:attempts',
                  `${att.total} (${att.allowed} allowed, ${att.denied} denied, ${att.asked} asked)`,
                ),
              ]
            : []),
        ],
      });
    }
    dependencies.push({ ref, dependsOn: refs });
  }
  return {
    bomFormat: 'CycloneDX',
    specVersion: '1.6',
    serialNumber: `urn:uuid:${contentUuid(exp)}`,
    version: 1,
    metadata: {
      timestamp: exp.window.to,
      tools: { components: [{ type: 'application', name: 'execlayer', version: generatorVersion }] },
      properties: [prop('execlayer:policy', exp.policy.hash), prop('execlayer:window:from', exp.window.from)],
    },
    components,
    services,
    dependencies,
  };
}
