// AudioWorklet (audio thread): plays the agent's decoded audio from a PlaybackQueue and tells
// the main thread what was really played, so the server can cut an interrupted reply to what
// the user heard. A flush (barge-in) takes effect at the next render quantum (2.7 ms at 48 kHz).
import { PlaybackQueue } from "./playback-queue.js";

const REPORT_EVERY_S = 0.05;

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { marginMs = 80, capacityS = 60 } = options.processorOptions ?? {};
    this.queue = new PlaybackQueue({
      capacitySamples: Math.round(capacityS * sampleRate),
      marginSamples: Math.round((marginMs / 1000) * sampleRate),
    });
    this.reportEvery = Math.round(REPORT_EVERY_S * sampleRate);
    this.sinceReport = 0;
    this.port.onmessage = ({ data }) => this.command(data);
  }

  command(data) {
    if (data.type === "push") {
      this.queue.push(data.samples, data.timestamp);
      if (data.last) this.queue.end(); // the reply's tail plays out without waiting for the margin
    } else if (data.type === "flush") {
      const discarded = this.queue.flush();
      this.port.postMessage({ type: "flushed", id: data.id, discarded, ...this.counters() });
    }
  }

  counters() {
    const q = this.queue;
    return { playedPosition: q.playedPosition, samplesPlayed: q.samplesPlayed, buffered: q.bufferedSamples,
      underruns: q.underruns, dropped: q.samplesDropped, playing: q.playing };
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    this.queue.pull(out[0]);
    for (let c = 1; c < out.length; c++) out[c].set(out[0]);
    this.sinceReport += out[0].length;
    if (this.sinceReport >= this.reportEvery) {
      this.sinceReport = 0;
      this.port.postMessage({ type: "position", ...this.counters() });
    }
    return true;
  }
}
registerProcessor("playback", PlaybackProcessor);
