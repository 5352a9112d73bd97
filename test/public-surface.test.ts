// The package's public surface, as built (dist/) and packed: every name the docs tell a user to import
// exists at the entry point they name, each entry point exports exactly the names listed below (adding
// or removing one is a decision made here, not a side effect), and nothing packed is a test helper or a
// contract suite, or imports one.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';

const repo = new URL('../', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, string | { types: string; default: string }>;
};

/** The code entry points (`execlayer`, `execlayer/stores`, …) with their built files. */
const entries = Object.entries(pkg.exports).flatMap(([sub, target]) =>
  typeof target === 'string'
    ? []
    : [{ spec: sub === '.' ? pkg.name : `${pkg.name}${sub.slice(1)}`, ...target }],
);

/**
 * Every name each entry point exports (values and types). Curated: the runtime, its model and errors at
 * the root; each optional part behind its own subpath; no test helper, store internals or transport
 * plumbing anywhere.
 */
const SURFACE: Record<string, string[]> = {
  execlayer: [
    'Action',
    'ApprovalRequiredError',
    'ApprovalSpec',
    'ApprovalWait',
    'AuditEvent',
    'CanonicalJsonError',
    'CheckedPolicy',
    'Decision',
    'DecisionCode',
    'Delivered',
    'DeniedError',
    'Effect',
    'EndorseOutcome',
    'EndorseRequest',
    'EnforcementPoint',
    'Engine',
    'ExecLayer',
    'ExecLayerOptions',
    'FlowEvent',
    'FlowState',
    'FlowVerdictInfo',
    'Json',
    'Label',
    'LimitScope',
    'LimitSpec',
    'LoadResult',
    'Mode',
    'PolicyDocument',
    'PolicyError',
    'PolicyLoadOptions',
    'PolicySignature',
    'PolicyWatchTiming',
    'Problem',
    'RecordOptions',
    'Recorder',
    'ReloadOutcome',
    'ReloadTrigger',
    'RuleSpec',
    'RuntimeEvent',
    'SessionRecord',
    'canonicalJson',
    'compile',
    'createExecLayer',
    'factsReady',
    'formatProblem',
    'formatRuntimeEvent',
    'initFacts',
    'jsonDigest',
    'loadPolicyFile',
    'loadPolicyObject',
    'loadPolicyText',
    'policySchema',
    'sessionsFromAudit',
    'signPolicyHash',
    'verifyPolicySignature',
  ],
  'execlayer/stores': [
    'ALL_AGENTS',
    'AgentStateError',
    'AgentStateStore',
    'AgentStateStoreOptions',
    'Approval',
    'ApprovalBinding',
    'ApprovalError',
    'ApprovalErrorCode',
    'ApprovalFilter',
    'ApprovalNotifier',
    'ApprovalRequest',
    'ApprovalStatus',
    'ApprovalStore',
    'ApprovalStoreOptions',
    'ApprovalVerdict',
    'DEFAULT_STORE',
    'LimitFailureCode',
    'LimitResult',
    'LimitStore',
    'LimitStoreOptions',
    'LimitTicket',
    'MemoryRecorder',
    'OpenAgentStateStoreOptions',
    'OpenApprovalStoreOptions',
    'OpenLimitStoreOptions',
    'PinCheck',
    'PinnedDefinition',
    'ReleaseOptions',
    'SIGNATURE_HEADER',
    'SessionStore',
    'StoreUrls',
    'Stores',
    'Suspension',
    'SuspensionStatus',
    'TIMESTAMP_HEADER',
    'ToolPin',
    'ToolPinStore',
    'WaitOptions',
    'WaitOutcome',
    'WaitResult',
    'WebhookNotifier',
    'WebhookOptions',
    'WebhookPayload',
    'hashToolDefinition',
    'openAgentStateStore',
    'openApprovalStore',
    'openLimitStore',
    'openSessionStore',
    'openStores',
    'openToolPinStore',
    'signWebhook',
    'verifyWebhook',
    'waitForDecision',
    'webhookNotifier',
  ],
  'execlayer/audit': [
    'AuditError',
    'AuditErrorCode',
    'AuditLog',
    'AuditLogOptions',
    'AuditRecord',
    'AuditStore',
    'Checkpoint',
    'DEFAULT_RETENTION_MS',
    'DecideFn',
    'InclusionProof',
    'ProofCheck',
    'PruneResult',
    'Receipt',
    'RecordFilter',
    'RecordQuery',
    'ReplayChange',
    'ReplayExample',
    'ReplayReport',
    'VerifyOptions',
    'VerifyProblem',
    'VerifyProblemCode',
    'VerifyReport',
    'defaultKeyPath',
    'isAuditError',
    'keyFingerprint',
    'openAuditLog',
    'openStore',
    'parsePublicKey',
    'proveInclusion',
    'replay',
    'verifyProof',
    'verifyStore',
  ],
  'execlayer/remote': [
    'Action',
    'ApprovalRequiredError',
    'Decision',
    'DecisionCode',
    'DeniedError',
    'Effect',
    'Json',
    'RemoteExecLayer',
    'RemoteExecLayerOptions',
    'createRemoteExecLayer',
  ],
  'execlayer/http': [
    'AdminApiOptions',
    'AdminRole',
    'ApiKeyConfig',
    'AuthConfig',
    'AuthResult',
    'Authenticate',
    'Authenticator',
    'AuthenticatorOptions',
    'CredentialRole',
    'DEFAULT_ADMIN_MAX_BODY_BYTES',
    'DEFAULT_MAX_BATCH',
    'DEFAULT_MAX_BODY_BYTES',
    'DecideBatchResponse',
    'DecideResponse',
    'DecisionApiOptions',
    'DecisionLayer',
    'JwtConfig',
    'OutcomeResponse',
    'Problem',
    'ProblemCode',
    'createAdminApiHandler',
    'createAuthenticator',
    'createDecisionApiHandler',
    'createDecisionApiServer',
    'hashApiKey',
    'newApiKey',
  ],
  'execlayer/mcp': [
    'ConfigError',
    'ConfigProblem',
    'DECISION_META_KEY',
    'GatewayConfig',
    'GatewayHttpServer',
    'GatewayLayer',
    'GatewayOptions',
    'HttpHandler',
    'HttpUpstreamConfig',
    'McpGateway',
    'OpenedLayer',
    'SessionIdentity',
    'SessionUpstreamStatus',
    'StdioUpstreamConfig',
    'UpstreamConfig',
    'decisionMeta',
    'loadConfigFile',
    'openLayer',
    'parseConfig',
    'refusalText',
    'startGatewayHttp',
  ],
  'execlayer/adapters/ai-sdk': [
    'AdapterError',
    'AdapterErrorCode',
    'AdapterLayer',
    'AdapterOptions',
    'AiSdkAdapterError',
    'AiSdkAdapterOptions',
    'ToolCallRefusedError',
    'withExecLayer',
  ],
  'execlayer/adapters/openai-agents': [
    'AdapterError',
    'AdapterErrorCode',
    'AdapterLayer',
    'AdapterOptions',
    'OpenAIAgentsAdapterError',
    'OpenAIAgentsAdapterOptions',
    'protectTool',
    'withExecLayer',
  ],
  'execlayer/adapters/langchain': [
    'AdapterError',
    'AdapterErrorCode',
    'AdapterLayer',
    'AdapterOptions',
    'LangChainAdapterError',
    'LangChainAdapterOptions',
    'LangChainTool',
    'ToolCallRefusedError',
    'protectTool',
    'withExecLayer',
  ],
  'execlayer/adapters/mcp-server': [
    'AdapterError',
    'AdapterErrorCode',
    'DECISION_META_KEY',
    'McpAdapterLayer',
    'McpRequestExtra',
    'McpServerAdapterError',
    'McpServerAdapterOptions',
    'protectMcpServer',
  ],
};

