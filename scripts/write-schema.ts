// Writes the policy, declaration and governance-export JSON Schemas for editors: `npm run schema`. Tests keep the files in sync.
import { writeFileSync } from 'node:fs';
import { declarationSchema } from '../src/governance/declaration.js';
import { governanceExportSchema } from '../src/governance/export.js';
import { policySchema } from '../src/policy/schema.js';

writeFileSync(
  new URL('../schema/policy.schema.json', import.meta.url),
  `${JSON.stringify(policySchema, null, 2)}\n`,
);
writeFileSync(
  new URL('../schema/declaration.schema.json', import.meta.url),
  `${JSON.stringify(declarationSchema, null, 2)}\n`,
);
writeFileSync(
  new URL('../schema/governance-export.schema.json', import.meta.url),
  `${JSON.stringify(governanceExportSchema, null, 2)}\n`,
);
