/**
 * Declarations: what governance documents about each agent — owner, intended purpose, prohibited uses,
 * risk classification, data categories and the capabilities it is meant to have, written as typed
 * capability atoms in the policy's own condition language. They live in their own files (different
 * owners than the policy), linked to the policy by agent id.
 *
 * load → check: the file is parsed with positions, validated against `declarationSchema`, and every
 * capability's conditions are compiled by the policy checker itself (one condition language, one
 * compiler), so a declaration that loads can be compared with the policy and evaluated on recorded calls.
 */
import { readFile } from 'node:fs/promises';
import { Ajv } from 'ajv';
import { type CheckedPolicy, type CheckedRule, checkPolicy } from '../policy/check.js';
import { schemaProblems } from '../policy/load.js';
import type { Problem } from '../policy/problems.js';
import { conditionsSchema } from '../policy/schema.js';
import type { PolicySource } from '../policy/source.js';
import type { Conditions, PolicyDocument, RuleSpec } from '../policy/types.js';
import { sha256Hex } from '../sha256.js';
import { parseYaml } from '../yaml-source.js';

/** Largest declaration file accepted. */
export const MAX_DECLARATION_BYTES = 4 * 1024 * 1024;
const MAX_DEPTH = 32;

/** EU AI Act roles an organisation can have for an AI system (Art. 3). */
export const EU_AI_ACT_ROLES = [
  'provider',
  'deployer',
  'importer',
  'distributor',
  'authorised_representative',
] as const;

const strings = { type: 'array', items: { type: 'string', minLength: 1 } } as const;
const toolPatterns = {
  description: 'Tool names or globs (`crm.*`) this capability covers.',
  oneOf: [
    { type: 'string', minLength: 1 },
    { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 },
  ],
};

const capability = {
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  description:
    'One declared capability: tools and typed constraints in the policy condition language. Without `tools` it is free text only and cannot be compared (reported as unverifiable).',
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:-]+$' },
    description: { type: 'string', maxLength: 1000 },
    tools: toolPatterns,
    when: conditionsSchema,
    unless: conditionsSchema,
    oversight: {
      enum: ['none', 'approval'],
      description: '`approval`: a human approves each such call before it runs (the policy must `ask`).',
    },
  },
};

/** JSON Schema (draft-07) of a declaration file; `schema/declaration.schema.json` is this object. */
export const declarationSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://execlayer.dev/schema/declaration.schema.json',
  title: 'ExecLayer agent declarations',
  type: 'object',
  additionalProperties: false,
  required: ['version', 'agents'],
  properties: {
    $schema: { type: 'string' },
    version: { const: 1 },
    description: { type: 'string' },
    agents: {
      type: 'object',
      description: 'Declared agents by id (the same ids as in the policy).',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['owner', 'purpose'],
        properties: {
          owner: { type: 'string', minLength: 1, description: 'Accountable person or team.' },
          purpose: { type: 'string', minLength: 1, description: 'Intended purpose, in words.' },
          prohibited: { ...strings, description: 'Uses that are prohibited, in words.' },
          data: { ...strings, description: 'Categories of data the agent handles.' },
          risk: {
            type: 'object',
            additionalProperties: false,
            properties: {
              level: { enum: ['low', 'medium', 'high'] },
              eu_ai_act: {
                type: 'object',
                additionalProperties: false,
                required: ['role', 'high_risk'],
                properties: {
                  role: { enum: [...EU_AI_ACT_ROLES] },
                  high_risk: { type: 'boolean', description: 'A high-risk AI system (Art. 6, Annex III).' },
                  category: { type: 'string', description: 'e.g. `Annex III 5(b)`.' },
                },
              },
            },
          },
          retention: {
            type: 'string',
            pattern: '^[0-9]{1,5}d$',
            description:
              'Audit log retention the deployer commits to, in days (`183d`); at least 183d for high-risk agents (Art. 26(6)).',
          },
          capabilities: { type: 'array', items: capability },
        },
      },
    },
  },
} as const;

/** A declared capability, checked. `rule` is its compiled form (absent for free-text capabilities). */
export interface DeclaredCapability {
  id: string;
  description?: string;
  tools?: string[];
  /** `ask` when the declaration requires human approval. */
  effect: 'allow' | 'ask';
  when?: Conditions;
  unless?: Conditions;
  rule?: CheckedRule;
  file: string;
  line: number;
}

