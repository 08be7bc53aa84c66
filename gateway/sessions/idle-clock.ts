/**
 * @module
 * A session's idle clock, which ends the session after a stretch with no traffic either way. Traffic only
 * stamps the time (a session may carry thousands of frames a second); one timer looks at the stamp when
 * it fires, and sets itself again for what is left of the stretch.
 */

/** Options of {@link startIdleClock}. */
export interface IdleClockOptions {
  /** How long without traffic is idle (the manifest's idleTimeoutMs). */
  timeoutMs: number;
  /** Called once, when `timeoutMs` has passed without traffic. */
  onIdle: () => void;
}

/** A running idle clock. */
export interface IdleClock {
  /** Traffic, either way: the quiet stretch starts again from now. */
  touch(): void;
  /** Stops the clock; `onIdle` is not called after. */
  stop(): void;
}

/** Starts the clock; the first quiet stretch starts now. */
export function startIdleClock({ timeoutMs, onIdle }: IdleClockOptions): IdleClock {
  let lastTraffic = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    const quietMs = performance.now() - lastTraffic;
    if (quietMs < timeoutMs) timer = setTimeout(check, timeoutMs - quietMs);
    else onIdle();
  };
  timer = setTimeout(check, timeoutMs);
  return {
    touch() {
      lastTraffic = performance.now();
    },
    stop() {
      clearTimeout(timer);
    },
  };
}
