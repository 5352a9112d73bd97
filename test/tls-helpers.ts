/**
 * Throwaway TLS certificates for tests: a self-signed P-256 certificate for localhost and 127.0.0.1,
 * made with the system's `openssl` into a directory the test owns (no key is ever committed).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The system openssl, or undefined when it is not installed (tests skip with a reason). */
export const OPENSSL = ['/usr/bin/openssl', '/usr/local/bin/openssl'].find((p) => existsSync(p));

/** Writes `<name>.cert.pem` and `<name>.key.pem` into `dir`; returns their paths and the PEM text. */
export function makeCert(
  dir: string,
  name: string,
  cn = 'localhost',
): { cert: string; key: string; pem: string } {
  if (OPENSSL === undefined) throw new Error('openssl is not installed');
  const cert = join(dir, `${name}.cert.pem`);
  const key = join(dir, `${name}.key.pem`);
  execFileSync(
    OPENSSL,
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      `/CN=${cn}`,
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return { cert, key, pem: readFileSync(cert, 'utf8') };
}
