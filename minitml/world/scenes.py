r"""Scenes: what the camera sees, one frame per 200 ms micro-turn, drawn with numpy.

A scene is a few small integers per micro-turn (`SceneState`): the colour of a
lamp, a coloured shape on a screen, an object held up by a hand, and a backdrop
shade. `render` turns one state into an RGB uint8 frame of the size a
`VisionConfig` asks for (80x80 in the tiny preset). The layout puts each thing
in its own 40x40 patch of the tiny frame, so one patch token carries it:

    +---------+---------+
    |  lamp   |  shape  |      top-left: a lamp whose bulb is off or lit in a colour
    |  (o)    |   /\    |      top-right: nothing, or a coloured shape
    +---------+---------+
    |    object held    |      bottom: nothing, or an object held up by a hand
    |    up by a hand   |      (an arm reaching in from the bottom edge)
    +---------+---------+

Everything is drawn from boolean masks computed once per frame size, so a
frame costs a handful of numpy assignments, and `render_all` draws each
distinct state only once (a scene changes a few times per dialogue, not every
micro-turn).

    s = SceneState(light=LIGHTS.index("green"), shape=SHAPES.index("star"), shape_colour=1)
    frame = render(s, VisionConfig())           # (80, 80, 3) uint8
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from minitml.config import VisionConfig

# Names are vocabulary words (index 0 means "nothing there").
LIGHTS = ("off", "red", "green", "blue", "yellow", "orange", "purple", "white")
COLOURS = LIGHTS[1:]  # colours a shape can have (index into COLOURS)
SHAPES = ("none", "circle", "square", "triangle", "diamond", "star")
OBJECTS = ("none", "apple", "banana", "cup", "book", "key")
N_BACKDROPS = 4

RGB = {
    "off": (55, 55, 60), "red": (220, 40, 40), "green": (40, 190, 70), "blue": (50, 90, 230),
    "yellow": (240, 220, 40), "orange": (250, 140, 30), "purple": (150, 60, 200),
    "white": (245, 245, 245),
}
BACKDROPS = ((200, 200, 200), (185, 195, 210), (210, 200, 185), (190, 205, 190))
_HOUSING = (30, 30, 35)
_SKIN = (225, 175, 120)
_BROWN = (120, 75, 35)
_LEAF = (60, 150, 50)
_PAGE = (250, 250, 240)
_GOLD = (215, 175, 60)
_CUP = (235, 235, 245)
_BOOK = (40, 70, 160)

# Where each thing is centred, as (y, x) fractions of the frame's height and width.
CENTRES = {"light": (0.25, 0.25), "shape": (0.25, 0.75), "object": (0.72, 0.5)}


@dataclass(frozen=True)
class SceneState:
    light: int = 0  # index into LIGHTS (0 = off)
    shape: int = 0  # index into SHAPES (0 = no shape)
    shape_colour: int = 0  # index into COLOURS
    object: int = 0  # index into OBJECTS (0 = empty hand, no arm drawn)
    backdrop: int = 0  # 0..N_BACKDROPS-1, wall shade; varies between dialogues, means nothing

    def describe(self) -> str:
        parts = [f"light {LIGHTS[self.light]}"]
        if self.shape:
            parts.append(f"{COLOURS[self.shape_colour]} {SHAPES[self.shape]}")
        if self.object:
            parts.append(f"holding {OBJECTS[self.object]}")
        return ", ".join(parts)


@lru_cache(maxsize=8)
def _masks(height: int, width: int) -> dict[str, np.ndarray]:
    """Boolean (H, W) masks of every drawable part, for one frame size."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = (y + 0.5) / height, (x + 0.5) / width  # pixel centres in [0, 1]
    m: dict[str, np.ndarray] = {}

    # The lamp: a dark housing with a round bulb, centred in the top-left quarter.
    cy, cx = CENTRES["light"]
    m["housing"] = (np.abs(y - cy) < 0.21) & (np.abs(x - cx) < 0.21)
    m["bulb"] = (y - cy) ** 2 + (x - cx) ** 2 < 0.16**2

    # Shapes, centred in the top-right quarter; coordinates relative to the centre.
    dy, dx, r = y - CENTRES["shape"][0], x - CENTRES["shape"][1], 0.17
    angle, radius = np.arctan2(dy, dx), np.sqrt(dy**2 + dx**2)
    m["circle"] = radius < r
    m["square"] = (np.abs(dx) < 0.8 * r) & (np.abs(dy) < 0.8 * r)
    m["triangle"] = (dy < 0.75 * r) & (dy > -r) & (np.abs(dx) < 0.55 * (dy + r))
    m["diamond"] = np.abs(dx) + np.abs(dy) < r
    star_edge = r * (0.45 + 0.55 * ((np.cos(5 * (angle + np.pi / 2)) + 1) / 2) ** 2)
    m["star"] = radius < star_edge

    # The hand: an arm up from the bottom edge, a palm under the object.
    m["arm"] = (np.abs(x - 0.5) < 0.07) & (y > 0.85)
    m["palm"] = ((y - 0.88) / 0.06) ** 2 + ((x - 0.5) / 0.12) ** 2 < 1
    oy, ox = y - CENTRES["object"][0], x - CENTRES["object"][1]  # the object's centre
    m["apple"] = oy**2 + ox**2 < 0.14**2
    m["apple_stem"] = (np.abs(ox) < 0.015) & (oy > -0.19) & (oy < -0.12)
    m["apple_leaf"] = ((oy + 0.17) / 0.03) ** 2 + ((ox - 0.05) / 0.05) ** 2 < 1
    m["banana"] = ((oy + 0.1) ** 2 + ox**2 < 0.22**2) & ((oy + 0.2) ** 2 + ox**2 > 0.24**2) & (oy > -0.05)
    m["cup"] = (np.abs(ox + 0.03) < 0.09 - 0.15 * oy) & (np.abs(oy) < 0.13)  # wider at the rim
    m["cup_handle"] = (np.abs(np.sqrt(oy**2 + (ox - 0.09) ** 2) - 0.06) < 0.02) & (ox > 0.07)
    m["book"] = (np.abs(ox) < 0.16) & (np.abs(oy) < 0.12)
    m["book_pages"] = (np.abs(ox - 0.13) < 0.02) & (np.abs(oy) < 0.1)
    m["key"] = (np.abs(np.sqrt(oy**2 + (ox + 0.12) ** 2) - 0.06) < 0.025)
    m["key_shaft"] = (np.abs(oy) < 0.02) & (ox > -0.07) & (ox < 0.18)
    m["key_teeth"] = (oy > 0) & (oy < 0.06) & (((ox > 0.08) & (ox < 0.11)) | ((ox > 0.14) & (ox < 0.17)))
    return m


