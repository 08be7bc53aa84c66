/**
 * @module
 * A session's heartbeat (gateway/sessions/heartbeat.ts) on a fake clock, against a fake socket: a ping
 * each interval, a client that misses a pong dropped, and while the socket is not read no judgement but
 * a probe four times a second.
 */
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BLOCKED_PROBE_MS, startHeartbeat } from '../../../gateway/sessions/heartbeat.ts';

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

/** A socket that records its pings and whether it was terminated; `pong()` is the client answering. */
class FakeSocket extends EventEmitter {
  ping = vi.fn();
  terminate = vi.fn();
  pong(): void {
    this.emit('pong');
  }
}

describe('startHeartbeat', () => {
  it('pings every interval, and keeps a client that answers', () => {
    const ws = new FakeSocket();
    startHeartbeat({ ws, intervalMs: 500 });
    vi.advanceTimersByTime(499);
    expect(ws.ping).not.toHaveBeenCalled();
    for (let i = 1; i <= 10; i++) {
      vi.advanceTimersByTime(i === 1 ? 1 : 500);
      expect(ws.ping).toHaveBeenCalledTimes(i);
      ws.pong();
    }
    expect(ws.terminate).not.toHaveBeenCalled();
  });

  it('drops a client that has not answered a ping by the next one', () => {
    const ws = new FakeSocket();
    startHeartbeat({ ws, intervalMs: 500 });
    vi.advanceTimersByTime(500);
    expect(ws.ping).toHaveBeenCalledOnce();
    vi.advanceTimersByTime(499);
    expect(ws.terminate).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(ws.terminate).toHaveBeenCalledOnce();
    expect(ws.ping).toHaveBeenCalledOnce(); // no second ping for a client found gone
  });

  it('pings every 15 s by default', () => {
    const ws = new FakeSocket();
    startHeartbeat({ ws });
    vi.advanceTimersByTime(14_999);
    expect(ws.ping).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(ws.ping).toHaveBeenCalledOnce();
  });

  it('while the socket is not read, judges no one and probes every 250 ms instead', () => {
    const ws = new FakeSocket();
    const heartbeat = startHeartbeat({ ws, intervalMs: 500 });
    vi.advanceTimersByTime(500); // a ping, whose pong cannot be read from now on
    heartbeat.setReading(false);
    heartbeat.setReading(false); // said twice: still one probe
    vi.advanceTimersByTime(5000);
    expect(ws.terminate).not.toHaveBeenCalled();
    expect(ws.ping).toHaveBeenCalledTimes(1 + 5000 / BLOCKED_PROBE_MS);
    // Reading again: the probe stops, and the heartbeat goes on where it was.
    heartbeat.setReading(true);
    ws.pong();
    ws.ping.mockClear();
    vi.advanceTimersByTime(500);
    expect(ws.ping).toHaveBeenCalledOnce();
    vi.advanceTimersByTime(500);
    expect(ws.terminate).toHaveBeenCalledOnce();
  });

  it('stops the pings and the probe', () => {
    const ws = new FakeSocket();
    const heartbeat = startHeartbeat({ ws, intervalMs: 500 });
    heartbeat.setReading(false);
    heartbeat.stop();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(10_000);
    expect(ws.ping).not.toHaveBeenCalled();
  });
});
