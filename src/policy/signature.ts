/**
 * Detached Ed25519 signatures over a policy's hash (the hash decisions and audit records carry), so a
 * deployment can refuse a policy nobody with the signing key approved (policy supply chain).
 *
 * The signature file `<policy>.sig` is JSON: `{ "version": 1, "algorithm": "ed25519", "policy": <hash>,
 * "signature": <base64> }`. The signed bytes are `execlayer-policy-signature/v1\npolicy <hash>\n`: the
 * prefix keeps a policy signature from ever being taken for another kind of signature made with the key.
 */
import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import type { Problem } from './problems.js';

/** The JSON form of `<policy>.sig`. */
export interface PolicySignature {
  version: 1;
  algorithm: 'ed25519';
  /** The policy hash signed. */
  policy: string;
  /** Base64 Ed25519 signature over `policySignatureMessage(policy)`. */
  signature: string;
}

/** Why a key could not be used; `message` says which and why. */
export class PolicyKeyError extends Error {
  readonly code = 'policy_key_error';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PolicyKeyError';
  }
}

/** The exact bytes a policy signature covers. */
export function policySignatureMessage(hash: string): Buffer {
  return Buffer.from(`execlayer-policy-signature/v1\npolicy ${hash}\n`, 'utf8');
}

/** Signs a policy hash with an Ed25519 private key. */
export function signPolicyHash(hash: string, privateKey: KeyObject): PolicySignature {
  const signature = sign(null, policySignatureMessage(hash), privateKey).toString('base64');
  return { version: 1, algorithm: 'ed25519', policy: hash, signature };
}

/** Parses a PEM key of the given kind and checks that it is Ed25519. Throws PolicyKeyError. */
export function parsePolicyKey(pem: string, kind: 'public' | 'private', where: string): KeyObject {
  let key: KeyObject;
  try {
    // A private key also yields its public half, so a deployment may point at either file.
    key = kind === 'public' ? createPublicKey(pem) : createPrivateKey(pem);
  } catch (e) {
    throw new PolicyKeyError(`\`${where}\` is not a PEM ${kind} key`, { cause: e });
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new PolicyKeyError(`\`${where}\` is a \`${key.asymmetricKeyType}\` key, expected \`ed25519\``);
  return key;
}

/**
 * Checks a policy's detached signature against the public key; undefined when it verifies, else the
 * problem (missing, unreadable, for another policy, or not made by the key). Never throws.
 */
export function verifyPolicySignature(
  hash: string,
  signature: { path: string; bytes: Buffer | undefined } | undefined,
  publicKey: KeyObject,
): Problem | undefined {
  const path = signature?.path ?? '<policy>.sig';
  const problem = (code: string, message: string, hint?: string): Problem => ({
    severity: 'error',
    code,
    message,
    file: path,
    line: 1,
    column: 1,
    path: '',
    ...(hint ? { hint } : {}),
  });
  if (!signature?.bytes)
    return problem(
      'signature_missing',
      `the policy must be signed, and \`${path}\` does not exist`,
      'sign it with `execlayer policy sign --key <private.pem> <policy>`',
    );
  let sig: Partial<PolicySignature>;
  try {
    sig = JSON.parse(signature.bytes.toString('utf8')) as Partial<PolicySignature>;
  } catch {
    return problem('signature_invalid', `\`${path}\` is not a policy signature (not JSON)`);
  }
  if (
    sig === null ||
    typeof sig !== 'object' ||
    sig.version !== 1 ||
    sig.algorithm !== 'ed25519' ||
    typeof sig.policy !== 'string' ||
    typeof sig.signature !== 'string'
  )
    return problem('signature_invalid', `\`${path}\` is not a version 1 ed25519 policy signature`);
  if (sig.policy !== hash)
    return problem(
      'signature_mismatch',
      `\`${path}\` signs policy ${sig.policy.slice(0, 12)}…, but the policy is ${hash.slice(0, 12)}…`,
      'a file of the policy changed after it was signed: review the change and sign again',
    );
  let ok = false;
  try {
    ok = verify(null, policySignatureMessage(hash), publicKey, Buffer.from(sig.signature, 'base64'));
  } catch {
    ok = false;
  }
  return ok
    ? undefined
    : problem('signature_invalid', `\`${path}\` does not verify against the configured public key`);
}