/** What governance declared about one agent. */
export interface AgentDeclaration {
  id: string;
  owner: string;
  purpose: string;
  prohibited: string[];
  data: string[];
  risk: {
    level?: 'low' | 'medium' | 'high';
    euAiAct?: { role: (typeof EU_AI_ACT_ROLES)[number]; highRisk: boolean; category?: string };
  };
  /** Retention in days, when declared. */
  retentionDays?: number;
  capabilities: DeclaredCapability[];
  file: string;
  line: number;
}

/** Every declaration loaded, and the declared capabilities as a policy (one allow/ask rule each). */
export interface Declarations {
  agents: Map<string, AgentDeclaration>;
  /** Declared capabilities as a checked policy: deciding a recorded call with it says "declared or not". */
  policy: CheckedPolicy;
  /** Source files with the sha256 of their bytes, in load order. */
  files: { file: string; sha256: string }[];
}

export type DeclarationLoad = { ok: true; declarations: Declarations } | { ok: false; problems: Problem[] };

/** The raw shape after schema validation. */
export interface DeclarationFile {
  version: 1;
  description?: string;
  agents: Record<string, RawAgent>;
}

export interface RawAgent {
  owner: string;
  purpose: string;
  prohibited?: string[];
  data?: string[];
  risk?: {
    level?: 'low' | 'medium' | 'high';
    eu_ai_act?: { role: (typeof EU_AI_ACT_ROLES)[number]; high_risk: boolean; category?: string };
  };
  retention?: string;
  capabilities?: RawCapability[];
}

export interface RawCapability {
  id: string;
  description?: string;
  tools?: string | string[];
  when?: Conditions;
  unless?: Conditions;
  oversight?: 'none' | 'approval';
}

const ajv = new Ajv({ allErrors: true, strict: false, verbose: true });
const validate = ajv.compile(declarationSchema);

/** The synthetic rule id of a declared capability. */
export function capabilityRuleId(agent: string, capability: string): string {
  return `${agent}/${capability}`;
}

interface Parsed {
  raw: DeclarationFile;
  source: PolicySource;
}

/** Parses and schema-checks one declaration text. */
function parseDeclaration(
  text: string,
  file: string,
): { ok: true; parsed: Parsed } | { ok: false; problems: Problem[] } {
  const r = parseYaml(text, { what: 'declaration', maxBytes: MAX_DECLARATION_BYTES, maxDepth: MAX_DEPTH });
  if (!r.ok) {
    return {
      ok: false,
      problems: r.problems.map((p) => ({
        severity: 'error' as const,
        code: p.code,
        message: p.message,
        file,
        line: p.line,
        column: p.column,
        path: '',
        ...(p.hint ? { hint: p.hint } : {}),
      })),
    };
  }
  const { data, position, offsetOf } = r.source;
  const source: PolicySource = {
    file,
    text,
    data,
    locate: (path, key = false) => position(offsetOf(path, key) ?? 0),
    offsetOf: (path) => offsetOf(path),
    position,
  };
  if (!validate(data)) return { ok: false, problems: schemaProblems(validate.errors ?? [], source) };
  return { ok: true, parsed: { raw: data as DeclarationFile, source } };
}

