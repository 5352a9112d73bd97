/**
 * Operator API: decide approvals and operate the stop switch over authenticated HTTP. See docs/http-api.md.
 */
export {
  type AdminApiOptions,
  type AdminRole,
  createAdminApiHandler,
  DEFAULT_ADMIN_MAX_BODY_BYTES,
} from './handler.js';
