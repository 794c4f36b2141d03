"""Training and evaluation data: (low-rate input, full-rate target) pairs.

A target clip ``y`` at ``rate`` Hz becomes the input ``x = resample_poly(y, 1, factor)``: an
anti-aliased decimation (Kaiser-windowed FIR low-pass at the low rate's Nyquist, then keeping every
``factor``-th sample), so ``x`` has ``len(y) // factor`` samples and nothing above ``rate / (2 *
factor)`` Hz. The model must put back the band ``[rate / (2 * factor), rate / 2]``.

Every clip is a pure function of ``(seed, index)`` (``numpy.random.default_rng([seed, index])``),
so batch ``step`` of a run is a pure function of ``(seed, step)``: a resumed run sees exactly the
data an uninterrupted one would have, and the held-out clips (another seed) never occur in training.

Two sources:

- :class:`ProceduralDataset`: synthetic audio made so the high band is partly predictable from the
  low band: harmonic tones whose partials are phase-locked to the fundamental (so the partials above
  the low-rate Nyquist follow from the ones below), with vibrato, formant-like spectral envelopes
  and note envelopes; band-limited sawtooth chirps; noise bursts (whose high band is not
  predictable, only its level); and mixtures of these.
- :class:`AudioFolderDataset`: every WAV, FLAC and OGG file under a folder (any rate, mono or
  stereo), mixed to mono, resampled to ``rate`` and trimmed of leading and trailing silence. Whole
  recordings are held out, never parts of them: whole first-level subfolders (speakers) when the
  files sit in two or more of them, else whole files, about 10% chosen by a hash of their relative
  paths. Recordings are joined end to end (with short fades) rather than zero-padded, and clips are
  windows of the joined audio.
"""

from __future__ import annotations

import itertools
import math
import pathlib
from collections.abc import Sequence

import numpy as np
from scipy import signal
from scipy.io import wavfile

from examples.audio_upsampling import guards

# Seeds of held-out data are offset far from any training seed a user would pick, so the two
# streams of numpy.random.default_rng([seed, index]) never coincide.
HELD_OUT_SEED_OFFSET = 1_000_003


def decimate(y: np.ndarray, factor: int) -> np.ndarray:
    """Anti-aliased decimation along the last axis: ``(..., n * factor) -> (..., n)``."""
    if factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}.")
    return signal.resample_poly(y, 1, factor, axis=-1).astype(np.float32)


