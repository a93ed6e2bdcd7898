// AudioWorklet: posts 20 ms Float32 chunks of the microphone to the main thread.
class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.round(sampleRate / 50);
    this.buf = new Float32Array(this.size);
    this.fill = 0;
  }
  process(inputs) {
    const ch = inputs[0][0];
    if (!ch) return true;
    for (let i = 0; i < ch.length; i++) {
      this.buf[this.fill++] = ch[i];
      if (this.fill === this.size) {
        this.port.postMessage(this.buf.slice());
        this.fill = 0;
      }
    }
    return true;
  }
}
registerProcessor("capture", Capture);
