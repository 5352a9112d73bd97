/**
 * Importers: declarations from what governance teams already keep — an A2A AgentCard (its skills), a
 * CycloneDX 1.6 ML-BOM / AI-BOM (components and the services they depend on), a CSV or JSON register
 * read through a field map — and the policy's own free-text `documented:` strings.
 *
 * What these formats say in words stays words: a skill or a register entry becomes a capability with a
 * description and no tools, which the gap report shows as unverifiable until someone writes its typed
 * atoms. Only what a format states structurally becomes typed: a CycloneDX service's endpoints become a
 * `url` host constraint when the service names its tools (`execlayer:tools` property).
 */
import type { PolicyDocument } from '../policy/types.js';
import type { DeclarationFile, RawAgent, RawCapability } from './declaration.js';

/** An imported declaration and what the importer could not map. */
export interface Imported {
  file: DeclarationFile;
  /** Lines for the user: what was left as free text, what was skipped and why. */
  notes: string[];
}

/** Thrown for input that is not the format named; the message says what and where. */
export class ImportError extends Error {
  readonly code = 'import_error';
}

/** A capability id from free text: lowercase words joined by `-`, unique within `taken`. */
export function slug(text: string, taken: Set<string>): string {
  const base =
    text
      .toLowerCase()
      .normalize('NFKD')
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 60) || 'capability';
  let id = base;
  for (let i = 2; taken.has(id); i++) id = `${base}-${i}`;
  taken.add(id);
  return id;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
}

/** Agent ids as the policy accepts them. */
const AGENT_ID = /^[A-Za-z0-9_.@:-]{1,128}$/;

function agentId(raw: string, where: string): string {
  if (!AGENT_ID.test(raw)) {
    throw new ImportError(
      `${where}: \`${raw}\` is not a valid agent id (letters, digits and \`_ . @ : -\`); pass --agent`,
    );
  }
  return raw;
}

/**
 * A2A AgentCard (https://a2a-protocol.org): `name`, `description`, `provider.organization`, `skills[]`.
 * Each skill becomes a free-text capability (skills name abilities, not tools).
 */
export function fromA2aCard(card: unknown, opts: { agent?: string; owner?: string } = {}): Imported {
  if (!isObj(card)) throw new ImportError('agent card: expected a JSON object');
  const name = str(card.name);
  const id = agentId(opts.agent ?? name ?? '', 'agent card `name`');
  const provider = isObj(card.provider) ? card.provider : {};
  const owner = opts.owner ?? str(provider.organization) ?? str(provider.url);
  if (owner === undefined) throw new ImportError('agent card has no `provider.organization`; pass --owner');
  const purpose = str(card.description) ?? name;
  if (purpose === undefined) throw new ImportError('agent card has neither `description` nor `name`');
  if (card.skills !== undefined && !Array.isArray(card.skills))
    throw new ImportError('agent card `skills` must be a list');
  const taken = new Set<string>();
  const notes: string[] = [];
  const capabilities: RawCapability[] = [];
  (card.skills ?? []).forEach((s: unknown, i: number) => {
    if (!isObj(s)) throw new ImportError(`agent card \`skills[${i}]\` must be an object`);
    const title = str(s.name) ?? str(s.id) ?? `skill ${i + 1}`;
    const rawId = str(s.id);
    const capId =
      rawId && /^[A-Za-z0-9_.:-]{1,128}$/.test(rawId) && !taken.has(rawId) ? rawId : slug(title, taken);
    taken.add(capId);
    const description = [title, str(s.description)].filter(Boolean).join(': ');
    capabilities.push({ id: capId, description });
    notes.push(`${id}/${capId}: free text from skill \`${title}\`; add \`tools\` and \`when\` to compare it`);
  });
  const agent: RawAgent = { owner, purpose, capabilities };
  return { file: { version: 1, agents: { [id]: agent } }, notes };
}

interface CdxProperty {
  name: string;
  value: string;
}

function properties(o: Record<string, unknown>): CdxProperty[] {
  return Array.isArray(o.properties)
    ? o.properties.filter(
        (p): p is CdxProperty => isObj(p) && typeof p.name === 'string' && typeof p.value === 'string',
      )
    : [];
}

function prop(o: Record<string, unknown>, name: string): string[] {
  return properties(o)
    .filter((p) => p.name === name)
    .map((p) => p.value);
}

