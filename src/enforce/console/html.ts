/**
 * Server-side HTML with escaping by default: every interpolated value is text unless it is an `Html`
 * made by this module. Values from agents and tools (arguments, reasons, tool definitions) can therefore
 * only ever appear as text — a tool argument holding `<script>` shows as `<script>`.
 */

/** Markup that is already safe (built by `html` or `join`). */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** Escapes text for element content and quoted attribute values. */
export function escapeHtml(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

type Part = Html | string | number | boolean | null | undefined | readonly Part[];

function render(v: Part): string {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return v.map(render).join('');
  return escapeHtml(String(v));
}

/** Template tag: literal parts are markup, interpolations are escaped (arrays are concatenated). */
export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? '');
  return new Html(out);
}

/** JSON for display inside `<pre>`: pretty-printed, then escaped by `html`. */
export function pretty(value: unknown): string {
  try {
    return JSON.stringify(value, null, 2) ?? 'undefined';
  } catch {
    return '[not displayable]';
  }
}
