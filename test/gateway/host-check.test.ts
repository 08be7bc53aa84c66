import { describe, expect, it } from 'vitest';
import { HostAllowlist } from '../../gateway/host-check.ts';
import { FnixError } from '../../runtime/errors.ts';

describe('HostAllowlist', () => {
  const none = new HostAllowlist();
  const listed = new HostAllowlist(['fnix.example.com', '.apps.example']);

  it.each(['127.0.0.1', '127.0.0.1:8080', '10.1.2.3:80', '[::1]:8080', '[::1]', 'localhost', 'LOCALHOST:8080', 'shell.localhost:8080', 'localhost.'])(
    'always allows IP addresses and localhost: %s',
    (host) => {
      expect(none.allows(host)).toBe(true);
    },
  );

  it('allows a request without Host (HTTP/1.0 clients; no browser sends one)', () => {
    expect(none.allows(undefined)).toBe(true);
  });

  it.each(['evil.example', 'evil.example:8080', 'localhost.evil.example', '127.0.0.1.nip.io', 'fnix.example.com', '', ':8080', 'a b', 'user@host', '[evil]'])(
    'refuses other names unless listed: %j',
    (host) => {
      expect(none.allows(host)).toBe(false);
    },
  );

  it('allows listed names, and a listed .domain with every name under it', () => {
    for (const host of ['fnix.example.com', 'FNIX.example.com:443', 'fnix.example.com.', 'apps.example', 'a.apps.example', 'b.a.apps.example:8080']) {
      expect(listed.allows(host), host).toBe(true);
    }
    for (const host of ['example.com', 'x.fnix.example.com', 'evilapps.example', 'apps.example.evil']) {
      expect(listed.allows(host), host).toBe(false);
    }
  });

  it('takes names with an underscore (Compose service names)', () => {
    expect(new HostAllowlist(['fnix_gateway']).allows('fnix_gateway:8080')).toBe(true);
  });

  it('says when a Host is not a host name at all, rather than suggesting it be allowed', () => {
    expect(() => none.check('user@host')).toThrow(/the Host header "user@host" is not a host name/);
  });

  it('allows any name with *', () => {
    expect(new HostAllowlist(['*']).allows('anything.example:1')).toBe(true);
  });

  it('refuses with HOST_NOT_ALLOWED, naming the host and the setting to change', () => {
    let error: unknown;
    try {
      none.check('rebound.example:8080');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(FnixError);
    expect(error).toMatchObject({ code: 'HOST_NOT_ALLOWED', details: { host: 'rebound.example' } });
    expect((error as Error).message).toContain('FNIX_ALLOWED_HOSTS=rebound.example');
  });
});