/** Hosts of a CycloneDX service's endpoints (URLs), lowercased; undefined when any is not a URL. */
function endpointHosts(service: Record<string, unknown>): string[] | undefined {
  if (!Array.isArray(service.endpoints) || service.endpoints.length === 0) return undefined;
  const hosts = new Set<string>();
  for (const e of service.endpoints) {
    try {
      const u = new URL(String(e));
      if (u.hostname === '') return undefined;
      hosts.add(u.hostname.toLowerCase());
    } catch {
      return undefined;
    }
  }
  return [...hosts].sort();
}

/**
 * CycloneDX 1.6 ML-BOM / AI-BOM. Every component of type `machine-learning-model` or `application` that
 * carries the property `execlayer:agent` (its value is the agent id) is an agent — or, when none carries it,
 * the single such component with `--agent`. Its services (the `services` it depends on, by `dependencies`)
 * become capabilities: typed (`tools` from the service's `execlayer:tools` property, `url.hosts` from its
 * endpoints) when the service names its tools, free text otherwise.
 */
export function fromCycloneDx(bom: unknown, opts: { agent?: string; owner?: string } = {}): Imported {
  if (!isObj(bom) || bom.bomFormat !== 'CycloneDX')
    throw new ImportError('not a CycloneDX BOM: `bomFormat` must be `CycloneDX`');
  const spec = String(bom.specVersion ?? '');
  if (!/^1\.[5-9]$/.test(spec))
    throw new ImportError(
      `CycloneDX ${spec || '(no specVersion)'} is not supported: use 1.5 or later (1.6 for AI-BOM)`,
    );
  const components = (Array.isArray(bom.components) ? bom.components : []).filter(isObj);
  const services = (Array.isArray(bom.services) ? bom.services : []).filter(isObj);
  const deps = new Map<string, string[]>();
  for (const d of Array.isArray(bom.dependencies) ? bom.dependencies : []) {
    if (isObj(d) && typeof d.ref === 'string' && Array.isArray(d.dependsOn))
      deps.set(
        d.ref,
        d.dependsOn.filter((x): x is string => typeof x === 'string'),
      );
  }
  const candidates = components.filter(
    (c) => c.type === 'machine-learning-model' || c.type === 'application',
  );
  let agents = candidates.filter((c) => prop(c, 'execlayer:agent').length > 0);
  if (agents.length === 0) {
    if (candidates.length !== 1 || opts.agent === undefined) {
      throw new ImportError(
        `the BOM has ${candidates.length} model or application components and none carries the property \`execlayer:agent\`; mark the agent components, or pass --agent with a BOM of exactly one`,
      );
    }
    agents = candidates;
  }
  const notes: string[] = [];
  const out: DeclarationFile = { version: 1, agents: {} };
  for (const c of agents) {
    const name = str(c.name) ?? '(unnamed)';
    const id = agentId(prop(c, 'execlayer:agent')[0] ?? opts.agent ?? name, `component \`${name}\``);
    if (out.agents[id]) throw new ImportError(`agent \`${id}\` appears twice in the BOM`);
    const authors = Array.isArray(c.authors) ? c.authors.filter(isObj) : [];
    const owner =
      opts.owner ??
      prop(c, 'execlayer:owner')[0] ??
      str(authors[0]?.email) ??
      str(authors[0]?.name) ??
      (isObj(c.supplier) ? str(c.supplier.name) : undefined) ??
      (isObj(c.manufacturer) ? str(c.manufacturer.name) : undefined);
    if (owner === undefined)
      throw new ImportError(
        `component \`${name}\` names no owner (authors, supplier, manufacturer or \`execlayer:owner\`); pass --owner`,
      );
    const considerations =
      isObj(c.modelCard) && isObj(c.modelCard.considerations) ? c.modelCard.considerations : {};
    const useCases = Array.isArray(considerations.useCases)
      ? considerations.useCases.filter((u): u is string => typeof u === 'string')
      : [];
    const purpose = str(c.description) ?? (useCases.length ? useCases.join('; ') : undefined) ?? name;
    const ref = typeof c['bom-ref'] === 'string' ? c['bom-ref'] : undefined;
    const used = new Set(ref ? (deps.get(ref) ?? []) : []);
    const taken = new Set<string>();
    const capabilities: RawCapability[] = [];
    const data = new Set<string>();
    for (const s of services) {
      const sref = typeof s['bom-ref'] === 'string' ? s['bom-ref'] : undefined;
      if (!sref || !used.has(sref)) continue;
      const sname = str(s.name) ?? sref;
      for (const d of Array.isArray(s.data) ? s.data.filter(isObj) : []) {
        const cls = str(d.classification);
        if (cls) data.add(cls);
      }
      const tools = prop(s, 'execlayer:tools')
        .flatMap((v) => v.split(','))
        .map((t) => t.trim())
        .filter(Boolean);
      const capId = slug(sname, taken);
      const description = [sname, str(s.description)].filter(Boolean).join(': ');
      if (tools.length === 0) {
        capabilities.push({ id: capId, description });
        notes.push(
          `${id}/${capId}: service \`${sname}\` names no tools (property \`execlayer:tools\`); kept as free text`,
        );
        continue;
      }
      const hosts = endpointHosts(s);
      capabilities.push({
        id: capId,
        description,
        tools: tools.length === 1 ? (tools[0] as string) : tools,
        ...(hosts ? { when: { url: { hosts } } } : {}),
      });
      if (!hosts)
        notes.push(`${id}/${capId}: service \`${sname}\` has no endpoints; no url constraint declared`);
    }
    const highRisk = prop(c, 'execlayer:high-risk')[0];
    const role = prop(c, 'execlayer:eu-ai-act-role')[0];
    const agent: RawAgent = {
      owner,
      purpose,
      ...(prop(c, 'execlayer:prohibited').length ? { prohibited: prop(c, 'execlayer:prohibited') } : {}),
      ...(data.size ? { data: [...data].sort() } : {}),
      ...(role && highRisk !== undefined
        ? { risk: { eu_ai_act: { role: role as 'deployer', high_risk: highRisk === 'true' } } }
        : {}),
      capabilities,
    };
    out.agents[id] = agent;
  }
  return { file: out, notes };
}

