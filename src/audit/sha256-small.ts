/**
 * SHA-256 of the two fixed-size inputs the Merkle tree hashes: a leaf `0x00 || h` (one 64-byte block) and a
 * node `0x01 || l || r` (two blocks), for 32-byte `h`, `l`, `r`. For inputs this small a call into
 * `node:crypto` costs more than the compression itself (argument checks, algorithm lookup, a native
 * transition); this plain FIPS 180-4 implementation does the same work in about half the time for a leaf.
 * Tested against `node:crypto` (merkle.test.ts).
 */

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);
const IV = new Int32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);
const W = new Int32Array(64);
const S = new Int32Array(8);

/** One compression of the block in W[0..15] into S. */
function compress(): void {
  for (let i = 16; i < 64; i++) {
    const w15 = W[i - 15]!;
    const w2 = W[i - 2]!;
    const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
    const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
    W[i] = (W[i - 16]! + s0 + W[i - 7]! + s1) | 0;
  }
  let a = S[0]!;
  let b = S[1]!;
  let c = S[2]!;
  let d = S[3]!;
  let e = S[4]!;
  let f = S[5]!;
  let g = S[6]!;
  let h = S[7]!;
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[i]! + W[i]!) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  S[0] = (S[0]! + a) | 0;
  S[1] = (S[1]! + b) | 0;
  S[2] = (S[2]! + c) | 0;
  S[3] = (S[3]! + d) | 0;
  S[4] = (S[4]! + e) | 0;
  S[5] = (S[5]! + f) | 0;
  S[6] = (S[6]! + g) | 0;
  S[7] = (S[7]! + h) | 0;
}

function digest(): Buffer {
  const out = Buffer.allocUnsafe(32);
  for (let i = 0; i < 8; i++) {
    const x = S[i]!;
    const j = i * 4;
    out[j] = x >>> 24;
    out[j + 1] = x >>> 16;
    out[j + 2] = x >>> 8;
    out[j + 3] = x;
  }
  return out;
}

/**
 * Fill W[first+1 .. first+7] from a 32-byte `d` that follows one byte (the prefix, or the last byte of the
 * previous 32): word i holds d[4i-1 .. 4i+2], big-endian.
 */
function words(d: Uint8Array, first: number): void {
  for (let i = 1; i < 8; i++) {
    const j = 4 * i - 1;
    W[first + i] = (d[j]! << 24) | (d[j + 1]! << 16) | (d[j + 2]! << 8) | d[j + 3]!;
  }
}

/** SHA-256(0x00 || data) for a 32-byte `data`. */
export function sha256Leaf(data: Uint8Array): Buffer {
  W[0] = (data[0]! << 16) | (data[1]! << 8) | data[2]!;
  words(data, 0);
  // Byte 32 is data[31], then the 0x80 terminator; the message is 33 bytes = 264 bits.
  W[8] = (data[31]! << 24) | 0x800000;
  W[9] = 0;
  W[10] = 0;
  W[11] = 0;
  W[12] = 0;
  W[13] = 0;
  W[14] = 0;
  W[15] = 264;
  S.set(IV);
  compress();
  return digest();
}

/** SHA-256(0x01 || left || right) for 32-byte `left` and `right`. */
export function sha256Node(left: Uint8Array, right: Uint8Array): Buffer {
  W[0] = 0x1000000 | (left[0]! << 16) | (left[1]! << 8) | left[2]!;
  words(left, 0);
  W[8] = (left[31]! << 24) | (right[0]! << 16) | (right[1]! << 8) | right[2]!;
  words(right, 8);
  S.set(IV);
  compress();
  // Second block: right[31], the terminator, zeros, and the length (65 bytes = 520 bits).
  W[0] = (right[31]! << 24) | 0x800000;
  for (let i = 1; i < 15; i++) W[i] = 0;
  W[15] = 520;
  compress();
  return digest();
}
