/**
 * Helpers for errors of any layer. Imports nothing, so policy, engine, stores, transports and the CLI may
 * all use it.
 */

/** The message of any thrown value: an `Error`'s own message, anything else as a string. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
