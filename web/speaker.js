// The agent's voice: AUDIO payloads -> decoder (WebCodecs Opus, or PCM16) -> playback worklet.
// Owns the barge-in flush: the worklet drops what it holds, and decodes still in flight for the
// cut reply are dropped by timestamp when they come out of the decoder.
import { pcm16ToFloat } from "./pcm.js";

export class Speaker {
  /**
   * @param {AudioContext} context its sampleRate must equal the session's output rate
   * @param {object} o
   * @param {"opus"|"pcm16"} o.codec
   * @param {number} [o.marginMs] jitter margin held before playing (and after an underrun)
   * @param {(report: object) => void} o.onReport worklet counters, every ~50 ms and after a flush
   * @param {(error: Error) => void} o.onError
   */
  static async create(context, { codec, marginMs = 80, onReport, onError }) {
    await context.audioWorklet.addModule(new URL("./playback-worklet.js", import.meta.url));
    const node = new AudioWorkletNode(context, "playback", {
      numberOfInputs: 0, outputChannelCount: [1], processorOptions: { marginMs },
    });
    node.connect(context.destination);
    return new Speaker(context, node, codec, onReport, onError);
  }

  constructor(context, node, codec, onReport, onError) {
    Object.assign(this, { context, node, codec, onError });
    this.rateHz = context.sampleRate;
    this.samplesDecoded = 0;
    this.receivedEndSamples = 0; // stream position just after the last frame received
    this.dropBeforeSamples = 0; // decoder output older than this belongs to a flushed reply
    this.flushRequests = 0;
    this.segmentEnds = new Set(); // timestamps of SEGMENT_END frames still being decoded
    node.port.onmessage = ({ data }) => onReport(data);
    if (codec === "opus") this.decoder = this.makeDecoder();
  }

  makeDecoder() {
    const decoder = new AudioDecoder({
      output: (audio) => this.decoded(audio),
      error: (error) => this.onError(error),
    });
    decoder.configure({ codec: "opus", sampleRate: this.rateHz, numberOfChannels: 1 });
    return decoder;
  }

  /** One AUDIO frame from the server; `segmentEnd` marks the last frame of a reply. */
  push(payload, timestampSamples, { segmentEnd = false } = {}) {
    if (this.codec === "pcm16") {
      const samples = pcm16ToFloat(payload);
      this.receivedEndSamples = timestampSamples + samples.length;
      this.play(samples, timestampSamples, segmentEnd);
      return;
    }
    this.receivedEndSamples = timestampSamples + Math.round(this.rateHz / 50);
    if (segmentEnd) this.segmentEnds.add(timestampSamples); // decoding is asynchronous: remember it
    if (this.decoder.state === "closed") this.decoder = this.makeDecoder(); // after a decode error
    this.decoder.decode(new EncodedAudioChunk({
      type: "key", timestamp: Math.round((timestampSamples * 1e6) / this.rateHz), data: payload,
    }));
  }

  decoded(audio) {
    const timestamp = Math.round((audio.timestamp * this.rateHz) / 1e6);
    const last = this.segmentEnds.delete(timestamp);
    if (timestamp < this.dropBeforeSamples) {
      audio.close();
      return;
    }
    const samples = new Float32Array(audio.numberOfFrames);
    audio.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
    audio.close();
    this.play(samples, timestamp, last);
  }

  play(samples, timestamp, last) {
    this.samplesDecoded += samples.length;
    this.node.port.postMessage({ type: "push", samples, timestamp, last }, [samples.buffer]);
  }

  /** Barge-in: stop the voice now. The worklet answers with a "flushed" report. */
  flush() {
    this.flushRequests += 1;
    this.dropBeforeSamples = this.receivedEndSamples;
    this.segmentEnds.clear();
    this.node.port.postMessage({ type: "flush", id: this.flushRequests });
  }

  close() {
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.node.port.onmessage = null;
    this.node.disconnect();
  }
}