/** Loads and checks declaration texts (one or many files). Never throws. */
export function loadDeclarationTexts(inputs: readonly { text: string; file: string }[]): DeclarationLoad {
  const problems: Problem[] = [];
  const parsed: Parsed[] = [];
  for (const { text, file } of inputs) {
    const p = parseDeclaration(text, file);
    if (p.ok) parsed.push(p.parsed);
    else problems.push(...p.problems);
  }
  if (problems.length > 0) return { ok: false, problems };

  const agents = new Map<string, AgentDeclaration>();
  const doc: PolicyDocument = { version: 1, mode: 'enforce', agents: {} };
  // Where each synthetic rule came from: its file, agent and capability index, to put problems in place.
  const origin = new Map<string, { parsed: Parsed; agent: string; index: number }>();
  for (const p of parsed) {
    for (const [id, a] of Object.entries(p.raw.agents)) {
      const at = p.source.locate(['agents', id], true);
      const prev = agents.get(id);
      if (prev) {
        problems.push(
          problem(
            p.source,
            ['agents', id],
            'duplicate_agent',
            `agent \`${id}\` is already declared in ${prev.file}:${prev.line}`,
            true,
          ),
        );
        continue;
      }
      const decl = agentDeclaration(id, a, p, at.line, problems);
      agents.set(id, decl);
      const rules: RuleSpec[] = [];
      const seen = new Set<string>();
      (a.capabilities ?? []).forEach((c, index) => {
        if (seen.has(c.id)) {
          problems.push(
            problem(
              p.source,
              ['agents', id, 'capabilities', index, 'id'],
              'duplicate_id',
              `capability id \`${c.id}\` is used twice for agent \`${id}\``,
            ),
          );
          return;
        }
        seen.add(c.id);
        if (c.tools === undefined) return;
        const ruleId = capabilityRuleId(id, c.id);
        origin.set(ruleId, { parsed: p, agent: id, index });
        rules.push({
          id: ruleId,
          [c.oversight === 'approval' ? 'ask' : 'allow']: c.tools,
          ...(c.when ? { when: c.when } : {}),
          ...(c.unless ? { unless: c.unless } : {}),
        });
      });
      doc.agents[id] = { rules };
    }
  }
  if (problems.length > 0) return { ok: false, problems };

  // The policy checker compiles the conditions; its paths point into the synthetic document, mapped back
  // here to the capability in its own file.
  const checked = checkPolicy(doc, syntheticSource(doc, origin, parsed));
  const errors = checked.problems.filter((q) => q.severity === 'error');
  if (errors.length > 0) return { ok: false, problems: errors.map((q) => relocate(q, doc, origin)) };
  for (const agent of checked.policy.agents.values()) {
    const decl = agents.get(agent.id);
    for (const rule of agent.rules) {
      const cap = decl?.capabilities.find((c) => capabilityRuleId(agent.id, c.id) === rule.id);
      if (cap) cap.rule = rule;
    }
  }
  return {
    ok: true,
    declarations: {
      agents,
      policy: checked.policy,
      files: inputs.map((i) => ({ file: i.file, sha256: sha256Hex(i.text) })),
    },
  };
}

/** Loads and checks declaration files. Never throws. */
export async function loadDeclarationFiles(paths: readonly string[]): Promise<DeclarationLoad> {
  const inputs: { text: string; file: string }[] = [];
  const problems: Problem[] = [];
  for (const path of paths) {
    try {
      const buf = await readFile(path);
      if (buf.length > MAX_DECLARATION_BYTES) {
        problems.push(
          fileProblem(path, 'too_large', `declaration is larger than ${MAX_DECLARATION_BYTES} bytes`),
        );
        continue;
      }
      inputs.push({ text: new TextDecoder('utf-8', { fatal: true }).decode(buf), file: path });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      problems.push(
        fileProblem(
          path,
          code === 'ENOENT' ? 'not_found' : 'unreadable',
          code === 'ENOENT'
            ? `declaration file \`${path}\` does not exist`
            : e instanceof TypeError
              ? 'declaration is not valid utf-8'
              : `cannot read declaration file \`${path}\`: ${(e as Error).message}`,
        ),
      );
    }
  }
  if (problems.length > 0) return { ok: false, problems };
  return loadDeclarationTexts(inputs);
}

function agentDeclaration(
  id: string,
  a: RawAgent,
  p: Parsed,
  line: number,
  problems: Problem[],
): AgentDeclaration {
  const eu = a.risk?.eu_ai_act;
  const retentionDays = a.retention === undefined ? undefined : Number(a.retention.slice(0, -1));
  if (eu?.high_risk && retentionDays !== undefined && retentionDays < 183) {
    problems.push(
      problem(
        p.source,
        ['agents', id, 'retention'],
        'retention_too_short',
        `agent \`${id}\` is high-risk: logs must be kept at least 183 days (EU AI Act Art. 26(6)), not ${retentionDays}`,
      ),
    );
  }
  return {
    id,
    owner: a.owner,
    purpose: a.purpose,
    prohibited: a.prohibited ?? [],
    data: a.data ?? [],
    risk: {
      ...(a.risk?.level ? { level: a.risk.level } : {}),
      ...(eu
        ? {
            euAiAct: {
              role: eu.role,
              highRisk: eu.high_risk,
              ...(eu.category ? { category: eu.category } : {}),
            },
          }
        : {}),
    },
    ...(retentionDays !== undefined ? { retentionDays } : {}),
    capabilities: (a.capabilities ?? []).map((c, i) => {
      const tools = c.tools === undefined ? undefined : Array.isArray(c.tools) ? c.tools : [c.tools];
      return {
        id: c.id,
        ...(c.description !== undefined ? { description: c.description } : {}),
        ...(tools ? { tools } : {}),
        effect: c.oversight === 'approval' ? ('ask' as const) : ('allow' as const),
        ...(c.when ? { when: c.when } : {}),
        ...(c.unless ? { unless: c.unless } : {}),
        file: p.source.file,
        line: p.source.locate(['agents', id, 'capabilities', i]).line,
      };
    }),
    file: p.source.file,
    line,
  };
}

