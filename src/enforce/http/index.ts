/**
 * HTTP decision API: OpenID AuthZEN 1.0 plus the native `/v1/decide` endpoints. See docs/http-api.md.
 */
export {
  type Authenticate,
  type AuthResult,
  createDecisionApiHandler,
  createDecisionApiServer,
  DEFAULT_MAX_BATCH,
  DEFAULT_MAX_BODY_BYTES,
  type DecisionApiOptions,
  type DecisionLayer,
  writeProblem,
} from './handler.js';
export type { Problem, ProblemCode } from './problem.js';
