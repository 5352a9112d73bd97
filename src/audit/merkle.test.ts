import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  consistencyProof,
  EMPTY_ROOT,
  Frontier,
  inclusionPath,
  leafHash,
  nodeHash,
  rootOf,
  subtreesOf,
  verifyConsistency,
  verifyInclusion,
} from './merkle.js';

// Test vectors of the certificate-transparency reference implementation (RFC 6962 leaf inputs).
const INPUTS = [
  '',
  '00',
  '10',
  '2021',
  '3031',
  '40414243',
  '5051525354555657',
  '606162636465666768696a6b6c6d6e6f',
].map((h) => Buffer.from(h, 'hex'));
const ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];

test('roots match the RFC 6962 reference vectors for sizes 1..8, by recursion and by frontier', () => {
  const leaves = INPUTS.map(leafHash);
  const f = Frontier.empty();
  for (let n = 1; n <= 8; n++) {
    assert.equal(rootOf(leaves, 0, n).toString('hex'), ROOTS[n - 1], `MTH of ${n}`);
    f.append(leaves[n - 1]!);
    assert.equal(f.root().toString('hex'), ROOTS[n - 1], `frontier root of ${n}`);
  }
  assert.equal(rootOf([]).toString('hex'), createHash('sha256').digest('hex'));
  assert.equal(Frontier.empty().root(), EMPTY_ROOT);
});

test('leaf and node hashes use the 0x00 / 0x01 domain prefixes', () => {
  const a = Buffer.alloc(32, 1);
  const b = Buffer.alloc(32, 2);
  assert.deepEqual(
    leafHash(a),
    createHash('sha256')
      .update(Buffer.from([0]))
      .update(a)
      .digest(),
  );
  assert.deepEqual(
    nodeHash(a, b),
    createHash('sha256')
      .update(Buffer.from([1]))
      .update(a)
      .update(b)
      .digest(),
  );
});

const leavesArb = fc
  .integer({ min: 1, max: 70 })
  .map((n) => Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`leaf-${n}-${i}`))));

test('every inclusion path verifies, and fails for another leaf, index, path or root (property)', () => {
  fc.assert(
    fc.property(leavesArb, fc.nat(), (leaves, pick) => {
      const n = leaves.length;
      const i = pick % n;
      const root = rootOf(leaves);
      const path = inclusionPath(i, n, subtreesOf(leaves));
      assert.ok(verifyInclusion(i, n, leaves[i]!, path, root));
      assert.ok(!verifyInclusion(i, n, leafHash(Buffer.from('other')), path, root));
      assert.ok(!verifyInclusion(i, n, leaves[i]!, path, leafHash(Buffer.from('root'))));
      if (n > 1) assert.ok(!verifyInclusion((i + 1) % n, n, leaves[i]!, path, root));
      if (path.length > 0) assert.ok(!verifyInclusion(i, n, leaves[i]!, path.slice(0, -1), root));
    }),
  );
});

test('consistency proofs verify for every m <= n and fail for a forged old root (property)', () => {
  fc.assert(
    fc.property(leavesArb, fc.nat(), (leaves, pick) => {
      const n = leaves.length;
      const m = pick % (n + 1);
      const proof = consistencyProof(m, n, subtreesOf(leaves));
      const r1 = rootOf(leaves, 0, m);
      const r2 = rootOf(leaves);
      assert.ok(verifyConsistency(m, n, r1, r2, proof), `m=${m} n=${n}`);
      if (m > 0 && m < n) {
        assert.ok(!verifyConsistency(m, n, leafHash(Buffer.from('x')), r2, proof));
        assert.ok(!verifyConsistency(m, n, r1, leafHash(Buffer.from('y')), proof));
        assert.ok(!verifyConsistency(m, n, r1, r2, proof.slice(1)));
      }
    }),
  );
});

test('a consistency proof only needs the old frontier and the new leaves (property)', () => {
  fc.assert(
    fc.property(leavesArb, fc.nat(), (leaves, pick) => {
      const n = leaves.length;
      const m = 1 + (pick % n);
      const f = Frontier.empty();
      for (const l of leaves.slice(0, m)) f.append(l);
      const known = new Map(f.subtrees().map(([s, e, h]) => [`${s}:${e}`, h]));
      const fromFrontier = consistencyProof(m, n, (s, e) => {
        if (s >= m) return rootOf(leaves, s, e);
        const h = known.get(`${s}:${e}`);
        assert.ok(h, `subtree ${s}..${e} requested below ${m}`);
        return h;
      });
      assert.deepEqual(fromFrontier, consistencyProof(m, n, subtreesOf(leaves)));
    }),
  );
});

test('a frontier survives serialisation and refuses a wrong length', () => {
  const f = Frontier.empty();
  for (let i = 0; i < 13; i++) f.append(leafHash(Buffer.from([i])));
  const g = Frontier.from(13, f.serialize());
  assert.deepEqual(g.root(), f.root());
  g.append(leafHash(Buffer.from([13])));
  f.append(leafHash(Buffer.from([13])));
  assert.deepEqual(g.root(), f.root());
  assert.throws(() => Frontier.from(12, f.serialize()), RangeError);
});
