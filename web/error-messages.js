// What went wrong, in words a person can act on, and whether trying again can help.
// Pure: maps browser exceptions, protocol ERROR codes and WebSocket close codes to messages.
import { ErrorCode } from "./protocol.js";

/** A getUserMedia / AudioContext failure -> one sentence that says what to do. */
export function microphoneProblem(error, { secure = true } = {}) {
  if (!secure) {
    return "The microphone only works on a secure page: open it as http://localhost or over https:// (see docs/browser.md).";
  }
  switch (error?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone permission was denied. Allow the microphone for this site (the icon in the address bar), then connect again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Plug one in or pick one in your system settings, then connect again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone could not be opened: another application may be using it.";
    default:
      return `The microphone could not be started: ${error?.message ?? error}`;
  }
}

const RETRYABLE = new Set([ErrorCode.SERVER_BUSY, ErrorCode.SHUTTING_DOWN, ErrorCode.IDLE_TIMEOUT,
  ErrorCode.TOO_MANY_ERRORS]);

/**
 * Why a session ended -> {message, retry}.
 * @param {object} o
 * @param {number} o.code WebSocket close code (or the ERROR code the server sent before closing)
 * @param {string} [o.reason] server's text
 * @param {boolean} [o.opened] the WebSocket connection was established at all
 * @param {string} [o.url] the server address, for "cannot reach"
 */
export function sessionProblem({ code, reason = "", opened = true, url = "the server" }) {
  const detail = reason ? ` (${reason})` : "";
  switch (code) {
    case 1000:
      return { message: "", retry: false };
    case ErrorCode.AUTH_FAILED:
      return { message: "Authentication failed: the server needs a valid access token. Enter it in Settings, or add ?token=… to the page address.", retry: false };
    case ErrorCode.SERVER_BUSY:
      return { message: `The server is busy: all its sessions are in use${detail}.`, retry: true };
    case ErrorCode.SHUTTING_DOWN:
      return { message: "The server is restarting.", retry: true };
    case ErrorCode.IDLE_TIMEOUT:
      return { message: "The session timed out: the server heard nothing for too long.", retry: true };
    case ErrorCode.UNSUPPORTED_CODEC:
      return { message: `The server cannot use this audio codec${detail}. Try ?codec=pcm16.`, retry: false };
    case ErrorCode.UNSUPPORTED_VERSION:
      return { message: `This page and the server speak different protocol versions${detail}. Reload the page.`, retry: false };
    case 1006:
    case 1001:
    case 1011:
    case 1012:
    case 1013:
      return opened
        ? { message: "The connection to the server was lost.", retry: true }
        : { message: `Cannot reach the server at ${url}. Is the server (voice serve) running?`, retry: true };
    default:
      return { message: `The session ended with code ${code}${detail}.`, retry: RETRYABLE.has(code) || code < 4000 };
  }
}
