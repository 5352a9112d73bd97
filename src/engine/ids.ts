/**
 * Decision ids: UUID-shaped (version 4 layout), unique across processes and cheap to make. The first
 * 74 bits are random per process; the last 48 count decisions. `randomUUID()` per decision costs more
 * than the rest of an allow decision.
 */
import { randomBytes } from 'node:crypto';

let head = '';
let counter = 0;

function reseed(): void {
  const r = randomBytes(10).toString('hex');
  const variant = ((Number.parseInt(r[16] as string, 16) & 0x3) | 0x8).toString(16);
  head = `${r.slice(0, 8)}-${r.slice(8, 12)}-4${r.slice(13, 16)}-${variant}${r.slice(17, 20)}-`;
  counter = 0;
}
reseed();

/** The next decision id. */
export function nextDecisionId(): string {
  if (++counter > 0xffffffffffff) {
    reseed();
    counter = 1;
  }
  return head + counter.toString(16).padStart(12, '0');
}
