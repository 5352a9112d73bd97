// Writes the JSON Schemas for editors: `npm run schema`. Tests keep the files in sync with the code.
import { writeFileSync } from 'node:fs';
import { CONFIG_SCHEMA } from '../src/config/schema.js';
import { declarationSchema } from '../src/governance/declaration.js';
import { governanceExportSchema } from '../src/governance/export.js';
import { policySchema } from '../src/policy/schema.js';

for (const [file, schema] of [
  ['policy.schema.json', policySchema],
  ['execlayer-config.schema.json', CONFIG_SCHEMA],
  ['declaration.schema.json', declarationSchema],
  ['governance-export.schema.json', governanceExportSchema],
] as const) {
  writeFileSync(
    new URL(`../schema/${file}`, import.meta.url),
    `${JSON.stringify(schema, null, 2)}
`,
  );
}
