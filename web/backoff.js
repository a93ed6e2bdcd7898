// Reconnect delays: exponential with a cap and random jitter, so a restarted server is not hit
// by every open page in the same millisecond. Pure; `random` is injectable for tests.

export class Backoff {
  /**
   * @param {object} [o]
   * @param {number} [o.initialMs] first delay
   * @param {number} [o.maxMs] no delay is longer than this
   * @param {number} [o.factor] growth per attempt
   * @param {number} [o.jitter] +- fraction of the delay picked at random (0.2 = +-20 %)
   * @param {() => number} [o.random] uniform in [0, 1)
   */
  constructor({ initialMs = 500, maxMs = 15000, factor = 2, jitter = 0.2, random = Math.random } = {}) {
    Object.assign(this, { initialMs, maxMs, factor, jitter, random });
    this.attempt = 0;
  }

  /** The delay before the next attempt, ms; counts the attempt. */
  next() {
    const base = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt);
    this.attempt += 1;
    const spread = base * this.jitter * (2 * this.random() - 1);
    return Math.round(Math.min(this.maxMs, Math.max(0, base + spread)));
  }

  /** A session reached READY: the next failure starts from the first delay again. */
  reset() {
    this.attempt = 0;
  }
}
