"""The models the web UI offers: every .onnx under a folder that carries an img2img model card,
grouped into runs (one file per direction) for each tab, and the cache of their ONNX Runtime
sessions. Cards are read with img2img.card.read_onnx_card: discovery imports no torch."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from img2img import Img2ImgError
from img2img.card import ModelCard, read_onnx_card
from img2img.runtime import DEFAULT_TILE, Translator

DIRECTION_LABELS = {"AtoB": "A → B", "BtoA": "B → A"}

# Plain-words names of a task's two domains (A, B). Style and paired models say theirs in the run
# name instead (see domain_names).
TASK_DOMAINS = {"colorization": ("grey photo", "colour photo"), "sketch2photo": ("sketch", "photo")}
# The word a result file is named with (coffee.jpg -> coffee_colorized.png); other tasks use the
# name of the domain the result is in (chelsea.png -> chelsea_starry_night.png).
RESULT_WORDS = {"colorization": "colorized"}
# Run names that only say how a model was trained, not what it maps (the presets' default names).
GENERIC_NAMES = ("cyclegan", "pix2pix", "colorization", "sketch2photo")


def domain_names(task: str, name: str) -> tuple[str, str]:
    """(domain A, domain B) in plain words, for the UI's direction labels. Run names of the
    classic datasets say both ("horse2zebra" -> horse, zebra); a style model trained on one
    painting or artist is named after it ("starry_night" -> photo, Starry Night); a preset's
    default name says nothing, so A and B stay A and B."""
    if task in TASK_DOMAINS:
        return TASK_DOMAINS[task]
    base = name.lower().removesuffix("-cpu")
    pair = re.fullmatch(r"([a-z]+)2([a-z][a-z_]*)", base)
    if base in GENERIC_NAMES or (pair and pair[1] == pair[2]):  # pix2pix: a method, not a pair of domains
        return "A", "B"
    if pair:
        return pair[1], pair[2].replace("_", " ")
    if task == "style":
        return "photo", name.replace("_", " ").replace("-", " ").title()
    return "A", "B"


@dataclass(frozen=True)
class Route:
    """What one generator maps, in plain words: "photo → Starry Night"."""

    source: str
    target: str
    result_word: str  # results are saved as <input name>_<result_word>.png

    @property
    def label(self) -> str:
        return f"{self.source} → {self.target}"


def _slug(words: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", words.lower()).strip("_") or "result"


def route(card: ModelCard, name: str) -> Route:
    a, b = domain_names(card.task, name)
    source, target = (a, b) if card.direction == "AtoB" else (b, a)
    # Nameless domains (A, B) would name results "_b": the run and direction say more.
    word = RESULT_WORDS.get(card.task) or (_slug(target) if (a, b) != ("A", "B") else f"{_slug(name)}_{card.direction}")
    return Route(source, target, word)


@dataclass(frozen=True)
class ModelFile:
    path: Path
    card: ModelCard
    route: Route


@dataclass
class ModelGroup:
    """One choice in a tab's model list: an exported run, with one .onnx per direction
    (CycleGAN exports give two files, AtoB and BtoA; pix2pix gives one)."""

    label: str
    name: str                                     # the run's name (the card's `name`)
    files: dict[str, ModelFile] = field(default_factory=dict)  # direction -> file

    @property
    def directions(self) -> list[str]:
        return [d for d in DIRECTION_LABELS if d in self.files]


def run_name(card: ModelCard, path: Path) -> str:
    """The card's run name. Cards exported before it had a `name` field (the shipped models)
    hold it only in their config text; read from there (plain YAML: the validated config would
    import torch), else the file's stem."""
    if card.name:
        return card.name
    try:
        name = (yaml.safe_load(card.config) or {}).get("name")
    except (yaml.YAMLError, AttributeError):
        name = None
    return str(name) if name else path.stem


def discover_models(
    models_dir: Path | str, tab_tasks: Mapping[str, Sequence[str]]
) -> tuple[dict[str, list[ModelGroup]], list[str]]:
    """Every .onnx under models_dir (recursive, hidden folders skipped) that carries an img2img
    model card, grouped per tab; tab_tasks maps a tab's key to the card tasks it shows.
    Returns (tab key -> groups, notes on files skipped).

    Files of one run share their config (both CycleGAN directions are exported from one run
    directory), so the config text groups them; a second file for a direction already present
    starts a new group."""
    models_dir = Path(models_dir)
    by_tab: dict[str, list[ModelGroup]] = {key: [] for key in tab_tasks}
    skipped: list[str] = []
    if not models_dir.is_dir():
        return by_tab, [f"{models_dir} does not exist"]
    paths = sorted(
        p for p in models_dir.rglob("*.onnx")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(models_dir).parts)
    )  # fmt: skip
    groups: dict[tuple[str, str], list[ModelGroup]] = {}
    for path in paths:
        rel = path.relative_to(models_dir)
        try:
            card = read_onnx_card(path)
        except Img2ImgError as e:
            skipped.append(f"{rel}: {str(e).removeprefix(f'{path}: ')}")
            continue
        tab = next((key for key, tasks in tab_tasks.items() if card.task in tasks), None)
        if tab is None or card.direction not in DIRECTION_LABELS:
            skipped.append(f"{rel}: task {card.task!r}, direction {card.direction!r}: not something the UI can show")
            continue
        candidates = groups.setdefault((tab, card.task + card.config), [])
        group = next((g for g in candidates if card.direction not in g.files), None)
        if group is None:
            group = ModelGroup(label="", name=run_name(card, path))
            candidates.append(group)
            by_tab[tab].append(group)
        group.files[card.direction] = ModelFile(path, card, route(card, group.name))
    for tab_groups in by_tab.values():
        # Label = run name; runs sharing a name are told apart by their first file.
        names = [g.name for g in tab_groups]
        for g in tab_groups:
            first = g.files[g.directions[0]].path.relative_to(models_dir)
            g.label = g.name if names.count(g.name) == 1 else f"{g.name} ({first})"
    return by_tab, skipped


class SessionCache:
    """One Translator (one ONNX Runtime session) per model file, created on first use and kept.
    The lock makes concurrent first requests share one session instead of loading twice."""

    def __init__(self, device: str = "auto", threads: int | None = None, tile: int = DEFAULT_TILE):
        self._device, self._threads, self._tile = device, threads, tile
        self._sessions: dict[Path, Translator] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> Translator:
        with self._lock:
            if path not in self._sessions:
                self._sessions[path] = Translator(path, backend="onnx", device=self._device, threads=self._threads, tile=self._tile)
            return self._sessions[path]

    def loaded(self) -> list[Path]:
        with self._lock:
            return list(self._sessions)
