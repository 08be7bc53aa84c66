/**
 * @module
 * The deploy token: what `git push` gives as its HTTP Basic password and the admin API as its Bearer
 * token. FNIX_TOKEN when set; otherwise a random token made at first start and kept in the state folder
 * (mode 0600).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { FnixError } from '../../runtime/errors.ts';

/** The token, and whether it was made just now (and so must be shown once). */
export interface DeployToken {
  token: string;
  source: 'FNIX_TOKEN' | 'generated' | 'state';
}

/** The shortest FNIX_TOKEN accepted. */
export const MIN_TOKEN_LENGTH = 16;

/** Reads or makes the token. */
export async function loadToken(stateDir: string, fromEnv: string | undefined): Promise<DeployToken> {
  if (fromEnv !== undefined && fromEnv !== '') {
    if (fromEnv.length < MIN_TOKEN_LENGTH) throw new Error(`FNIX_TOKEN is ${fromEnv.length} characters; use at least ${MIN_TOKEN_LENGTH}`);
    return { token: fromEnv, source: 'FNIX_TOKEN' };
  }
  const file = join(stateDir, 'token');
  const kept = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (kept?.trim()) return { token: kept.trim(), source: 'state' };
  const token = randomBytes(24).toString('base64url');
  // Written whole or not at all: a crash here must not leave an empty token file behind.
  const temporary = `${file}.${process.pid}.tmp`;
  const handle = await open(temporary, 'w', 0o600);
  try {
    await handle.writeFile(`${token}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, file);
  return { token, source: 'generated' };
}

/** Checks requests against the token, in constant time. */
export class TokenCheck {
  readonly #digest: Buffer;
  readonly #what: string;

  /** `what` names the token in refusals. @default 'the deploy token' */
  constructor(token: string, what = 'the deploy token') {
    this.#digest = digest(token);
    this.#what = what;
  }

  /** True when `candidate` is the token. */
  matches(candidate: string): boolean {
    return timingSafeEqual(digest(candidate), this.#digest);
  }

  /** HTTP Basic, any user name, the token as the password (git). Throws UNAUTHORIZED. */
  basic(header: string | undefined): void {
    const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
    const decoded = match ? Buffer.from(match[1]!, 'base64').toString('utf8') : '';
    const colon = decoded.indexOf(':');
    if (colon < 0 || !this.matches(decoded.slice(colon + 1))) {
      throw new FnixError(
        'UNAUTHORIZED',
        'the deploy token is missing or wrong: give it as the password (any user name), e.g. http://fnix:<token>@host/git/functions.git',
        {
          details: { scheme: 'Basic' },
        },
      );
    }
  }

  /** `Authorization: Bearer <token>` (the admin API). Throws UNAUTHORIZED. */
  bearer(header: string | undefined): void {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
    if (!match || !this.matches(match[1]!)) {
      throw new FnixError('UNAUTHORIZED', `${this.#what} is missing or wrong: send Authorization: Bearer <token>`, { details: { scheme: 'Bearer' } });
    }
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