let built: ts.Program | undefined;
/** The built declarations of every entry point, as a user's compiler sees them (one program, made once). */
function declarations(): ts.Program {
  built ??= ts.createProgram(
    entries.map((e) => join(repo, e.types)),
    { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, noEmit: true },
  );
  return built;
}

/** The names `file` (a .d.ts entry point) exports, types and values alike, sorted. */
function declaredExports(program: ts.Program, file: string): string[] {
  const source = program.getSourceFile(file);
  assert.ok(source, `${file} is not part of the program`);
  const checker = program.getTypeChecker();
  const mod = checker.getSymbolAtLocation(source);
  assert.ok(mod, `${file} is not a module`);
  return checker
    .getExportsOfModule(mod)
    .map((s) => s.getName())
    .sort();
}

/** One name a doc tells the reader to import, and where. */
interface DocImport {
  where: string;
  spec: string;
  name: string;
  typeOnly: boolean;
}

const IMPORT =
  /import\s+(type\s+)?(\{[^}]*\}|[\w$]+|\*\s+as\s+[\w$]+)\s+from\s+['"](execlayer(?:\/[^'"]*)?)['"]/g;
/** "`name(…)` from `execlayer/sub`": the docs' way to say where a function named in prose comes from. */
const CALL_FROM = /`([A-Za-z_$][\w$]*)\([^`]*\)`\s+from\s+`(execlayer(?:\/[^`]*)?)`/g;

/** Every import from the package that README.md and docs/*.md show, in code blocks and in prose. */
function docImports(): DocImport[] {
  const files = ['README.md', ...readdirSync(join(repo, 'docs')).map((f) => `docs/${f}`)].filter((f) =>
    f.endsWith('.md'),
  );
  const out: DocImport[] = [];
  for (const file of files) {
    const text = readFileSync(join(repo, file), 'utf8');
    const lineOf = (i: number) => `${file}:${text.slice(0, i).split('\n').length}`;
    for (const m of text.matchAll(IMPORT)) {
      const [, allType, what = '', spec = ''] = m;
      const where = lineOf(m.index ?? 0);
      if (!what.startsWith('{')) {
        out.push({
          where,
          spec,
          name: what.startsWith('*') ? '*' : 'default',
          typeOnly: allType !== undefined,
        });
        continue;
      }
      for (const part of what.slice(1, -1).split(',')) {
        const item = part.trim();
        if (item === '') continue;
        const typeOnly = allType !== undefined || item.startsWith('type ');
        const name = item.replace(/^type\s+/, '').split(/\s+as\s+/)[0] as string;
        out.push({ where, spec, name, typeOnly });
      }
    }
    for (const m of text.matchAll(CALL_FROM)) {
      out.push({ where: lineOf(m.index ?? 0), spec: m[2] as string, name: m[1] as string, typeOnly: false });
    }
  }
  return out;
}

test('every import the docs show exists in the built package, at the entry point they name', async () => {
  const program = declarations();
  const imports = docImports();
  assert.ok(imports.length >= 10, `only ${imports.length} imports found in the docs`);
  const wrong: string[] = [];
  for (const d of imports) {
    const entry = entries.find((e) => e.spec === d.spec);
    if (entry === undefined) {
      wrong.push(`${d.where}: \`${d.spec}\` is not an entry point of the package`);
      continue;
    }
    if (d.name === 'default' || d.name === '*') {
      if (d.name === 'default') wrong.push(`${d.where}: \`${d.spec}\` has no default export; import by name`);
      continue;
    }
    if (!declaredExports(program, join(repo, entry.types)).includes(d.name)) {
      wrong.push(`${d.where}: \`${d.spec}\` exports no \`${d.name}\``);
      continue;
    }
    const runtime = (await import(pathToFileURL(join(repo, entry.default)).href)) as Record<string, unknown>;
    if (!d.typeOnly && !(d.name in runtime)) {
      wrong.push(`${d.where}: \`${d.name}\` of \`${d.spec}\` is only a type; import it with \`import type\``);
    }
  }
  assert.deepEqual(wrong, []);
});

test('each entry point exports exactly its curated names, and its declarations match its code', async () => {
  const program = declarations();
  assert.deepEqual(entries.map((e) => e.spec).sort(), Object.keys(SURFACE).sort(), 'entry points');
  for (const e of entries) {
    const declared = declaredExports(program, join(repo, e.types));
    assert.deepEqual(declared, [...(SURFACE[e.spec] ?? [])].sort(), `exports of ${e.spec}`);
    // Every runtime export is declared: nothing reaches users untyped.
    const runtime = Object.keys(await import(pathToFileURL(join(repo, e.default)).href));
    const undeclared = runtime.filter((n) => !declared.includes(n));
    assert.deepEqual(undeclared, [], `${e.spec}: exported at run time but not declared`);
  }
});

test('the packed package holds no test helper or contract suite, and nothing in it imports one', () => {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: repo,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const files = (JSON.parse(out) as { files: { path: string }[] }[])[0]?.files.map((f) => f.path) ?? [];
  assert.ok(files.length > 50, `only ${files.length} files packed`);
  const testOnly = /(^|\/)(testing\/|[^/]*\.test\.|contract\.|[^/]*\.contract\.|testing\.)/;
  assert.deepEqual(
    files.filter((f) => f.startsWith('dist/') && testOnly.test(f)),
    [],
    'test-only files in the package',
  );
  for (const e of entries) {
    for (const f of [e.types, e.default]) assert.ok(files.includes(f.slice(2)), `${f} is not packed`);
  }
  const importsTestOnly: string[] = [];
  for (const f of files.filter((p) => /^dist\/.*\.(js|d\.ts)$/.test(p))) {
    const text = readFileSync(join(repo, f), 'utf8');
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*)['"]([^'"]+)['"]/g)) {
      if (testOnly.test(m[1] as string)) importsTestOnly.push(`${f} imports ${m[1]}`);
    }
  }
  assert.deepEqual(importsTestOnly, []);
});
