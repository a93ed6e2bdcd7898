// Counters a test (or a curious person in the console) reads from `window.voiceStats`.
// One plain object for the page's life (per-session fields are overwritten at each READY);
// app.js updates it from the session, the speaker and the playback worklet's reports.

export function createVoiceStats() {
  return {
    codec: null,
    sessionId: null,
    connectedAt: null, // performance.now() at READY
    framesSent: 0,
    framesReceived: 0, // AUDIO frames from the server
    lastAudioAt: null, // performance.now() of the last AUDIO frame
    audioBeforeCuts: [], // lastAudioAt when each interrupted event came (the server may pause first)
    samplesDecoded: 0,
    samplesPlayed: 0, // by the playback worklet, real samples only (not silence)
    bufferedSamples: 0,
    underruns: 0,
    playbackStarts: [], // performance.now() whenever the agent's voice starts to be heard
    flushes: 0, // flushes the playback worklet confirmed
    flushLatenciesMs: [], // interrupted EVENT received -> worklet confirmed the flush
    discardedSamples: 0, // dropped by flushes
    marksSent: 0,
    lastPlaybackMark: null, // played_samples of the last playback_mark sent
    rttMs: null,
    events: [], // {type, at} for every EVENT, at = performance.now()
    finals: [], // transcript_final texts
    agentTexts: [], // agent_text final texts
    interruptions: [], // interrupted events
    turnMetrics: [], // turn_metrics events
    errors: [], // human-readable problems shown on the page
  };
}
