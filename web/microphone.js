// The user's microphone: getUserMedia with the browser's echo cancellation, noise suppression
// and gain control (the agent's voice from the speakers must not barge in on itself), feeding
// the capture worklet. Delivers 20 ms float blocks at the AudioContext's rate.

export const MIC_CONSTRAINTS = Object.freeze({
  echoCancellation: true,
  noiseSuppression: true,
  autoGainControl: true,
  channelCount: 1,
});

export class Microphone {
  /**
   * @param {AudioContext} context owns the audio graph; its sampleRate is the capture rate
   * @param {(block: {samples: Float32Array, peak: number, rms: number}) => void} onBlock
   */
  static async open(context, onBlock) {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: MIC_CONSTRAINTS });
    try {
      await context.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
      const source = context.createMediaStreamSource(stream);
      // No outputs: Chromium pulls such a node on its own, nothing reaches the speakers.
      const node = new AudioWorkletNode(context, "capture", { numberOfInputs: 1, numberOfOutputs: 0 });
      node.port.onmessage = ({ data }) => onBlock(data);
      source.connect(node);
      return new Microphone(stream, source, node);
    } catch (error) {
      stream.getTracks().forEach((t) => t.stop());
      throw error;
    }
  }

  constructor(stream, source, node) {
    Object.assign(this, { stream, source, node });
  }

  /** The device name, for the page ("Default - Built-in Microphone"). */
  get label() {
    return this.stream.getAudioTracks()[0]?.label ?? "";
  }

  close() {
    this.node.port.onmessage = null;
    this.source.disconnect();
    this.stream.getTracks().forEach((t) => t.stop()); // turns the browser's recording indicator off
  }
}
