/**
 * @module
 * The per-address limit on failed token attempts (gateway/auth/failure-limiter.ts), on a fake clock:
 * the burst, the refill, the wait it names, how addresses are grouped, and the bound on addresses kept.
 */
import { describe, expect, it } from 'vitest';
import { clientKey, FailureLimiter } from '../../../gateway/auth/failure-limiter.ts';

function limiter(options: { burst?: number; refillMs?: number; maxClients?: number } = {}) {
  const clock = { now: 1000 };
  return { clock, limiter: new FailureLimiter({ ...options, now: () => clock.now }) };
}

describe('FailureLimiter', () => {
  it('lets an address fail `burst` times, then refuses it, naming the wait', () => {
    const { limiter: l } = limiter({ burst: 3, refillMs: 6000 });
    for (let i = 0; i < 3; i++) {
      expect(l.check('10.0.0.1')).toEqual({ allowed: true });
      l.fail('10.0.0.1');
    }
    expect(l.check('10.0.0.1')).toEqual({ allowed: false, retryAfterSeconds: 6 });
    // Others are not concerned.
    expect(l.check('10.0.0.2')).toEqual({ allowed: true });
  });

  it('gives one try back every refillMs, and the wait shrinks meanwhile', () => {
    const { clock, limiter: l } = limiter({ burst: 2, refillMs: 6000 });
    l.fail('10.0.0.1');
    l.fail('10.0.0.1');
    clock.now += 2500;
    expect(l.check('10.0.0.1')).toEqual({ allowed: false, retryAfterSeconds: 4 });
    clock.now += 3500;
    expect(l.check('10.0.0.1')).toEqual({ allowed: true });
    l.fail('10.0.0.1');
    expect(l.check('10.0.0.1').allowed).toBe(false);
    // A long quiet spell refills it whole, never beyond the burst.
    clock.now += 60_000;
    l.fail('10.0.0.1');
    expect(l.check('10.0.0.1')).toEqual({ allowed: true });
    l.fail('10.0.0.1');
    expect(l.check('10.0.0.1').allowed).toBe(false);
  });

  it('counts IPv4-mapped IPv6 as IPv4, and IPv6 by its /64', () => {
    const { limiter: l } = limiter({ burst: 1 });
    l.fail('::ffff:192.0.2.7');
    expect(l.check('192.0.2.7').allowed).toBe(false);
    l.fail('2001:db8:1:2::1');
    expect(l.check('2001:db8:1:2:ffff:ffff:ffff:fffe').allowed).toBe(false);
    expect(l.check('2001:db8:1:3::1').allowed).toBe(true);
  });

  it('forgets the least recent addresses beyond maxClients, so that memory stays bounded', () => {
    const { limiter: l } = limiter({ burst: 1, maxClients: 2 });
    l.fail('10.0.0.1');
    l.fail('10.0.0.2');
    l.fail('10.0.0.3');
    expect(l.check('10.0.0.1').allowed).toBe(true);
    expect(l.check('10.0.0.3').allowed).toBe(false);
  });

  it('refuses options that cannot limit anything', () => {
    expect(() => new FailureLimiter({ burst: 0 })).toThrow(TypeError);
    expect(() => new FailureLimiter({ refillMs: 0 })).toThrow(TypeError);
  });
});

describe('clientKey', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['::1', '0:0:0:0::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['2001:0DB8:0001:0002:0003::', '2001:db8:1:2::/64'],
  ])('%s counts as %s', (address, key) => {
    expect(clientKey(address)).toBe(key);
  });
});
