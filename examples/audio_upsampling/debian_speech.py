"""Public recorded speech from Debian's packages, split for training and for held-out evaluation.

    python examples/audio_upsampling/debian_speech.py data/debian-speech

Downloads three packages with ``apt-get download`` (no root needed; nothing is installed) and
unpacks them with ``dpkg-deb -x`` into a scratch folder, then copies the recordings made at 32 kHz
or more (the ones with a real band above 8 kHz to score) into::

    DEST/train/<package>-<language>/...      # speakers: first-level subfolders
    DEST/held_out/<package>-<language>/...

- ``klettres-data``: letters and syllables spoken by native speakers of 20 languages (OGG, 44.1 and
  48 kHz).
- ``ktuberling-data``: single words in 15 languages (OGG and WAV).
- ``alsa-utils``: ALSA's speaker-test voice ("Front Left", ...; WAV, 48 kHz).

Held out: every alsa-utils recording and the klettres recordings of :data:`HELD_OUT_LANGUAGES`;
their speakers never occur in training (ktuberling's words in those languages are other
recordings). Training: the rest. The demo never needs any of this; it is for
``train.py --data DEST/train`` and ``evaluate.py --data DEST/held_out``.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile

PACKAGES = ("klettres-data", "ktuberling-data", "alsa-utils")
HELD_OUT_LANGUAGES = ("ar", "de", "en", "fr", "hu", "ru")
MIN_RATE = 32_000
_SUFFIXES = (".wav", ".ogg", ".flac")


def _recordings(root: pathlib.Path):
    """``(source, group, relative name)`` of every speech recording in the unpacked packages."""
    share = root / "usr" / "share"
    for path in sorted((share / "sounds" / "alsa").glob("*.wav")):
        if path.stem != "Noise":  # pink noise, not speech
            yield path, "alsa-en", path.name
    for path in sorted((share / "klettres").rglob("*")):
        if path.suffix.lower() in _SUFFIXES:
            language = path.relative_to(share / "klettres").parts[0]
            yield path, f"klettres-{language}", "_".join(path.relative_to(share / "klettres" / language).parts)
    for path in sorted((share / "ktuberling" / "sounds").rglob("*")):
        if path.suffix.lower() in _SUFFIXES and path.parent.name != "sounds":
            yield path, f"ktuberling-{path.parent.name}", path.name


def is_held_out(group: str) -> bool:
    """Whether recordings of ``group`` (``<package>-<language>``) are for evaluation only."""
    package, language = group.split("-", 1)
    return package == "alsa" or (package == "klettres" and language in HELD_OUT_LANGUAGES)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python examples/audio_upsampling/debian_speech.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("dest", help="folder to create (must not exist): gets train/ and held_out/")
    args = parser.parse_args(argv)
    dest = pathlib.Path(args.dest)
    if dest.exists():
        raise SystemExit(f"{dest} exists; give a new folder.")
    import soundfile

    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = pathlib.Path(scratch)
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=scratch, check=True)
        for deb in sorted(scratch_path.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch_path / "root")], check=True)
        counts = {"train": [0, 0.0], "held_out": [0, 0.0]}
        for path, group, name in _recordings(scratch_path / "root"):
            info = soundfile.info(str(path))
            if info.samplerate < MIN_RATE:
                continue
            split = "held_out" if is_held_out(group) else "train"
            target = dest / split / group / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            counts[split][0] += 1
            counts[split][1] += info.duration
    for split, (files, seconds) in counts.items():
        print(f"{dest / split}: {files} recordings, {seconds / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
