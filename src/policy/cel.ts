/**
 * CEL conditions: parsed and statically checked at load, planned once, evaluated per decision.
 * The checks here stand in for a full type checker: unknown variables and functions, operands of
 * incompatible types, a non-boolean result, and size/depth limits are load errors.
 */
import { CelScalar, celEnv, isCelError, mapType, parse, plan } from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';
import { messageOf } from '../errors.js';

/** Variables a condition may read. */
const CEL_VARIABLES = {
  args: mapType(CelScalar.STRING, CelScalar.DYN),
  facts: mapType(CelScalar.STRING, CelScalar.DYN),
  agent: mapType(CelScalar.STRING, CelScalar.DYN),
  context: mapType(CelScalar.STRING, CelScalar.DYN),
  tool: CelScalar.STRING,
  session: CelScalar.STRING,
  principal: CelScalar.STRING,
  now: CelScalar.INT,
} as const;

const env = celEnv({ variables: CEL_VARIABLES, funcs: strings });

const MAX_NODES = 512;
const MAX_DEPTH = 32;

/** Inputs bound to a condition. `now` is milliseconds since the epoch. */
export interface CelInputs {
  /** JSON objects as Maps (see the engine's conversion). */
  args: unknown;
  facts: unknown;
  agent: unknown;
  context: unknown;
  tool: string;
  session: string;
  principal: string;
  now: bigint;
}

export type CelProgram = (inputs: CelInputs) => { ok: true; value: boolean } | { ok: false; error: string };

export interface CelCompiled {
  program: CelProgram;
  /** Top-level argument names the expression reads (`args.amount` → `amount`). */
  argsRead: string[];
}

export interface CelProblem {
  code: 'cel_syntax' | 'cel_type' | 'cel_unknown' | 'cel_too_complex';
  message: string;
  /** Offset into the expression text. */
  offset: number;
}

type T = 'bool' | 'int' | 'uint' | 'double' | 'string' | 'bytes' | 'null' | 'list' | 'map' | 'dyn';

const COMPARISON = new Set(['_<_', '_<=_', '_>_', '_>=_']);
const ARITHMETIC = new Set(['_+_', '_-_', '_*_', '_/_', '_%_']);
const BOOL_FUNCS = new Set(['startsWith', 'endsWith', 'contains', 'matches', '@in', '_==_', '_!=_']);
const NUMERIC = new Set<T>(['int', 'uint', 'double']);

// Minimal structural view of the parsed AST (the protobuf types are generated; we read only these fields).
interface ExprNode {
  id: bigint;
  exprKind:
    | { case: 'constExpr'; value: { constantKind: { case: string | undefined; value?: unknown } } }
    | { case: 'identExpr'; value: { name: string } }
    | { case: 'selectExpr'; value: { operand?: ExprNode; field: string; testOnly: boolean } }
    | { case: 'callExpr'; value: { target?: ExprNode; function: string; args: ExprNode[] } }
    | { case: 'listExpr'; value: { elements: ExprNode[] } }
    | {
        case: 'structExpr';
        value: {
          messageName: string;
          entries: { value?: ExprNode; keyKind: { case: string; value?: unknown } }[];
        };
      }
    | {
        case: 'comprehensionExpr';
        value: {
          iterVar: string;
          iterVar2?: string;
          accuVar: string;
          iterRange?: ExprNode;
          accuInit?: ExprNode;
          loopCondition?: ExprNode;
          loopStep?: ExprNode;
          result?: ExprNode;
        };
      }
    | { case: undefined; value?: undefined };
}

