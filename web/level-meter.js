// The microphone level on the page: a bar with a peak mark, and the orb that breathes with the
// voice. Speech sits around -30..-10 dBFS, so the scale is in dB: it moves like a person expects.

const FLOOR_DB = -60;

/** Linear amplitude -> 0..1 on a dB scale from -60 dBFS (0) to 0 dBFS (1). */
export function levelToUnit(amplitude) {
  const db = 20 * Math.log10(Math.max(amplitude, 1e-9));
  return Math.max(0, Math.min(1, (db - FLOOR_DB) / -FLOOR_DB));
}

export class LevelMeter {
  /** @param {HTMLElement} meter role="meter" element; @param {HTMLElement[]} followers get --level too */
  constructor(meter, followers = []) {
    Object.assign(this, { meter, followers });
    this.announcedAt = 0;
  }

  show(rms, peak) {
    const level = levelToUnit(rms).toFixed(3);
    this.meter.style.setProperty("--level", level);
    this.meter.style.setProperty("--peak", levelToUnit(peak).toFixed(3));
    for (const el of this.followers) el.style.setProperty("--level", level);
    const now = performance.now();
    if (now - this.announcedAt > 500) { // assistive technology needs no 50 Hz updates
      this.announcedAt = now;
      this.meter.setAttribute("aria-valuenow", String(Math.round(level * 100)));
    }
  }
}