/** Which register column holds which declaration field. `agent`, `owner` and `purpose` are required. */
export interface FieldMap {
  agent: string;
  owner: string;
  purpose: string;
  prohibited?: string;
  data?: string;
  /** Free-text capabilities (a list). */
  capabilities?: string;
  risk_level?: string;
  high_risk?: string;
  eu_ai_act_role?: string;
  retention?: string;
  /** Separator inside list cells (default `;`). */
  separator?: string;
}

const FIELD_KEYS = [
  'agent',
  'owner',
  'purpose',
  'prohibited',
  'data',
  'capabilities',
  'risk_level',
  'high_risk',
  'eu_ai_act_role',
  'retention',
  'separator',
];

/** Checks a field map read from JSON. */
export function parseFieldMap(raw: unknown): FieldMap {
  if (!isObj(raw)) throw new ImportError('field map: expected a JSON object of field → column');
  for (const [k, v] of Object.entries(raw)) {
    if (!FIELD_KEYS.includes(k))
      throw new ImportError(`field map: unknown field \`${k}\`; fields: ${FIELD_KEYS.join(', ')}`);
    if (typeof v !== 'string' || v === '') throw new ImportError(`field map: \`${k}\` must name a column`);
  }
  for (const k of ['agent', 'owner', 'purpose'])
    if (raw[k] === undefined) throw new ImportError(`field map: \`${k}\` is required`);
  return raw as unknown as FieldMap;
}

/** RFC 4180 CSV (quotes, doubled quotes, CRLF or LF) into rows of cells. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  for (; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          cell += '"';
          i++;
        } else quoted = false;
      } else cell += c;
    } else if (c === '"' && cell === '') quoted = true;
    else if (c === ',') {
      row.push(cell);
      cell = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += c;
  }
  if (quoted) throw new ImportError('csv: a quoted cell is not closed');
  if (cell !== '' || row.length > 0) {
    row.push(cell);
    rows.push(row);
  }
  return rows.filter((r) => !(r.length === 1 && r[0] === ''));
}

/** Register rows (objects by column name) from CSV text or a JSON array of objects. */
export function registerRows(text: string, format: 'csv' | 'json'): Record<string, string>[] {
  if (format === 'json') {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new ImportError(`register is not JSON: ${(e as Error).message}`);
    }
    if (!Array.isArray(data)) throw new ImportError('register: expected a JSON array of objects');
    return data.map((r, i) => {
      if (!isObj(r)) throw new ImportError(`register: entry ${i + 1} is not an object`);
      return Object.fromEntries(
        Object.entries(r).map(([k, v]) => [
          k,
          Array.isArray(v) ? v.map(String).join('\u0000') : v === null || v === undefined ? '' : String(v),
        ]),
      );
    });
  }
  const [header, ...body] = parseCsv(text);
  if (!header) throw new ImportError('register: the csv is empty');
  return body.map((cells, n) => {
    if (cells.length !== header.length)
      throw new ImportError(
        `register: csv line ${n + 2} has ${cells.length} cells, the header has ${header.length}`,
      );
    return Object.fromEntries(header.map((h, i) => [h.trim(), cells[i] ?? '']));
  });
}

