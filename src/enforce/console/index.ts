/** The operator console (`/console`), mounted by `execlayer serve`. */
export { CONTENT_SECURITY_POLICY, type Console, type ConsoleOptions, createConsole } from './handler.js';
export { type TwoPersonStore, twoPersonApprovals } from './two-person.js';
