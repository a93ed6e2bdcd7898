// Microphone blocks -> AUDIO payloads in the session's input codec: Opus through WebCodecs
// (one raw packet per 20 ms, what the server's decoder expects) or PCM16 where the browser has
// no WebCodecs. Timestamps are input-stream sample positions (docs/protocol.md §2).
import { floatToPcm16 } from "./pcm.js";

export const OPUS_RATE_HZ = 48000;

function opusConfig(rateHz) {
  return {
    codec: "opus",
    sampleRate: rateHz,
    numberOfChannels: 1,
    bitrate: 32000,
    opus: { frameDuration: 20000, format: "opus", complexity: 5 },
  };
}

/** "opus" when this browser can encode and decode Opus with WebCodecs, else "pcm16". */
export async function pickCodec(forced = null) {
  if (forced === "pcm16" || forced === "opus") return forced;
  if (typeof AudioEncoder === "undefined" || typeof AudioDecoder === "undefined") return "pcm16";
  try {
    const config = { codec: "opus", sampleRate: OPUS_RATE_HZ, numberOfChannels: 1 };
    const [enc, dec] = await Promise.all([AudioEncoder.isConfigSupported(opusConfig(OPUS_RATE_HZ)),
      AudioDecoder.isConfigSupported(config)]);
    return enc.supported && dec.supported ? "opus" : "pcm16";
  } catch {
    return "pcm16";
  }
}

export class MicEncoder {
  /**
   * @param {"opus"|"pcm16"} codec
   * @param {number} rateHz sample rate of the blocks (and of the session's input)
   * @param {(payload: Uint8Array, timestampSamples: number) => void} onPacket
   * @param {(error: Error) => void} onError
   */
  constructor(codec, rateHz, onPacket, onError) {
    Object.assign(this, { codec, rateHz, onPacket });
    this.positionSamples = 0; // input-stream position of the next block
    if (codec === "opus") {
      this.encoder = new AudioEncoder({
        output: (chunk) => {
          const bytes = new Uint8Array(chunk.byteLength);
          chunk.copyTo(bytes);
          onPacket(bytes, Math.round((chunk.timestamp * rateHz) / 1e6));
        },
        error: onError,
      });
      this.encoder.configure(opusConfig(rateHz));
    }
  }

  /** One block of float samples (20 ms recommended). */
  encode(samples) {
    const timestamp = this.positionSamples;
    this.positionSamples += samples.length;
    if (this.codec === "pcm16") {
      this.onPacket(floatToPcm16(samples), timestamp);
      return;
    }
    if (this.encoder.state !== "configured") return;
    const data = new AudioData({
      format: "f32-planar", sampleRate: this.rateHz, numberOfFrames: samples.length, numberOfChannels: 1,
      timestamp: Math.round((timestamp * 1e6) / this.rateHz), data: samples,
    });
    this.encoder.encode(data);
    data.close();
  }

  close() {
    if (this.encoder && this.encoder.state !== "closed") this.encoder.close();
  }
}