/** A CSV/JSON register, one agent per row, read through `map`. */
export function fromRegister(rows: Record<string, string>[], map: FieldMap): Imported {
  const sep = map.separator ?? ';';
  const list = (v: string | undefined) =>
    (v ?? '')
      .split(v?.includes('\u0000') ? '\u0000' : sep)
      .map((s) => s.trim())
      .filter(Boolean);
  const notes: string[] = [];
  const out: DeclarationFile = { version: 1, agents: {} };
  rows.forEach((r, i) => {
    const where = `register row ${i + 1}`;
    const cell = (field: keyof FieldMap) => {
      const col = map[field];
      if (col === undefined) return undefined;
      if (!(col in r)) throw new ImportError(`${where}: column \`${col}\` (for \`${field}\`) is missing`);
      return r[col]?.trim() ?? '';
    };
    const id = agentId(cell('agent') ?? '', `${where} \`${map.agent}\``);
    if (out.agents[id]) throw new ImportError(`${where}: agent \`${id}\` is already in the register`);
    const owner = cell('owner');
    const purpose = cell('purpose');
    if (!owner) throw new ImportError(`${where}: \`${map.owner}\` is empty`);
    if (!purpose) throw new ImportError(`${where}: \`${map.purpose}\` is empty`);
    const taken = new Set<string>();
    const capabilities = list(cell('capabilities')).map((text) => ({
      id: slug(text, taken),
      description: text,
    }));
    for (const c of capabilities)
      notes.push(`${id}/${c.id}: free text \`${c.description}\`; add \`tools\` and \`when\``);
    const high = cell('high_risk');
    const role = cell('eu_ai_act_role');
    const level = cell('risk_level')?.toLowerCase();
    const retention = cell('retention');
    const agent: RawAgent = {
      owner,
      purpose,
      ...(list(cell('prohibited')).length ? { prohibited: list(cell('prohibited')) } : {}),
      ...(list(cell('data')).length ? { data: list(cell('data')) } : {}),
      capabilities,
    };
    const risk: NonNullable<RawAgent['risk']> = {};
    if (level) {
      if (!['low', 'medium', 'high'].includes(level))
        throw new ImportError(`${where}: risk level \`${level}\` is not low, medium or high`);
      risk.level = level as 'low';
    }
    if (role || high) {
      if (!role || !high)
        throw new ImportError(`${where}: give both the EU AI Act role and the high-risk flag`);
      const h = high.toLowerCase();
      if (!['true', 'false', 'yes', 'no', '1', '0'].includes(h))
        throw new ImportError(`${where}: high-risk \`${high}\` is not yes or no`);
      risk.eu_ai_act = {
        role: role.toLowerCase() as 'deployer',
        high_risk: ['true', 'yes', '1'].includes(h),
      };
    }
    if (Object.keys(risk).length) agent.risk = risk;
    if (retention) agent.retention = /^\d+$/.test(retention) ? `${retention}d` : retention;
    out.agents[id] = agent;
  });
  return { file: out, notes };
}

/**
 * The policy's free-text `documented:` strings (with `owner`, `purpose` and `risk`) as declarations, so
 * they move out of the policy to the files governance owns. Each string becomes a free-text capability.
 */
export function fromPolicyDocumented(doc: PolicyDocument): Imported {
  const notes: string[] = [];
  const out: DeclarationFile = { version: 1, agents: {} };
  for (const [id, spec] of Object.entries(doc.agents)) {
    if (spec.documented === undefined && spec.owner === undefined && spec.purpose === undefined) continue;
    const taken = new Set<string>();
    const owner = spec.owner ?? '(no owner in the policy)';
    if (spec.owner === undefined) notes.push(`${id}: the policy names no owner; fill in \`owner\``);
    const capabilities = (spec.documented ?? []).map((text) => ({
      id: slug(text, taken),
      description: text,
    }));
    for (const c of capabilities)
      notes.push(`${id}/${c.id}: free text \`${c.description}\`; add \`tools\` and \`when\``);
    out.agents[id] = {
      owner,
      purpose: spec.purpose ?? '(no purpose in the policy)',
      ...(spec.risk ? { risk: { level: spec.risk } } : {}),
      capabilities,
    };
  }
  return { file: out, notes };
}