/** Compiles a CEL condition; returns problems instead of throwing. */
export function compileCel(
  text: string,
): { ok: true; value: CelCompiled } | { ok: false; problems: CelProblem[] } {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(text);
  } catch (e) {
    const msg = messageOf(e);
    const m = /<input>:(\d+):(\d+): (.*)/.exec(msg);
    const offset = m ? lineColToOffset(text, Number(m[1]), Number(m[2])) : 0;
    return {
      ok: false,
      problems: [{ code: 'cel_syntax', message: (m?.[3] ?? msg).split('\n')[0] as string, offset }],
    };
  }
  const positions = parsed.sourceInfo?.positions ?? {};
  const offsetOf = (node: ExprNode) => Number((positions as Record<string, number>)[String(node.id)] ?? 0);
  const problems: CelProblem[] = [];
  const argsRead = new Set<string>();
  let nodes = 0;

  const infer = (node: ExprNode | undefined, depth: number, scope: ReadonlySet<string>): T => {
    if (!node) return 'dyn';
    if (++nodes > MAX_NODES || depth > MAX_DEPTH) {
      if (!problems.some((p) => p.code === 'cel_too_complex')) {
        problems.push({
          code: 'cel_too_complex',
          message: `expression exceeds ${MAX_NODES} nodes or depth ${MAX_DEPTH}`,
          offset: 0,
        });
      }
      return 'dyn';
    }
    const k = node.exprKind;
    switch (k.case) {
      case 'constExpr': {
        const c = k.value.constantKind.case;
        if (c === 'boolValue') return 'bool';
        if (c === 'int64Value') return 'int';
        if (c === 'uint64Value') return 'uint';
        if (c === 'doubleValue') return 'double';
        if (c === 'stringValue') return 'string';
        if (c === 'bytesValue') return 'bytes';
        if (c === 'nullValue') return 'null';
        return 'dyn';
      }
      case 'identExpr': {
        const name = k.value.name;
        if (!scope.has(name) && !(name in CEL_VARIABLES)) {
          problems.push({
            code: 'cel_unknown',
            message: `unknown variable \`${name}\`; available: ${Object.keys(CEL_VARIABLES).join(', ')}`,
            offset: offsetOf(node),
          });
          return 'dyn';
        }
        const decl = (CEL_VARIABLES as Record<string, unknown>)[name];
        if (decl === CelScalar.STRING) return 'string';
        if (decl === CelScalar.INT) return 'int';
        return scope.has(name) ? 'dyn' : 'map';
      }
      case 'selectExpr': {
        const operand = k.value.operand;
        if (
          operand?.exprKind.case === 'identExpr' &&
          operand.exprKind.value.name === 'args' &&
          !scope.has('args')
        ) {
          argsRead.add(k.value.field);
        }
        const t = infer(operand, depth + 1, scope);
        if (t !== 'dyn' && t !== 'map') {
          problems.push({
            code: 'cel_type',
            message: `cannot select field \`${k.value.field}\` from a ${t}`,
            offset: offsetOf(node),
          });
        }
        return k.value.testOnly ? 'bool' : 'dyn';
      }
      case 'callExpr': {
        const fn = k.value.function;
        const target = k.value.target ? infer(k.value.target, depth + 1, scope) : undefined;
        const args = k.value.args.map((a) => infer(a, depth + 1, scope));
        if (!fn.startsWith('_') && !fn.startsWith('@') && fn !== '!_' && !env.funcs.find(fn)) {
          problems.push({
            code: 'cel_unknown',
            message: `unknown function \`${fn}\``,
            offset: offsetOf(node),
          });
          return 'dyn';
        }
        const [a, b] = args;
        if (fn === '_&&_' || fn === '_||_' || fn === '!_') {
          for (const t of args) {
            if (t !== 'bool' && t !== 'dyn') {
              problems.push({
                code: 'cel_type',
                message: `operator \`${op(fn)}\` needs booleans, got ${t}`,
                offset: offsetOf(node),
              });
            }
          }
          return 'bool';
        }
        if (COMPARISON.has(fn) && a && b && a !== 'dyn' && b !== 'dyn') {
          if (!(NUMERIC.has(a) && NUMERIC.has(b)) && a !== b) {
            problems.push({
              code: 'cel_type',
              message: `cannot compare ${a} with ${b} using \`${op(fn)}\``,
              offset: offsetOf(node),
            });
          }
          return 'bool';
        }
        if (ARITHMETIC.has(fn) && a && b) {
          if (a !== 'dyn' && b !== 'dyn' && a !== b) {
            problems.push({
              code: 'cel_type',
              message: `no \`${op(fn)}\` for ${a} and ${b} (CEL does not convert numbers implicitly; JSON numbers are doubles: write 1.0)`,
              offset: offsetOf(node),
            });
          }
          return a === 'dyn' ? (b ?? 'dyn') : a;
        }
        if (COMPARISON.has(fn) || BOOL_FUNCS.has(fn)) return 'bool';
        if (fn === 'size' || fn === 'int') return 'int';
        if (fn === 'double') return 'double';
        if (fn === 'string') return 'string';
        void target;
        return 'dyn';
      }
      case 'listExpr':
        for (const e of k.value.elements) infer(e, depth + 1, scope);
        return 'list';
      case 'structExpr':
        for (const e of k.value.entries) infer(e.value, depth + 1, scope);
        return 'map';
      case 'comprehensionExpr': {
        const v = k.value;
        infer(v.iterRange, depth + 1, scope);
        const inner = new Set(scope);
        inner.add(v.iterVar);
        if (v.iterVar2) inner.add(v.iterVar2);
        inner.add(v.accuVar);
        infer(v.accuInit, depth + 1, inner);
        infer(v.loopCondition, depth + 1, inner);
        infer(v.loopStep, depth + 1, inner);
        return infer(v.result, depth + 1, inner);
      }
      default:
        return 'dyn';
    }
  };

  const root = parsed.expr as unknown as ExprNode;
  const t = infer(root, 0, new Set());
  if (t !== 'bool' && t !== 'dyn') {
    problems.push({
      code: 'cel_type',
      message: `condition must be a boolean, but this expression is a ${t}`,
      offset: 0,
    });
  }
  if (problems.length > 0) return { ok: false, problems };

  const planned = plan(env, parsed);
  const program: CelProgram = (inputs) => {
    try {
      const r = planned(inputs as never);
      if (isCelError(r)) return { ok: false, error: r.message };
      if (typeof r !== 'boolean') return { ok: false, error: 'condition did not evaluate to a boolean' };
      return { ok: true, value: r };
    } catch (e) {
      // INVARIANT: fail closed — an evaluator exception is an evaluation error, never a pass.
      return { ok: false, error: messageOf(e) };
    }
  };
  return { ok: true, value: { program, argsRead: [...argsRead] } };
}

function op(fn: string): string {
  return fn.replace(/_/g, '') || fn;
}

function lineColToOffset(text: string, line: number, col: number): number {
  let offset = 0;
  for (let l = 1; l < line; l++) {
    const nl = text.indexOf('\n', offset);
    if (nl < 0) break;
    offset = nl + 1;
  }
  return Math.min(text.length, offset + Math.max(0, col));
}
