/**
 * `execlayer/http`: the HTTP decision API (OpenID AuthZEN 1.0 plus the native `/v1/decide` endpoints) and
 * the operator API (approvals, stop switch) as `(req, res) => Promise<boolean>` handlers, and the wire
 * types of their answers. See docs/http-api.md.
 */

export type { ApiKeyConfig, AuthConfig, CredentialRole, JwtConfig } from '../../config/load.js';
export {
  type AdminApiOptions,
  type AdminRole,
  createAdminApiHandler,
  DEFAULT_ADMIN_MAX_BODY_BYTES,
} from '../admin/index.js';
export {
  type Authenticator,
  type AuthenticatorOptions,
  createAuthenticator,
  hashApiKey,
  newApiKey,
} from '../auth.js';
export type { DecideBatchResponse, DecideResponse, OutcomeResponse } from './decide-response.js';
export {
  type Authenticate,
  type AuthResult,
  createDecisionApiHandler,
  createDecisionApiServer,
  DEFAULT_MAX_BATCH,
  DEFAULT_MAX_BODY_BYTES,
  type DecisionApiOptions,
  type DecisionLayer,
} from './handler.js';
export type { Problem, ProblemCode } from './problem.js';