def resample(y: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling of ``y`` (last axis) from ``rate_in`` Hz to ``rate_out`` Hz."""
    if rate_in == rate_out:
        return np.asarray(y, np.float32)
    g = math.gcd(int(rate_in), int(rate_out))
    return signal.resample_poly(y, rate_out // g, rate_in // g, axis=-1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Procedural audio.


def _envelope(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """A note envelope: linear attack, exponential decay, optional release before the end."""
    t = np.arange(n) / rate
    attack = rng.uniform(0.002, 0.05)
    decay = rng.uniform(0.1, 2.0)
    env = np.minimum(t / attack, 1.0) * np.exp(-np.maximum(t - attack, 0.0) / decay)
    start = rng.integers(0, n // 4)
    return np.roll(env, start) * (np.arange(n) >= start)


def _formant_gain(rng: np.random.Generator, freqs: np.ndarray) -> np.ndarray:
    """Gain of a formant-like spectral envelope at ``freqs`` (Hz): a tilt plus 2-3 resonances."""
    tilt = rng.uniform(0.5, 1.5)
    gain = (np.maximum(freqs, 50.0) / 100.0) ** -tilt
    for _ in range(rng.integers(2, 4)):
        centre = rng.uniform(300.0, 6000.0)
        width = rng.uniform(80.0, 600.0)
        gain = gain * (1.0 + rng.uniform(2.0, 8.0) * np.exp(-0.5 * ((freqs - centre) / width) ** 2))
    return gain


def _tone(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """Phase-locked partials ``k * phi(t)`` of a vibrato fundamental under a formant envelope."""
    t = np.arange(n) / rate
    gain_at = _formant_gain(rng, np.arange(rate // 2 + 1, dtype=float))  # gain per whole Hz
    f0 = rng.uniform(80.0, 700.0)
    vibrato = 1.0 + rng.uniform(0.0, 0.03) * np.sin(2 * np.pi * rng.uniform(3.0, 7.0) * t + rng.uniform(0, 2 * np.pi))
    f_inst = f0 * vibrato
    phase = 2 * np.pi * np.cumsum(f_inst) / rate + rng.uniform(0, 2 * np.pi)
    # One phase pattern per tone (all-zero or all-(-pi/2) offsets: sine- or cosine-phase partials),
    # so the partials above the low-rate Nyquist are a fixed function of the ones below.
    offset = rng.choice([0.0, -np.pi / 2])
    nyquist = rate / 2
    out = np.zeros(n)
    for k in range(1, int(nyquist * 0.95 / f0) + 1):
        # Partials fade out before the target Nyquist, so vibrato never aliases them.
        fade = np.clip((0.95 * nyquist - k * f_inst) / (0.05 * nyquist), 0.0, 1.0)
        out += fade * gain_at[int(k * f0)] * np.sin(k * phase + offset)
    return out * _envelope(rng, n, rate)


def _chirp(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """A band-limited sawtooth whose fundamental sweeps exponentially."""
    t = np.arange(n) / rate
    f_start, f_end = rng.uniform(100.0, 1500.0, size=2)
    duration = n / rate
    f_inst = f_start * (f_end / f_start) ** (t / duration)
    phase = 2 * np.pi * np.cumsum(f_inst) / rate
    nyquist = rate / 2
    out = np.zeros(n)
    for k in range(1, int(0.95 * nyquist / min(f_start, f_end)) + 1):
        fade = np.clip((0.95 * nyquist - k * f_inst) / (0.05 * nyquist), 0.0, 1.0)
        out += fade * np.sin(k * phase) / k
    return out * _envelope(rng, n, rate)


def _noise_burst(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """Short bursts of coloured noise (one-pole low-pass), as in consonants or percussion."""
    white = rng.standard_normal(n)
    a = rng.uniform(0.0, 0.9)
    coloured = signal.lfilter([1.0 - a], [1.0, -a], white)
    env = np.zeros(n)
    for _ in range(rng.integers(1, 4)):
        start = rng.integers(0, n)
        length = int(rng.uniform(0.01, 0.15) * rate)
        decay = np.exp(-np.arange(length) / (length / 4))
        stop = min(n, start + length)
        env[start:stop] += decay[: stop - start]
    return coloured * env * 0.3


# --------------------------------------------------------------------------------------------
# Speech-like audio: a source-filter model.
#
# The high band of real speech is mostly unpredictable from the low band (aspiration and frication
# noise, partials of jittered glottal pulses), and its level follows the low band's spectral shape.
# A model trained only on sounds whose high band is predictable (phase-locked partials) learns to
# add a confident high band, which on real speech is content uncorrelated with the truth: error
# added on top of the band's absence. The speech-like source teaches the level and shape of a
# realistic high band; its band levels per 1 kHz, relative to the frame, match those of recorded
# speech within a few dB (median over voiced frames).

_GLOTTAL_OVERSAMPLE = 4
_FORMANT_LOW = np.array([250.0, 700.0, 1800.0, 3000.0, 3900.0])  # F1..F5 ranges (Hz)
_FORMANT_HIGH = np.array([900.0, 2300.0, 3100.0, 4200.0, 5200.0])
_FORMANT_BANDWIDTH = np.array([70.0, 90.0, 130.0, 200.0, 280.0])
_VOICED, _FRICATIVE, _VOICED_FRICATIVE, _PLOSIVE = range(4)
_SEGMENT_P = np.array([0.7, 0.12, 0.06, 0.12])


def _glottal_pulses(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """Differentiated Rosenberg glottal-flow pulses (the glottal source with lip radiation): ``(n,)``.

    The fundamental drifts slowly around 75-300 Hz with vibrato; every cycle gets its own amplitude
    (shimmer). Computed at ``4 * rate`` and decimated, so the pulses' sharp closures do not alias.
    """
    fine_rate, m = rate * _GLOTTAL_OVERSAMPLE, n * _GLOTTAL_OVERSAMPLE
    t = np.arange(m) / fine_rate
    base = rng.uniform(75.0, 300.0)
    drift = np.exp(np.interp(np.arange(m), np.linspace(0, m, 6), rng.normal(0.0, 0.12, 6)))
    vibrato = 1.0 + rng.uniform(0.0, 0.02) * np.sin(2 * np.pi * rng.uniform(3.0, 7.0) * t)
    cycles = np.cumsum(base * drift * vibrato) / fine_rate + rng.uniform()
    cycle = np.floor(cycles).astype(int)
    phase = cycles - cycle
    open_share = rng.uniform(0.4, 0.75)  # of each period, the glottis is open this long,
    opening = open_share * rng.uniform(0.55, 0.8)  # and spends this long opening
    closing = open_share - opening
    flow = np.where(
        phase < opening,
        0.5 * (1.0 - np.cos(np.pi * phase / opening)),
        np.where(phase < open_share, np.cos(0.5 * np.pi * (phase - opening) / closing), 0.0),
    )
    shimmer = 1.0 + rng.normal(0.0, 0.05, cycle.max() + 1)[cycle]
    derivative = np.diff(flow * shimmer, prepend=0.0) * fine_rate / base
    return signal.resample_poly(derivative, 1, _GLOTTAL_OVERSAMPLE)[:n]


def _vocal_tract_gain(rng: np.random.Generator, freqs: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Gain ``(F, T)`` at ``freqs`` ``(F, 1)`` of formant tracks ``(1, T, 5)``: parallel resonances.

    Each formant is a unit-height Lorentzian peak, 9-14 dB below the one before; a small floor and a
    speaker- and microphone-dependent spectral tilt complete the envelope.
    """
    drop = rng.uniform(9.0, 14.0)
    heights = 10.0 ** (-drop * np.arange(formants.shape[-1]) / 20.0)
    bandwidths = _FORMANT_BANDWIDTH * rng.uniform(0.7, 1.8)
    peaks = 1.0 / np.sqrt(1.0 + ((freqs[..., None] - formants) / (bandwidths / 2.0)) ** 2)
    tilt = (np.maximum(freqs, 250.0) / 2000.0) ** rng.uniform(-0.8, 0.4)
    return ((peaks * heights).sum(-1) + 10.0 ** -rng.uniform(2.5, 3.5)) * tilt


def _speech(rng: np.random.Generator, n: int, rate: int, nperseg: int = 512) -> np.ndarray:
    """Speech-like sound: phone-like segments of voicing, frication, both, or a closure and burst.

    Voiced segments are glottal pulses plus aspiration noise through moving formants (each segment
    has formant targets; the tracks glide between segment centres); fricatives are noise shaped
    around a 2.5-7 kHz centre; plosives are a closure ending in a short noise burst. Levels vary by
    30 dB across segments. Filtering is done frame by frame in the STFT domain.
    """
    bounds = [0]
    while bounds[-1] < n:
        bounds.append(bounds[-1] + int(rng.uniform(0.05, 0.25) * rate))
    bounds[-1] = n
    voicing, noise_level, noise_centre = np.zeros(n), np.zeros(n), np.zeros(n)
    for a, b in itertools.pairwise(bounds):
        kind = rng.choice(4, p=_SEGMENT_P)
        ramp = np.minimum(1.0, np.minimum(np.arange(b - a) + 1, b - a - np.arange(b - a)) / (0.015 * rate))
        level = 10.0 ** rng.uniform(-1.5, 0.0)
        centre = rng.uniform(2500.0, 7000.0)
        if kind == _VOICED:
            voicing[a:b] = level * ramp
        elif kind == _FRICATIVE:
            noise_level[a:b], noise_centre[a:b] = level * ramp * rng.uniform(0.02, 0.2), centre
        elif kind == _VOICED_FRICATIVE:
            voicing[a:b] = 0.6 * level * ramp
            noise_level[a:b], noise_centre[a:b] = 0.3 * level * ramp * rng.uniform(0.1, 0.6), centre
        else:
            burst = min(b - a, int(0.02 * rate))
            noise_level[b - burst : b] = 0.5 * level * np.exp(-np.arange(burst) / (0.005 * rate))
            noise_centre[a:b] = rng.uniform(1500.0, 5000.0)
    pulses = _glottal_pulses(rng, n, rate)
    aspiration = rng.standard_normal(n) * rng.uniform(0.05, 0.3) * 5.0 * np.abs(pulses).mean()
    freqs, times, voiced = signal.stft((pulses + aspiration) * voicing, fs=rate, nperseg=nperseg)
    _, _, noise = signal.stft(rng.standard_normal(n) * noise_level, fs=rate, nperseg=nperseg)
    at = np.clip((times * rate).astype(int), 0, n - 1)
    centres = (np.array(bounds[:-1]) + np.array(bounds[1:])) / 2.0
    targets = np.sort(rng.uniform(_FORMANT_LOW, _FORMANT_HIGH, size=(len(centres), 5)), axis=1)
    tracks = np.stack([np.interp(at, centres, targets[:, j]) for j in range(5)], -1) * rng.uniform(0.85, 1.2)
    tracks = np.minimum(tracks, 0.45 * rate)
    tract = _vocal_tract_gain(rng, freqs[:, None], tracks[None])
    centre = np.maximum(noise_centre[at], 1.0)[None]
    frication = np.maximum(np.exp(-0.5 * ((freqs[:, None] - centre) / (0.45 * centre)) ** 2), 0.15)
    out = signal.istft(voiced * tract + noise * frication, fs=rate, nperseg=nperseg)[1][:n]
    out = np.pad(out, (0, n - len(out)))
    return out + rng.standard_normal(n) * 10.0 ** rng.uniform(-5.0, -3.5)  # the recording's noise floor


_SOURCES = (_tone, _chirp, _noise_burst)
_SOURCE_P = np.array([0.55, 0.3, 0.15])


def procedural_clip(seed: int, index: int, length: int, rate: int, speech_share: float = 1.0) -> np.ndarray:
    """Clip ``index`` of stream ``seed``: ``(length,)`` float32 at ``rate`` Hz, peak in [0.3, 0.9].

    With probability ``speech_share`` a speech-like sound, else a music-like mixture of 1-3 sources
    drawn from {harmonic tone, chirp, noise burst}.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    if rng.uniform() < speech_share:
        out = _speech(rng, length, rate)
    else:
        out = np.zeros(length)
        for _ in range(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15])):
            source = _SOURCES[rng.choice(len(_SOURCES), p=_SOURCE_P)]
            out += rng.uniform(0.3, 1.0) * source(rng, length, rate)
    peak = np.max(np.abs(out))
    if peak > 0:
        out *= rng.uniform(0.3, 0.9) / peak
    return out.astype(np.float32)


class ProceduralDataset:
    """Synthetic clips, a pure function of ``(seed, index)``; held-out clips use another seed.

    Args:
      seed: training stream; held-out clips come from ``seed + HELD_OUT_SEED_OFFSET``.
      rate: target sample rate (Hz).
      factor: upsampling factor; inputs are at ``rate // factor`` Hz.
      clip_length: target samples per training clip (a multiple of ``factor``).
      speech_share: share of clips that are speech-like (the rest: tones, chirps, noise bursts).
    """

    def __init__(self, seed: int, rate: int, factor: int, clip_length: int, speech_share: float = 1.0):
        _check_clip(clip_length, factor)
        self.seed, self.rate, self.factor, self.clip_length = int(seed), int(rate), int(factor), int(clip_length)
        self.speech_share = float(speech_share)

    def targets(self, step: int, indices: Sequence[int], batch_size: int) -> np.ndarray:
        """Targets of batch ``step``: rows ``indices`` of it, ``(len(indices), clip_length)``."""
        return np.stack(
            [
                procedural_clip(self.seed, step * batch_size + i, self.clip_length, self.rate, self.speech_share)
                for i in indices
            ]
        )

    def held_out(self, count: int, length: int) -> np.ndarray:
        """``count`` held-out targets of ``length`` samples, ``(count, length)``."""
        _check_clip(length, self.factor)
        seed = self.seed + HELD_OUT_SEED_OFFSET
        return np.stack([procedural_clip(seed, i, length, self.rate, self.speech_share) for i in range(count)])


# --------------------------------------------------------------------------------------------
# WAV files.


# Suffixes of the audio files a folder is searched for (any case); soundfile reads each of them.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def read_audio(path: str | pathlib.Path) -> tuple[np.ndarray, int]:
    """``(samples, rate)`` of a WAV, FLAC or OGG file: float32 in about [-1, 1], ``(n,)`` or ``(n, channels)``.

    Integer PCM is scaled by ``1 / 2**(bits - 1)`` (libsndfile's convention, the inverse of
    :func:`write_wav`). Any file that is missing, unreadable, empty, at an impossible rate or
    holding NaN/Inf samples is a ValueError naming it.
    """
    import soundfile

    path = guards.existing_file(path, "an audio file (WAV, FLAC or OGG)")
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    except Exception as error:  # libsndfile reports anything from a bad header to a truncated stream
        raise ValueError(f"{path}: not a readable audio file ({type(error).__name__}: {error}).") from error
    _check_audio(path, rate, audio)
    return np.asarray(audio, np.float32), int(rate)


def _check_audio(path: pathlib.Path, rate: int, data: np.ndarray) -> None:
    problem = guards.integer_problem(rate, 1, guards.MAX_RATE)
    if problem:
        raise ValueError(f"{path}: sample rate {rate!r} in the header; {problem} Hz.")
    if data.ndim not in (1, 2) or data.size == 0:
        raise ValueError(f"{path}: holds no samples (shape {data.shape}); expected audio.")
    bad = np.flatnonzero(~np.isfinite(data.reshape(len(data), -1)).all(axis=1))
    if bad.size:
        raise ValueError(
            f"{path}: {bad.size} samples are NaN or infinite (the first at sample {bad[0]}); expected finite audio."
        )
    # Values this far outside [-1, 1] overflow float32 inside the model (and the losses).
    peak = float(np.max(np.abs(data)))
    if peak > 1e6:
        raise ValueError(f"{path}: peak sample {peak:g}; expected float audio in about [-1, 1].")


def write_wav(path: str | pathlib.Path, audio: np.ndarray, rate: int) -> None:
    """Write ``audio`` (``(n,)`` or ``(n, channels)``, float in [-1, 1]) as 16-bit PCM."""
    # The inverse of read_audio's scaling by 1/32768 (exact round trip up to half a step); +1.0 clips.
    pcm = np.clip(np.round(np.asarray(audio, np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    wavfile.write(str(path), int(rate), pcm)


def load_mono(path: str | pathlib.Path, rate: int) -> np.ndarray:
    """An audio file mixed down to mono and resampled to ``rate`` Hz: ``(n,)`` float32."""
    audio, file_rate = read_audio(path)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return resample(audio, file_rate, rate)


def trim_silence(audio: np.ndarray, rate: int, threshold_db: float = 40.0, frame_s: float = 0.02) -> np.ndarray:
    """``audio`` (``(n,)``) without its leading and trailing silence: ``(m,)``, ``m <= n``.

    Silence is a run of ``frame_s``-second frames whose RMS is more than ``threshold_db`` below the
    loudest frame's. What lies between the first and the last loud frame is kept whole (pauses
    inside speech are part of speech); an all-silent signal comes back empty.
    """
    frame = max(1, round(rate * frame_s))
    n_frames = -(-len(audio) // frame)
    padded = np.pad(np.asarray(audio, np.float64), (0, n_frames * frame - len(audio)))
    rms = np.sqrt(np.mean(padded.reshape(n_frames, frame) ** 2, axis=1))
    if n_frames == 0 or rms.max() == 0.0:
        return np.asarray(audio[:0], np.float32)
    loud = np.flatnonzero(rms >= rms.max() * 10.0 ** (-threshold_db / 20.0))
    return np.asarray(audio[loud[0] * frame : min(len(audio), (loud[-1] + 1) * frame)], np.float32)


# Held out: whole recordings (or speakers) whose hash falls below this fraction of the hash range.
HELD_OUT_FRACTION = 0.1
# Fade in and out of every recording where recordings are joined end to end, so joins do not click.
JOIN_FADE_S = 0.005


def held_out_hash(key: str) -> float:
    """Where ``key`` (a relative path) falls in [0, 1): a stable hash (CRC-32), not Python's salted ``hash``."""
    import zlib

    return zlib.crc32(key.encode("utf-8")) / 2**32


