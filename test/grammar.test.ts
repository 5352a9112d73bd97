// The bash grammar ships with the package (grammars/), so installing ExecLayer builds nothing native for
// it. The copy must be the grammar of the tree-sitter-bash version the project pins.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';

test('grammars/tree-sitter-bash.wasm is the pinned tree-sitter-bash grammar, byte for byte', () => {
  const pinned = readFileSync(
    createRequire(import.meta.url).resolve('tree-sitter-bash/tree-sitter-bash.wasm'),
  );
  const shipped = readFileSync(new URL('../grammars/tree-sitter-bash.wasm', import.meta.url));
  assert.ok(shipped.equals(pinned), 'run: cp node_modules/tree-sitter-bash/tree-sitter-bash.wasm grammars/');
});
