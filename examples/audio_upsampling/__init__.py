"""Audio upsampling (bandwidth extension) with convtrans's ``Conv1DTranspose``.

Modules, one concern each:

- :mod:`.data`: the procedural dataset (speech-like source-filter sound; optionally tones, chirps,
  noise bursts) and a folder of WAV, FLAC and OGG recordings, both made into (low-rate input,
  full-rate target) pairs by anti-aliased decimation; batches are a deterministic function of
  ``(seed, step)``.
- :mod:`.model`: the generator (windowed-sinc interpolation plus a learned residual, its estimate of
  the band the input lacks added with a gain).
- :mod:`.losses`: waveform L1 and the multi-resolution STFT loss.
- :mod:`.metrics`: SNR and log-spectral distance, in dB.
- :mod:`.train`: the command-line training script (``python examples/audio_upsampling/train.py``).
- :mod:`.infer`: chunked, batched, jit-compiled upsampling of audio files and folders of any length
  (``python examples/audio_upsampling/infer.py``).
- :mod:`.evaluate`: scores of a trained run on audio files against ``resample_poly`` and linear
  interpolation (``python examples/audio_upsampling/evaluate.py``).
- :mod:`.debian_speech`: public recorded speech from Debian's packages, split into training and
  held-out folders (for ``--data`` and :mod:`.evaluate`; the demo does not need it).

Each tool runs as a file from any working directory, or as ``python -m examples.audio_upsampling.<tool>``
from the repository root.
"""