def choose_held_out(keys: Sequence[str], fraction: float = HELD_OUT_FRACTION) -> list[str]:
    """The keys (relative paths of files or speaker folders) to hold out, about ``fraction`` of them.

    A key is held out when :func:`held_out_hash` puts it below ``fraction``: whether a recording is
    held out depends on its own path only, not on the seed or on the other files, so adding files
    never moves the others. At least one key is held out (the one of the smallest hash when none
    falls below ``fraction``) and at least one is left (the one of the largest hash goes back to
    training when all fall below); ``keys`` needs two or more.
    """
    if len(keys) < 2:
        raise ValueError(f"need at least two recordings or speakers to hold out whole ones, got {len(keys)}.")
    order = sorted(keys, key=lambda k: (held_out_hash(k), k))
    held = [k for k in order if held_out_hash(k) < fraction] or order[:1]
    return sorted(held[: len(keys) - 1])


def join(recordings: Sequence[np.ndarray], rate: int, fade_s: float = JOIN_FADE_S) -> np.ndarray:
    """``recordings`` end to end, each faded in and out over ``fade_s`` seconds: ``(sum of lengths,)`` float32.

    The fade is a raised cosine that never reaches exactly zero, so a join is a short dip, not a
    click and not a run of digital silence.
    """
    out = np.empty(sum(len(audio) for audio in recordings), np.float32)
    start = 0
    for audio in recordings:
        part = out[start : start + len(audio)]  # written in place: one copy of the audio, not two
        part[:] = audio
        start += len(audio)
        n = min(max(1, round(rate * fade_s)), len(audio) // 2)
        if n:
            ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
            part[:n] *= ramp
            part[len(part) - n :] *= ramp[::-1]
    return out


class AudioFolderDataset:
    """Clips of the recordings under ``directory``: training windows of some, held-out windows of others.

    Every file :func:`audio_files` finds is read with :func:`load_mono` at ``rate`` and trimmed with
    :func:`trim_silence`; all-silent files are skipped. Whole recordings are held out, never parts of
    them, so the held-out scores measure recordings the model has not heard:

    - files in two or more first-level subfolders of ``directory``: the subfolders are taken as
      speakers and whole speakers are held out (a file directly in ``directory`` counts as a
      speaker of its own);
    - otherwise whole files are held out;
    - about :data:`HELD_OUT_FRACTION` of them, by :func:`choose_held_out` (a hash of the relative
      path: independent of the seed, and stable when files are added);
    - a folder with a single usable file holds out its last 10% instead, with a warning.

    Short recordings are not zero-padded: the training recordings are joined end to end by
    :func:`join` and training clip ``i`` of batch ``step`` is the window of ``clip_length`` samples
    at a position drawn from ``numpy.random.default_rng([seed, step * batch_size + i])``, so batch
    ``k`` is a pure function of ``(seed, k)``. :meth:`held_out` cuts consecutive windows of the
    joined held-out recordings.

    Attributes:
      train_files, held_out_files: relative paths (POSIX) of the recordings on each side.
      held_out_by: ``"speaker"``, ``"file"`` or ``"tail"`` (the single-file fallback).
      silent_files: relative paths of the all-silent files that were skipped.
      train_audio, held_audio: the joined recordings of each side, ``(n,)`` float32 at ``rate``.
    """

    def __init__(self, directory: str | pathlib.Path, seed: int, rate: int, factor: int, clip_length: int):
        import sys

        _check_clip(clip_length, factor)
        self.seed, self.rate, self.factor, self.clip_length = int(seed), int(rate), int(factor), int(clip_length)
        folder, self._directory = pathlib.Path(directory), str(directory)
        recordings, self.silent_files = {}, []
        for path in audio_files(folder):
            key = path.relative_to(folder).as_posix()
            audio = trim_silence(load_mono(path, rate), rate)
            if len(audio):
                recordings[key] = audio.copy()  # not a view: the silence trimmed off is freed
            else:
                self.silent_files.append(key)
        if not recordings:
            raise ValueError(
                f"data={str(directory)!r}: all {len(self.silent_files)} audio files under this folder are silent; "
                "expected recordings with sound."
            )
        if self.silent_files:
            print(f"note: skipped {len(self.silent_files)} all-silent files under {str(directory)!r}.", file=sys.stderr)

        # A file's unit is its first-level subfolder (speaker) when there are two or more of them.
        unit = {key: key.split("/")[0] for key in recordings}
        speakers = {u for key, u in unit.items() if "/" in key}
        if len(speakers) < 2:
            unit = {key: key for key in recordings}
        if len(recordings) == 1:
            ((key, audio),) = recordings.items()
            split = int(len(audio) * 0.9)
            self.held_out_by, self.train_files, self.held_out_files = "tail", [key], [key]
            self.train_audio, self.held_audio = join([audio[:split]], rate), join([audio[split:]], rate)
            print(
                f"warning: {str(directory)!r} holds a single usable audio file ({key}): holding out its last 10% "
                "instead of whole recordings, so the held-out scores are on the recording trained on; add more files.",
                file=sys.stderr,
            )
        else:
            held_units = set(choose_held_out(sorted(set(unit.values()))))
            self.held_out_by = "speaker" if len(speakers) >= 2 else "file"
            self.held_out_files = [key for key in recordings if unit[key] in held_units]
            self.train_files = [key for key in recordings if unit[key] not in held_units]
            self.train_audio = join([recordings[key] for key in self.train_files], rate)
            self.held_audio = join([recordings[key] for key in self.held_out_files], rate)
        if len(self.train_audio) < self.clip_length:
            raise ValueError(
                f"data={str(directory)!r}: the training audio is {len(self.train_audio) / rate:.2f} s "
                f"({len(self.train_files)} files after trimming silence), shorter than one training clip of "
                f"{self.clip_length} samples ({self.clip_length / rate:.2f} s at {rate} Hz); add recordings "
                "or lower --clip-length."
            )

    def targets(self, step: int, indices: Sequence[int], batch_size: int) -> np.ndarray:
        """Targets of batch ``step``: rows ``indices`` of it, ``(len(indices), clip_length)``."""
        rows = []
        for i in indices:
            rng = np.random.default_rng([self.seed, step * batch_size + i])
            start = int(rng.integers(0, len(self.train_audio) - self.clip_length + 1))
            rows.append(self.train_audio[start : start + self.clip_length])
        return np.stack(rows).astype(np.float32)

    def held_out(self, count: int, length: int) -> np.ndarray:
        """Up to ``count`` consecutive windows of ``length`` samples of the held-out audio, ``(n, length)``.

        Fewer than ``count`` when the held-out audio is shorter than ``count * length`` samples; a
        ValueError when not even one window fits.
        """
        _check_clip(length, self.factor)
        n = min(int(count), len(self.held_audio) // length)
        if n < 1:
            what = "its last 10%" if self.held_out_by == "tail" else f"{len(self.held_out_files)} held-out files"
            fits = len(self.held_audio) // self.factor * self.factor
            advice = f"lower --eval-length to at most {fits} or add recordings" if fits >= 1024 else "add recordings"
            raise ValueError(
                f"data={self._directory!r}: the held-out audio ({what}, after trimming silence) is "
                f"{len(self.held_audio) / self.rate:.2f} s, shorter than one evaluation clip: --eval-length={length} "
                f"needs {length / self.rate:.2f} s at {self.rate} Hz; {advice}."
            )
        return self.held_audio[: n * length].reshape(n, length).astype(np.float32)


def audio_files(directory: str | pathlib.Path) -> list[pathlib.Path]:
    """The audio files (:data:`AUDIO_SUFFIXES`, any case) under ``directory``, recursively, sorted.

    A ValueError names the folder when it is missing, not a folder, or holds no audio file.
    """
    folder = pathlib.Path(directory)
    if not folder.is_dir():
        raise ValueError(
            f"data={str(directory)!r}: "
            + ("not a folder" if folder.exists() else "no such folder")
            + "; expected a folder of audio files ("
            + ", ".join(AUDIO_SUFFIXES)
            + ")."
        )
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(
            f"data={str(directory)!r}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found under this folder."
        )
    return paths


def _check_clip(length: int, factor: int) -> None:
    if length < factor or length % factor:
        raise ValueError(f"clip length must be a positive multiple of factor={factor}, got {length}.")
