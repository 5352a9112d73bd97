/** Self-contained HTML pages (inline style, no scripts, no network): escaping and the common frame. */

/** Escapes text for HTML element content and attribute values. */
export function esc(s: string | number): string {
  return String(s)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const STYLE = `body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1f24;max-width:1200px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}th{background:#f6f8fa}
code{font-family:ui-monospace,monospace;font-size:.92em}.figures{display:flex;gap:1rem;flex-wrap:wrap}
.figure{border:1px solid #d0d7de;border-radius:6px;padding:.5rem 1rem;min-width:9rem}.figure b{display:block;font-size:1.6rem}
.s-aligned,.s-evidence_observed{color:#1a7f37}.s-over_permitted,.s-undeclared_attempt,.s-gap{color:#cf222e}
.s-unused_permission,.s-partial,.s-declared_not_permitted{color:#9a6700}.s-unverifiable,.s-not_assessed,.s-not_applicable{color:#57606a}
.muted{color:#57606a}`;

/** A whole page. `body` is trusted HTML built with `esc`. */
export function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${esc(title)}</title><style>${STYLE}</style></head>
<body>
${body}
</body></html>
`;
}

/** An ISO 8601 time (UTC) for a ms timestamp. */
export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
