// Writes the policy and declaration JSON Schemas for editors: `npm run schema`. Tests keep the files in sync.
import { writeFileSync } from 'node:fs';
import { declarationSchema } from '../src/governance/declaration.js';
import { policySchema } from '../src/policy/schema.js';

writeFileSync(
  new URL('../schema/policy.schema.json', import.meta.url),
  `${JSON.stringify(policySchema, null, 2)}\n`,
);
writeFileSync(
  new URL('../schema/declaration.schema.json', import.meta.url),
  `${JSON.stringify(declarationSchema, null, 2)}\n`,
);
