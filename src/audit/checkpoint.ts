/**
 * Signed checkpoints {size, root, time}: an Ed25519 signature (node:crypto) over a fixed text form, and the
 * signing key's life cycle (made on first run, kept in a 0600 PEM file beside the database).
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  verify,
} from 'node:crypto';
import {
  closeSync,
  existsSync,
  fchmodSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { messageOf } from '../errors.js';
import { AuditError } from './errors.js';

/** A signed statement that the log's first `size` records have Merkle root `root`. */
export interface Checkpoint {
  size: number;
  /** RFC 6962 MTH of the first `size` record hashes, lowercase hex. */
  root: string;
  /** Milliseconds since the epoch when it was signed. */
  time: number;
  /** First 16 hex digits of SHA-256 over the public key (SPKI DER). */
  keyId: string;
  /** Ed25519 signature over `checkpointMessage(...)`, base64. */
  sig: string;
}

/** The exact bytes a checkpoint signature covers. */
export function checkpointMessage(size: number, root: string, time: number): Buffer {
  return Buffer.from(`execlayer-audit-checkpoint/v1\nsize ${size}\nroot ${root}\ntime ${time}\n`, 'utf8');
}

/** A loaded signing key. */
export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicPem: string;
  keyId: string;
}

/** Key id of a public key: the first 16 hex digits of SHA-256 over its SPKI DER encoding. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
}

/**
 * The fingerprint an auditor pins: `sha256:` and the SHA-256 of the public key's SPKI DER encoding, in hex.
 * (The key id is its first 16 digits: enough to tell keys apart, too short to pin.)
 */
export function keyFingerprint(publicKey: KeyObject): string {
  return `sha256:${createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')}`;
}

/** `sha256:<64 hex>`, as `keyFingerprint` writes it (hex digits in either case are accepted). */
export const FINGERPRINT_PATTERN = /^sha256:[0-9a-fA-F]{64}$/;

/** Sign a checkpoint. */
export function signCheckpoint(key: SigningKey, size: number, root: Buffer, time: number): Checkpoint {
  const rootHex = root.toString('hex');
  const sig = sign(null, checkpointMessage(size, rootHex, time), key.privateKey).toString('base64');
  return { size, root: rootHex, time, keyId: key.keyId, sig };
}

/** Check a checkpoint's signature against a public key. Never throws. */
export function verifyCheckpoint(cp: Checkpoint, publicKey: KeyObject): boolean {
  try {
    return verify(
      null,
      checkpointMessage(cp.size, cp.root, cp.time),
      publicKey,
      Buffer.from(cp.sig, 'base64'),
    );
  } catch {
    return false;
  }
}

/** Parse a PEM public key (SPKI) and check that it is Ed25519. */
export function parsePublicKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (e) {
    throw new AuditError('audit_key_error', `not a pem public key: ${messageOf(e)}`, { cause: e });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new AuditError(
      'audit_key_error',
      `public key is \`${key.asymmetricKeyType}\`, expected \`ed25519\``,
    );
  }
  return key;
}

function fromPrivatePem(pem: string, path: string): SigningKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (e) {
    throw new AuditError('audit_key_error', `signing key \`${path}\` is not a pem private key`, { cause: e });
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new AuditError('audit_key_error', `signing key \`${path}\` is not an ed25519 key`);
  }
  const publicKey = createPublicKey(privateKey);
  return {
    privateKey,
    publicKey,
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

/**
 * Load the Ed25519 signing key at `path`, creating it (mode 0600, exclusive create so two processes starting
 * together end up with the same key) when it does not exist. Refuses a key file other users can read.
 */
export function loadOrCreateSigningKey(path: string): SigningKey {
  if (!existsSync(path)) {
    // Written whole to a private temp file, then linked into place: a process that starts at the same time
    // either wins the link or reads the complete key of the process that did, never a half-written file.
    const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      const { privateKey } = generateKeyPairSync('ed25519');
      const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      const fd = openSync(tmp, 'wx', 0o600);
      try {
        // The mode given to open() passes through the umask; set it outright.
        fchmodSync(fd, 0o600);
        writeFileSync(fd, pem);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      linkSync(tmp, path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new AuditError('audit_key_error', `cannot create signing key \`${path}\`: ${messageOf(e)}`, {
          cause: e,
        });
      }
    } finally {
      rmSync(tmp, { force: true });
    }
  }
  let pem: string;
  try {
    const st = statSync(path);
    if ((st.mode & 0o077) !== 0) {
      throw new AuditError(
        'audit_key_error',
        `signing key \`${path}\` is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run \`chmod 600 ${path}\``,
      );
    }
    pem = readFileSync(path, 'utf8');
  } catch (e) {
    if (e instanceof AuditError) throw e;
    throw new AuditError('audit_key_error', `cannot read signing key \`${path}\`: ${messageOf(e)}`, {
      cause: e,
    });
  }
  return fromPrivatePem(pem, path);
}

/** Read an existing signing key without creating one. */
export function readSigningKey(path: string): SigningKey {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (e) {
    throw new AuditError('audit_key_error', `cannot read signing key \`${path}\`: ${messageOf(e)}`, {
      cause: e,
    });
  }
  return fromPrivatePem(pem, path);
}
