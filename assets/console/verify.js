// Checks a decision's audit inclusion proof in the page, with WebCrypto only: the record hashes to its
// hash (format v1, src/audit/record.ts), its RFC 6962 leaf is on the audit path to the checkpoint root
// (src/audit/merkle.ts), and the checkpoint is signed (Ed25519) by the log's key. The result is written
// as text; nothing from the proof is ever parsed as markup.
(() => {
  const section = document.getElementById('proof');
  const status = document.getElementById('proof-status');
  if (!section || !status) return;
  const say = (text, ok) => {
    status.textContent = text;
    status.className = ok === true ? 'ok' : ok === false ? 'error' : '';
  };

  // Canonical JSON: keys sorted by UTF-16 code units, no whitespace, JSON.stringify strings and numbers.
  const canonical = (v) => {
    if (v === null || typeof v === 'boolean') return String(v);
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new Error('non-finite number');
      return `${v}`;
    }
    if (typeof v === 'string') return JSON.stringify(v);
    if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : canonical(x))).join(',')}]`;
    if (typeof v === 'object') {
      const keys = Object.keys(v).sort();
      const parts = [];
      for (const k of keys) if (v[k] !== undefined) parts.push(`${JSON.stringify(k)}:${canonical(v[k])}`);
      return `{${parts.join(',')}}`;
    }
    throw new Error(`${typeof v} has no json form`);
  };

  const hex = (bytes) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join('');
  const unhex = (s) => {
    if (!/^[0-9a-f]{64}$/.test(s)) throw new Error('not a 32-byte hex hash');
    const out = new Uint8Array(32);
    for (let i = 0; i < 32; i++) out[i] = Number.parseInt(s.slice(2 * i, 2 * i + 2), 16);
    return out;
  };
  const sha256 = async (...parts) => {
    let n = 0;
    for (const p of parts) n += p.length;
    const buf = new Uint8Array(n);
    let at = 0;
    for (const p of parts) {
      buf.set(p, at);
      at += p.length;
    }
    return new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
  };
  const u64 = (n) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(n));
    return b;
  };
  const leafHash = (h) => sha256(Uint8Array.of(0), h);
  const nodeHash = (l, r) => sha256(Uint8Array.of(1), l, r);

  // RFC 9162 §2.1.3.2, as verifyInclusion in src/audit/merkle.ts.
  const verifyInclusion = async (index, size, leaf, path, root) => {
    if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size) && index >= 0 && index < size))
      return false;
    let fn = index;
    let sn = size - 1;
    let r = leaf;
    for (const p of path) {
      if (sn === 0) return false;
      if (fn % 2 === 1 || fn === sn) {
        r = await nodeHash(p, r);
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) {
            fn = Math.floor(fn / 2);
            sn = Math.floor(sn / 2);
          }
        }
      } else {
        r = await nodeHash(r, p);
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    return sn === 0 && hex(r) === hex(root);
  };

  const spki = (pem) => {
    const b64 = pem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, '').replace(/\s+/g, '');
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  };

  const check = async () => {
    const seq = section.dataset.seq;
    const res = await fetch(`/console/api/proof/${encodeURIComponent(seq)}`, { credentials: 'same-origin' });
    const body = await res.json();
    if (!res.ok) return say(`No proof yet: ${body.reason ?? body.error}`, false);
    const { proof, publicKeyPem } = body;
    const r = proof.record;
    const cp = proof.checkpoint;
    if (proof.v !== 1 || r.v !== 1) return say('Unknown proof or record format version.', false);
    // The proof must be about the record this page shows.
    if (r.hash !== section.dataset.hash || r.event?.decision?.id !== section.dataset.decision) {
      return say('The proof is about another record than the one shown.', false);
    }
    const eventBytes = new TextEncoder().encode(canonical(r.event));
    const hash = await sha256(Uint8Array.of(r.v), unhex(r.prevHash), u64(r.seq), u64(r.time), eventBytes);
    if (hex(hash) !== r.hash)
      return say(`Record ${r.seq} does not hash to its hash: its content was changed.`, false);
    const leaf = await leafHash(hash);
    const path = proof.path.map(unhex);
    if (!(await verifyInclusion(r.seq, cp.size, leaf, path, unhex(cp.root)))) {
      return say(`The audit path does not lead from record ${r.seq} to the checkpoint root.`, false);
    }
    let signed;
    try {
      const key = await crypto.subtle.importKey('spki', spki(publicKeyPem), { name: 'Ed25519' }, false, [
        'verify',
      ]);
      const msg = new TextEncoder().encode(
        `execlayer-audit-checkpoint/v1\nsize ${cp.size}\nroot ${cp.root}\ntime ${cp.time}\n`,
      );
      const sig = Uint8Array.from(atob(cp.sig), (c) => c.charCodeAt(0));
      signed = await crypto.subtle.verify({ name: 'Ed25519' }, key, sig, msg);
    } catch {
      return say(
        `Record ${r.seq} is in the tree of checkpoint size ${cp.size}; this browser cannot check Ed25519 signatures.`,
        undefined,
      );
    }
    if (!signed) return say('The checkpoint is not signed by the log key.', false);
    say(
      `Verified in this page: record ${r.seq} is included in checkpoint size ${cp.size} (root ${cp.root.slice(0, 16)}…), signed by key ${cp.keyId}.`,
      true,
    );
  };
  check().catch((e) => say(`The proof could not be checked: ${e.message}`, false));
})();
