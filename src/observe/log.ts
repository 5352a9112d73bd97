/**
 * Structured logs: one JSON object per line (`time`, `level`, `msg`, then fields), or the plain
 * `execlayer: <msg>` lines of the CLI. Decision lines (`--log-decisions`) carry what an operator filters
 * on — agent, tool, effect, rule, code, reason, policy, latency — and never the arguments: those stay in the
 * audit trail, redacted as the policy says.
 */
import type { DecisionEvent } from '../types.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** A logger writing whole lines to `write`. */
export interface Logger {
  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void;
  /** The decision line of `--log-decisions`. */
  decision(e: DecisionEvent, at: number): void;
}

/** A logger: `json` for one JSON object per line, otherwise `execlayer: <msg>` with the fields appended. */
export function createLogger(opts: { json: boolean; write: (line: string) => void }): Logger {
  const { json, write } = opts;
  const log = (level: LogLevel, msg: string, fields: Record<string, unknown> = {}, at = Date.now()) => {
    if (json) {
      write(`${JSON.stringify({ time: new Date(at).toISOString(), level, msg, ...fields })}\n`);
      return;
    }
    const extra = Object.entries(fields)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    write(`execlayer: ${level === 'info' ? '' : `${level}: `}${msg}${extra ? ` ${extra}` : ''}\n`);
  };
  return {
    log,
    decision(e, at) {
      const d = e.decision;
      log(
        d.effect === 'deny' ? 'warn' : 'info',
        'decision',
        {
          id: d.id,
          agent: e.action.agent,
          tool: e.action.tool,
          effect: d.effect,
          ...(d.wouldBe !== undefined ? { wouldBe: d.wouldBe } : {}),
          rule: d.rule,
          code: d.code,
          reason: d.reason,
          policy: d.policy,
          mode: d.mode,
          point: e.point,
          ...(e.action.session !== undefined ? { session: e.action.session } : {}),
          ...(d.approvalId !== undefined ? { approvalId: d.approvalId } : {}),
          argsDigest: e.action.argsDigest,
          latencyUs: e.latencyUs,
        },
        at,
      );
    },
  };
}