/** Maps a path into the synthetic policy to the declaration file and path it came from. */
function mapPath(
  path: readonly (string | number)[],
  doc: PolicyDocument,
  origin: Map<string, { parsed: Parsed; agent: string; index: number }>,
): { parsed: Parsed; path: (string | number)[] } | undefined {
  if (path[0] !== 'agents' || path[2] !== 'rules' || typeof path[3] !== 'number') return undefined;
  const rule = doc.agents[String(path[1])]?.rules?.[path[3]];
  const o = rule?.id ? origin.get(rule.id) : undefined;
  if (!o) return undefined;
  const rest = path.slice(4).map((s, i) => (i === 0 && (s === 'allow' || s === 'ask') ? 'tools' : s));
  return { parsed: o.parsed, path: ['agents', o.agent, 'capabilities', o.index, ...rest] };
}

function syntheticSource(
  doc: PolicyDocument,
  origin: Map<string, { parsed: Parsed; agent: string; index: number }>,
  parsed: Parsed[],
): PolicySource {
  const first = parsed[0]?.source;
  // Positions of CEL problems are offsets into one file's text; a synthetic path maps to exactly one file.
  let current: PolicySource | undefined = first;
  return {
    file: first?.file ?? '<declarations>',
    text: first?.text ?? '',
    data: doc,
    locate(path, key) {
      const m = mapPath(path, doc, origin);
      if (!m) return { line: 1, column: 1 };
      current = m.parsed.source;
      return m.parsed.source.locate(m.path, key);
    },
    offsetOf(path) {
      const m = mapPath(path, doc, origin);
      if (!m) return undefined;
      current = m.parsed.source;
      return m.parsed.source.offsetOf(m.path);
    },
    position: (offset) => (current ?? (first as PolicySource)).position(offset),
  };
}

/** A checker problem (synthetic path) put back at its declaration file and path. */
function relocate(
  q: Problem,
  doc: PolicyDocument,
  origin: Map<string, { parsed: Parsed; agent: string; index: number }>,
): Problem {
  const segs = q.path
    .split('/')
    .slice(1)
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  const m = mapPath(segs, doc, origin);
  if (!m) return q;
  return { ...q, file: m.parsed.source.file, path: `/${m.path.join('/')}` };
}

function problem(
  source: PolicySource,
  path: (string | number)[],
  code: string,
  message: string,
  key = false,
): Problem {
  return {
    severity: 'error',
    code,
    message,
    file: source.file,
    ...source.locate(path, key),
    path: `/${path.join('/')}`,
  };
}

function fileProblem(file: string, code: string, message: string): Problem {
  return { severity: 'error', code, message, file, line: 1, column: 1, path: '' };
}

/** Six months, the EU AI Act's minimum for deployers' logs of high-risk systems (Art. 26(6)). */
export const HIGH_RISK_RETENTION_MS = 183 * 24 * 60 * 60 * 1000;

/**
 * The shortest audit retention the declarations allow: the longest retention any agent declares, and at
 * least six months when any agent is high-risk; 0 when nothing is declared. `audit prune` must not remove
 * records younger than this.
 */
export function retentionFloorMs(declarations: Declarations): number {
  let floor = 0;
  for (const a of declarations.agents.values()) {
    if (a.risk.euAiAct?.highRisk) floor = Math.max(floor, HIGH_RISK_RETENTION_MS);
    if (a.retentionDays !== undefined) floor = Math.max(floor, a.retentionDays * 24 * 60 * 60 * 1000);
  }
  return floor;
}
