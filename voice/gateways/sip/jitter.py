"""An adaptive jitter buffer for one incoming audio stream: reorders, conceals loss, sizes itself.

Packets are placed on the RTP timestamp line (not by sequence number), so any packet duration
works (20 ms from phones, 30 ms from some gateways) and a sender's silence gaps are played as
silence. The playout clock pulls one frame per `frame_ms` with `pop()`:

- a slot with no audio while later audio is already here is a **loss**: it is concealed by
  repeating the last good frame, 6 dB quieter each time, then silence (a fading repeat, cheap
  and much less audible than a click of zeros);
- a slot with nothing at all after it is an **underrun**: the same concealment, but the playout
  position waits, so the delay grows by one frame (the buffer was too shallow);
- a packet arriving after its slot was played is **late** and dropped, and raises the target.

The target depth follows the interarrival jitter estimate of RFC 3550 §6.4.1 (frame + 3 J) plus a
boost from late packets that decays; when the buffer holds more than the target plus one frame
of hysteresis, one frame is dropped (at most every `adjust_interval_frames`) to cut the delay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voice.gateways.sip.rtp import ts_delta


@dataclass
class JitterSettings:
    clock_hz: int = 8000
    frame_ms: int = 20
    min_depth_ms: int = 40
    max_depth_ms: int = 200
    conceal_frames: int = 3          # fading repeats before silence
    adjust_interval_frames: int = 10  # at most one frame dropped per 200 ms
    late_boost_decay_frames: int = 250  # a late packet's extra depth lasts about 5 s

    @property
    def frame_samples(self) -> int:
        return self.clock_hz * self.frame_ms // 1000


@dataclass
class JitterStats:
    received: int = 0
    late: int = 0
    duplicates: int = 0
    lost_frames: int = 0      # concealed because audio after them had arrived
    underruns: int = 0        # times the buffer ran dry (the sender paused or was late)
    dropped_frames: int = 0   # removed to shrink the delay
    resyncs: int = 0


class JitterBuffer:
    """Owns the packets of one stream (int16 PCM at `clock_hz`); use from one thread."""

    def __init__(self, settings: JitterSettings | None = None):
        self.settings = settings or JitterSettings()
        self.stats = JitterStats()
        self._packets: dict[int, np.ndarray] = {}   # extended timestamp -> samples
        self._highest_ts: int | None = None          # extended timestamp of the newest packet
        self._highest_end = 0                         # end of the latest-ending packet
        self._play = 0                                # extended timestamp of the next sample out
        self._playing = False
        self._last_good: np.ndarray | None = None
        self._concealed_in_row = 0
        self._since_adjust = 0
        self._late_boost_frames = 0
        self._since_late = 0
        self._jitter_samples = 0.0                    # RFC 3550 J, in timestamp units
        self._prev_transit: float | None = None

    # ------------------------------------------------------------------ state

    @property
    def jitter_ms(self) -> float:
        return self._jitter_samples * 1000 / self.settings.clock_hz

    @property
    def target_ms(self) -> int:
        s = self.settings
        wanted = s.frame_ms + 3 * self.jitter_ms
        frames = -(-wanted // s.frame_ms) + self._late_boost_frames  # ceil
        return int(min(s.max_depth_ms, max(s.min_depth_ms, frames * s.frame_ms)))

    @property
    def depth_ms(self) -> float:
        """Audio buffered ahead of the playout position, ms (gaps included)."""
        if self._highest_ts is None:
            return 0.0
        return max(0, self._highest_end - self._play) * 1000 / self.settings.clock_hz

    # ------------------------------------------------------------------ input

    def put(self, timestamp: int, pcm: np.ndarray, arrival_s: float) -> bool:
        """Store one packet's samples. Returns False when it was dropped (late or duplicate)."""
        s = self.settings
        if self._highest_ts is None:
            ext = timestamp
            self._highest_ts, self._play, self._highest_end = ext, ext, ext + len(pcm)
        else:
            ext = self._highest_ts + ts_delta(timestamp, self._highest_ts)
            if abs(ext - self._play) > 10 * s.clock_hz:  # a new stream (re-INVITE, restart): start over
                self.stats.resyncs += 1
                self._packets.clear()
                self._playing = False
                self._highest_ts, self._play, self._highest_end = ext, ext, ext
                self._prev_transit = None
        self._update_jitter(ext, arrival_s)
        if ext + len(pcm) <= self._play and self._playing:
            self.stats.late += 1
            self._late_boost_frames = min(self._late_boost_frames + 1, s.max_depth_ms // s.frame_ms)
            self._since_late = 0
            return False
        if ext in self._packets:
            self.stats.duplicates += 1
            return False
        if not self._playing and ext < self._play:
            self._play = ext  # reordered before playout began: start at the earliest packet
        self._packets[ext] = pcm
        self._highest_ts = max(self._highest_ts, ext)
        self._highest_end = max(self._highest_end, ext + len(pcm))
        self.stats.received += 1
        return True

    def _update_jitter(self, ext: int, arrival_s: float) -> None:
        transit = arrival_s * self.settings.clock_hz - ext
        if self._prev_transit is not None:
            d = abs(transit - self._prev_transit)
            self._jitter_samples += (d - self._jitter_samples) / 16
        self._prev_transit = transit

    # ------------------------------------------------------------------ output

    def pop(self) -> np.ndarray:
        """The next `frame_ms` of audio (int16, a new array): real, concealed or silence."""
        s = self.settings
        n = s.frame_samples
        self._decay_boost()
        if not self._playing:
            if not self._packets or self.depth_ms < self.target_ms:
                return np.zeros(n, np.int16)
            self._playing = True
        out, covered = self._assemble(self._play, n)
        if covered == 0:
            if self._highest_end <= self._play:
                if self._concealed_in_row == 0:
                    self.stats.underruns += 1  # count episodes, not the silent frames of a pause
                return self._conceal(n)  # nothing after this slot yet: wait for it (delay grows)
            nxt = min((ts for ts in self._packets if ts >= self._play), default=None)
            if nxt is not None and nxt - self._play > s.max_depth_ms * s.clock_hz // 1000:
                self.stats.resyncs += 1  # a long gap (silence suppression): jump to the audio
                self._play = nxt
                self._playing = False  # buffer up to the target again, as at the start
                return np.zeros(n, np.int16)
            self.stats.lost_frames += 1
            self._play += n
            return self._conceal(n)
        self._play += n
        self._last_good, self._concealed_in_row = out, 0
        self._shrink_if_deep()
        return out

    def _assemble(self, start: int, n: int) -> tuple[np.ndarray, int]:
        out = np.zeros(n, np.int16)
        covered = 0
        for ts in sorted(self._packets):
            if ts >= start + n:
                break
            pcm = self._packets[ts]
            end = ts + len(pcm)
            if end > start:
                a, b = max(ts, start), min(end, start + n)
                out[a - start:b - start] = pcm[a - ts:b - ts]
                covered += b - a
            if end <= start + n:
                del self._packets[ts]
        return out, covered

    def _conceal(self, n: int) -> np.ndarray:
        self._concealed_in_row += 1
        if self._last_good is None or self._concealed_in_row > self.settings.conceal_frames:
            return np.zeros(n, np.int16)
        gain = 0.5 ** self._concealed_in_row
        return (self._last_good.astype(np.float32) * gain).astype(np.int16)

    def _shrink_if_deep(self) -> None:
        s = self.settings
        self._since_adjust += 1
        if self._since_adjust < s.adjust_interval_frames:
            return
        if self.depth_ms > self.target_ms + s.frame_ms:
            self._assemble(self._play, s.frame_samples)  # discard one frame
            self._play += s.frame_samples
            self.stats.dropped_frames += 1
            self._since_adjust = 0

    def _decay_boost(self) -> None:
        self._since_late += 1
        if self._late_boost_frames and self._since_late >= self.settings.late_boost_decay_frames:
            self._late_boost_frames -= 1
            self._since_late = 0
