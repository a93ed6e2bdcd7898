// AudioWorklet (audio thread): cuts the microphone into 20 ms blocks for the encoder, with the
// block's peak and RMS for the level meter. The main thread owns encoding and the network; this
// only copies samples, so it never blocks the audio callback.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.blockSamples = Math.round(sampleRate / 50); // 20 ms: one Opus frame
    this.block = new Float32Array(this.blockSamples);
    this.fill = 0;
  }

  process(inputs) {
    const channel = inputs[0]?.[0];
    if (!channel) return true; // no input connected yet
    for (let i = 0; i < channel.length; i++) {
      this.block[this.fill++] = channel[i];
      if (this.fill === this.blockSamples) this.emit();
    }
    return true;
  }

  emit() {
    let peak = 0;
    let sum = 0;
    for (const s of this.block) {
      peak = Math.max(peak, Math.abs(s));
      sum += s * s;
    }
    const samples = this.block;
    this.port.postMessage({ samples, peak, rms: Math.sqrt(sum / samples.length) }, [samples.buffer]);
    this.block = new Float32Array(this.blockSamples); // the old one was transferred away
    this.fill = 0;
  }
}
registerProcessor("capture", CaptureProcessor);