# Object drawings: (mask name, colour) painted in order.
_OBJECT_PARTS = {
    "apple": (("apple", RGB["red"]), ("apple_stem", _BROWN), ("apple_leaf", _LEAF)),
    "banana": (("banana", RGB["yellow"]),),
    "cup": (("cup_handle", _CUP), ("cup", _CUP)),
    "book": (("book", _BOOK), ("book_pages", _PAGE)),
    "key": (("key", _GOLD), ("key_shaft", _GOLD), ("key_teeth", _GOLD)),
}


def render(state: SceneState, vision_cfg: VisionConfig | None = None) -> np.ndarray:
    """One frame: (frame_height, frame_width, 3) uint8, a pure function of the state and size."""
    v = vision_cfg or VisionConfig()
    m = _masks(v.frame_height, v.frame_width)
    frame = np.empty((v.frame_height, v.frame_width, 3), dtype=np.uint8)
    frame[:] = BACKDROPS[state.backdrop % N_BACKDROPS]
    frame[m["housing"]] = _HOUSING
    frame[m["bulb"]] = RGB[LIGHTS[state.light]]
    if state.shape:
        frame[m[SHAPES[state.shape]]] = RGB[COLOURS[state.shape_colour]]
    if state.object:
        frame[m["arm"]] = _SKIN
        frame[m["palm"]] = _SKIN
        for part, colour in _OBJECT_PARTS[OBJECTS[state.object]]:
            frame[m[part]] = colour
    return frame


def seen_names(state: SceneState, vision_cfg: VisionConfig | None = None) -> list[str | None]:
    """The name of what each patch shows, row-major, None where nothing is: the seen head's
    targets. The patch holding a thing's centre names it: the lamp by its colour ('off'
    when dark), the shape and the object by what they are. In the tiny 2x2 frame:
    [light colour, shape, None, object] (the object's centre sits on the column edge)."""
    v = vision_cfg or VisionConfig()
    rows, cols = v.grid
    names: list[str | None] = [None] * (rows * cols)
    things = {"light": LIGHTS[state.light],
              "shape": SHAPES[state.shape] if state.shape else None,
              "object": OBJECTS[state.object] if state.object else None}
    for thing, name in things.items():
        y, x = CENTRES[thing]
        row, col = int(y * v.frame_height) // v.patch_size, int(x * v.frame_width) // v.patch_size
        names[row * cols + col] = name
    return names


def render_all(states: list[SceneState], vision_cfg: VisionConfig | None = None) -> np.ndarray:
    """(n_turns, H, W, 3) uint8: one frame per micro-turn; each distinct state is drawn once."""
    v = vision_cfg or VisionConfig()
    drawn: dict[SceneState, np.ndarray] = {}
    out = np.empty((len(states), v.frame_height, v.frame_width, 3), dtype=np.uint8)
    for t, s in enumerate(states):
        if s not in drawn:
            drawn[s] = render(s, v)
        out[t] = drawn[s]
    return out
