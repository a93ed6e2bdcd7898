// One protocol session over one WebSocket: HELLO -> READY, then frames both ways, then BYE.
// Owns the sequence numbers and the handshake rules; knows nothing about audio devices or the
// page. The socket factory is injectable so the unit tests can play the server.
import {
  BYE_NORMAL, Flags, MessageType, audioFrame, byeFrame, controlFrame, decodeFrame, helloFrame, nextSeq,
  parseBye, parseError, parseEvent, parseReady, pingFrame, pongFrame,
} from "./protocol.js";

export const PING_INTERVAL_MS = 5000;

export class VoiceSession {
  /**
   * @param {object} o
   * @param {string} o.url ws:// or wss:// address of the server's /ws
   * @param {object} o.hello HELLO fields (see protocol.js makeHello)
   * @param {object} o.on callbacks: ready(ready), audio(frame), event(event), error(err),
   *   rtt(ms), closed({code, reason, opened, ready})
   * @param {(url: string) => WebSocket} [o.createSocket]
   */
  constructor({ url, hello, on, createSocket = (u) => new WebSocket(u) }) {
    Object.assign(this, { url, hello, on });
    this.seq = 0;
    this.opened = false;
    this.ready = null; // the READY object once the handshake is done
    this.serverError = null; // last fatal ERROR: its code explains the close that follows
    this.closed = false;
    this.pings = new Map(); // ping id -> performance.now() when sent
    this.pingId = 0;
    this.socket = createSocket(url);
    this.socket.binaryType = "arraybuffer";
    this.socket.onopen = () => {
      this.opened = true;
      this.send(helloFrame(hello, { seq: this.seq }));
    };
    this.socket.onmessage = (message) => this.receive(message.data);
    this.socket.onclose = (e) => this.finish(e.code, e.reason);
    this.socket.onerror = () => {}; // always followed by close, which carries the code
  }

  send(bytes) {
    if (this.socket.readyState !== 1) return false; // WebSocket.OPEN, also without a global WebSocket
    this.socket.send(bytes);
    this.seq = nextSeq(this.seq);
    return true;
  }

  sendAudio(payload, timestampSamples, { first = false } = {}) {
    if (!this.ready) return false;
    const flags = first ? Flags.SEGMENT_START : Flags.NONE;
    return this.send(audioFrame(payload, { seq: this.seq, timestamp: timestampSamples, flags }));
  }

  sendControl(control) {
    if (!this.ready) return false;
    return this.send(controlFrame(control, { seq: this.seq }));
  }

  receive(data) {
    let frame;
    try {
      frame = decodeFrame(new Uint8Array(data), { maxPayloadBytes: this.ready?.limits?.max_payload_bytes });
    } catch (error) {
      this.on.error?.({ code: error.code, message: error.message, fatal: false });
      return;
    }
    switch (frame.type) {
      case MessageType.READY:
        this.ready = parseReady(frame.payload);
        this.pingTimer = setInterval(() => this.ping(), PING_INTERVAL_MS);
        this.on.ready?.(this.ready);
        break;
      case MessageType.AUDIO:
        this.on.audio?.(frame);
        break;
      case MessageType.EVENT:
        this.on.event?.(parseEvent(frame.payload));
        break;
      case MessageType.ERROR: {
        const error = parseError(frame.payload);
        if (!this.ready) error.fatal = true; // every error before READY is fatal
        if (error.fatal) this.serverError = error;
        this.on.error?.(error);
        break;
      }
      case MessageType.PING:
        this.send(pongFrame(frame, { seq: this.seq }));
        break;
      case MessageType.PONG:
        this.pong(frame.payload);
        break;
      case MessageType.BYE: {
        const bye = parseBye(frame.payload);
        if (bye.code !== BYE_NORMAL) this.serverError = { code: bye.code, message: bye.reason };
        break;
      }
      default: // unknown types are ignored after READY (forward compatibility)
    }
  }

  ping() {
    this.pingId = (this.pingId + 1) >>> 0;
    const payload = new Uint8Array(4);
    new DataView(payload.buffer).setUint32(0, this.pingId);
    this.pings.set(this.pingId, performance.now());
    if (this.pings.size > 8) this.pings.delete(this.pings.keys().next().value);
    this.send(pingFrame(payload, { seq: this.seq }));
  }

  pong(payload) {
    if (payload.length !== 4) return;
    const id = new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0);
    const sent = this.pings.get(id);
    if (sent === undefined) return;
    this.pings.delete(id);
    this.on.rtt?.(performance.now() - sent);
  }

  /** Polite end: BYE, then close 1000. */
  close() {
    if (this.closed) return;
    this.send(byeFrame(BYE_NORMAL, "", { seq: this.seq }));
    this.socket.close(1000);
    this.finish(1000, "");
  }

  finish(code, reason) {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pingTimer);
    // The server closes with the ERROR's code; prefer the ERROR's text to the close reason.
    const err = this.serverError;
    this.on.closed?.({
      code: err ? err.code : code, reason: err ? err.message : reason,
      opened: this.opened, ready: Boolean(this.ready),
    });
  }
}
