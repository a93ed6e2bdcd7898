// The agent's audio waiting to be played: a ring buffer of float samples that remembers the
// output-stream position (protocol AUDIO timestamp) of every sample, so the player can report
// exactly what was heard (CONTROL playback_mark). Pure: the playback worklet owns one, the unit
// tests drive it directly. Single-threaded by design: only the audio thread touches it.

export class PlaybackQueue {
  /**
   * @param {object} o
   * @param {number} o.capacitySamples ring size; audio beyond it is dropped (and counted)
   * @param {number} o.marginSamples jitter margin: after an underrun, wait until this much is
   *   buffered before playing again, so network jitter does not chop the voice into pieces
   */
  constructor({ capacitySamples, marginSamples }) {
    this.ring = new Float32Array(capacitySamples);
    this.marginSamples = marginSamples;
    this.readIndex = 0;
    this.buffered = 0;
    this.spans = []; // [{timestamp, length}] in play order: stream position of buffered samples
    this.playing = false;
    this.ended = false; // the segment's last frame arrived: play out the tail below the margin
    this.playedPosition = 0; // stream position just after the last sample played
    this.samplesPlayed = 0;
    this.samplesDropped = 0;
    this.underruns = 0;
  }

  get bufferedSamples() {
    return this.buffered;
  }

  /** Queue `samples` whose first sample sits at stream position `timestampSamples`. */
  push(samples, timestampSamples) {
    const room = this.ring.length - this.buffered;
    const take = Math.min(room, samples.length);
    this.samplesDropped += samples.length - take;
    if (take === 0) return;
    let write = (this.readIndex + this.buffered) % this.ring.length;
    const first = Math.min(take, this.ring.length - write);
    this.ring.set(samples.subarray(0, first), write);
    if (take > first) this.ring.set(samples.subarray(first, take), 0);
    this.buffered += take;
    const last = this.spans[this.spans.length - 1];
    if (last && last.timestamp + last.length === timestampSamples) last.length += take;
    else this.spans.push({ timestamp: timestampSamples, length: take });
    this.ended = false;
  }

  /** No more audio is coming for now (SEGMENT_END): play what is left without waiting. */
  end() {
    this.ended = true;
  }

  /**
   * Fill `out` with the next samples (silence where there are none); returns how many real
   * samples were written.
   */
  pull(out) {
    if (!this.playing && this.buffered > 0 && (this.buffered >= this.marginSamples || this.ended)) {
      this.playing = true;
    }
    let written = 0;
    if (this.playing) {
      written = Math.min(out.length, this.buffered);
      const first = Math.min(written, this.ring.length - this.readIndex);
      out.set(this.ring.subarray(this.readIndex, this.readIndex + first), 0);
      if (written > first) out.set(this.ring.subarray(0, written - first), first);
      this.readIndex = (this.readIndex + written) % this.ring.length;
      this.buffered -= written;
      this.samplesPlayed += written;
      this.advanceSpans(written);
      if (this.buffered === 0) {
        this.playing = false;
        if (!this.ended) this.underruns += 1;
        this.ended = false;
      }
    }
    out.fill(0, written);
    return written;
  }

  /** Drop everything queued (barge-in); returns how many samples were discarded. */
  flush() {
    const discarded = this.buffered;
    this.readIndex = 0;
    this.buffered = 0;
    this.spans = [];
    this.playing = false;
    this.ended = false;
    return discarded;
  }

  advanceSpans(count) {
    let left = count;
    while (left > 0) {
      const span = this.spans[0];
      const used = Math.min(left, span.length);
      span.timestamp += used;
      span.length -= used;
      left -= used;
      this.playedPosition = span.timestamp;
      if (span.length === 0) this.spans.shift();
    }
  }
}
