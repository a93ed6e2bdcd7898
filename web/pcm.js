// PCM16 little-endian <-> float32 samples: the protocol's "pcm16" codec (docs/protocol.md §4).
// Explicit little-endian through DataView, whatever the machine's byte order.

/** Float32 samples in [-1, 1] -> PCM16 LE bytes; values outside are clipped. */
export function floatToPcm16(samples) {
  const out = new Uint8Array(samples.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(i * 2, Math.round(s < 0 ? s * 32768 : s * 32767), true);
  }
  return out;
}

/** PCM16 LE bytes -> Float32 samples in [-1, 1). An odd trailing byte is ignored. */
export function pcm16ToFloat(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength >> 1);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
  return out;
}

/** Peak and RMS of a block, for the level meter. */
export function levels(samples) {
  let peak = 0;
  let sum = 0;
  for (let i = 0; i < samples.length; i++) {
    const a = Math.abs(samples[i]);
    if (a > peak) peak = a;
    sum += samples[i] * samples[i];
  }
  return { peak, rms: samples.length ? Math.sqrt(sum / samples.length) : 0 };
}
