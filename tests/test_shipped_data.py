"""The pure parts of scripts/shipped_data.py, the build of the shipped models' photos: the
licence lookup in a Debian copyright file and the tone map of HDR photos."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location("shipped_data", Path(__file__).parents[1] / "scripts/shipped_data.py")
shipped_data = sys.modules["shipped_data"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(shipped_data)

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright:
  2005-2020, Mario Kleiner
License: Expat

Files: Psychtoolbox/PsychDemos/SoundFiles
Copyright: someone
License: LGPL-2+

Files: Psychtoolbox/PsychDemos/OpenEXRImages
Copyright:  2004, Industrial Light & Magic
License: BSD-3

Files: Psychtoolbox/data/*
Copyright: someone else
License: GPL-3.0+ or MIT or WTFPL
"""


def test_debian_licence_last_match_wins_and_covers_folders():
    stanzas = shipped_data.debian_licences(COPYRIGHT)
    assert [lic for _, lic, _, _ in stanzas] == ["Expat", "LGPL-2+", "BSD-3", "GPL-3.0+ or MIT or WTFPL"]
    lic, holder, _ = shipped_data.debian_licence(stanzas, ["Psychtoolbox/PsychDemos/OpenEXRImages/Desk.exr"], "pkg")
    assert (lic, holder) == ("BSD-3", "2004, Industrial Light & Magic")
    assert shipped_data.debian_licence(stanzas, ["Psychtoolbox/PsychDemos/konijntjes1024x768.jpg"], "pkg")[0] == "Expat"
    # A folder pattern covers only that folder, not a sibling whose name starts the same.
    assert shipped_data.debian_licence(stanzas, ["Psychtoolbox/PsychDemos/OpenEXRImagesX/a.jpg"], "pkg")[0] == "Expat"


def test_debian_licence_accepts_a_permissive_alternative():
    stanzas = shipped_data.debian_licences(COPYRIGHT)
    assert shipped_data.debian_licence(stanzas, ["Psychtoolbox/data/dog.jpg"], "pkg")[0] == "GPL-3.0+ or MIT or WTFPL"


def test_debian_licence_stops_on_copyleft():
    stanzas = shipped_data.debian_licences(COPYRIGHT)
    with pytest.raises(SystemExit, match="LGPL-2\\+, not one of"):
        shipped_data.debian_licence(stanzas, ["Psychtoolbox/PsychDemos/SoundFiles/a.wav"], "pkg")


def test_tone_map_exposes_keeps_hue_and_clips_highlights():
    rng = np.random.default_rng(0)
    # A dim scene (log-average 0.001) with a bright lamp, its colours a fixed warm hue.
    y = np.exp(rng.normal(np.log(1e-3), 0.5, (64, 64)))
    y[:4, :4] = 50.0
    rgb = y[..., None] * np.array([1.6, 1.0, 0.45])
    out = shipped_data.tone_map(rgb).astype(float)
    assert 80 < np.median(out[..., 1]) < 150  # mid-grey exposure, not black
    assert (out[:4, :4] == 255).any()  # the lamp goes to white
    mid = out[8:, 8:][(out[8:, 8:] < 250).all(-1) & (out[8:, 8:] > 20).all(-1)]
    assert (mid[:, 0] > mid[:, 1]).all() and (mid[:, 1] > mid[:, 2]).all()  # warm stays warm
