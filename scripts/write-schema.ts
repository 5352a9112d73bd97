// Writes the policy JSON Schema for editors: `npm run schema`. A test keeps the file in sync.
import { writeFileSync } from 'node:fs';
import { policySchema } from '../src/policy/schema.js';

writeFileSync(
  new URL('../schema/policy.schema.json', import.meta.url),
  `${JSON.stringify(policySchema, null, 2)}\n`,
);
