"""A lung-field reference region on a frontal chest X-ray, from intensity and shape alone, for judging maps.

This is a reference region, not a segmentation model: no training, no weights, a few thresholds and morphology
steps that anyone can check. It answers "does the map's evidence lie over the lungs, or over the neck, the heart or
the chest wall?" (`core.explain.scoring.score_against_region`: the share of a map's positive attribution inside it,
and whether its peak is inside).

Method (on a copy resized to `WORK_SIDE` x `WORK_SIDE` px, intensities stretched between their 1st and 99th
percentiles; the mask is resized back to the image's size):
1. blur (`BLUR_SIDE` of the side) so rib shadows do not cut a lung into pieces;
2. the body: everything except air outside the patient (darker than `AIR_LEVEL` and connected to the film's edge);
3. the midline: the brightest column band (spine and mediastinum) in the middle rows, searched in the central 40%
   of the width; a vertical strip there is cleared so the two lungs never merge through the trachea;
4. dark: at or below Otsu's threshold of the body's intensities (so exposure and window do not matter) and darker
   than the local mean (a blur of `LOCAL_SIDE` of the side): soft tissue beside the chest is darker than the
   ribs but not than its surroundings, an aerated lung is darker than both; a band of `EDGE_BAND` of the width
   along each side and a thin strip at the top are cleared, then the dark pixels are opened with a small disk;
5. candidate lungs: dark regions of at least `MIN_LUNG_SHARE` of the image, centred in the chest's rows, at a
   plausible distance from the midline, not a thin strip, not running along the film's side edge over more than
   `MAX_EDGE_CONTACT` of their height (air or soft tissue beside the patient; a lung that only touches the edge of a
   tightly cropped film is kept), not taller than `MAX_LUNG_HEIGHT` of the film;
6. a pair, one on each side of the midline: about as far from it (mirror symmetry within `MAX_ASYMMETRY` of the
   side), overlapping in height, of comparable size (the smaller at least `MIN_SIZE_RATIO` of the larger) and
   darkness; the largest such pair wins. When the whole-body threshold finds no pair (one lung hazier than the
   other), each half of the body gets its own Otsu threshold and the search is repeated;
7. each lung closed with a disk and its holes filled (vessels and hilar shadows stay inside); both together must
   cover `LUNGS_SHARE_RANGE` of the film.

Measured on 48 real films of the Kermany pediatric sample (16 normal, 16 bacterial, 16 viral pneumonia; see
tests/test_explain_lung.py): see the README's Explain section for the hit rate; all found masks were looked at.
When it fails: a lateral view (one dark region, not two side by side), heavy or bilateral opacification (a white
lung is not dark), a uniform or inverted image, a film whose lungs merge with the air beside the patient. Then
there is no lung field, with the reason, and maps are not scored against it: never a wrong-looking mask silently.
Only chest X-ray tasks get one (`applies_to`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

WORK_SIDE = 192  # px: the mask's working resolution (the shapes, not the details, matter)
BLUR_SIDE = 0.016  # of the side: blur before thresholding (about 3 px at WORK_SIDE)
AIR_LEVEL = 0.12  # of the stretched intensity range: air outside the patient is darker
LOCAL_SIDE = 0.125  # of the side: the scale of "darker than the surroundings"
MIDLINE_STRIP = 0.03  # of the side, each side of the midline: cleared so the lungs do not merge
EDGE_BAND = 0.05  # of the width along each side edge, cleared (labels, collimator edges, skin folds)
OPENING_SIDE = 0.012  # of the side: the opening disk's radius (cuts links a few pixels wide)
CLOSING_SIDE = 0.024  # of the side: the closing disk's radius (bridges vessels and rib shadows inside a lung)
MIN_LUNG_SHARE = 0.02  # each lung covers at least 2% of the image
MAX_LUNG_HEIGHT = 0.92  # of the film's height: a taller dark region runs along the patient's side
MAX_EDGE_CONTACT = 0.25  # of a region's height: longer contact with the side edge is air or soft tissue
MAX_ASYMMETRY = 0.15  # of the side: the lungs' distances from the midline differ by at most this
MIN_SIZE_RATIO = 0.3  # the smaller lung covers at least 30% of the larger
MAX_DARKNESS_GAP = 0.12  # of the stretched range: the lungs' mean intensities differ by at most this
LUNGS_SHARE_RANGE = (0.06, 0.65)  # both lungs together: a plausible share of a frontal film
NO_LUNG_FIELD = "no lung field found"
CHEST_XRAY_MODALITIES = ("x-ray", "xray", "cxr", "radiograph")


@dataclass(frozen=True, eq=False)
class LungField:
    """A lung-field reference: `mask` (bool, the image's (height, width)) or None with `reason` saying why none was
    found. `regions` counts the regions kept (2 when found)."""

    mask: np.ndarray | None
    reason: str = ""
    regions: int = 0

    @property
    def found(self) -> bool:
        return self.mask is not None

    @property
    def area_share(self) -> float:
        return float(self.mask.mean()) if self.mask is not None else float("nan")

    def describe(self) -> str:
        if self.found:
            return f"lung field: two regions, {self.area_share:.0%} of the image"
        return f"{NO_LUNG_FIELD}: {self.reason}"


def applies_to(task) -> bool:
    """Whether a task's images are chest X-rays (its modality, core.data.tasks.Task.modality): the only images a
    lung field is looked for on."""
    modality = str(getattr(task, "modality", "") or "").strip().lower()
    return any(word in modality for word in CHEST_XRAY_MODALITIES)


def _grayscale(image) -> np.ndarray:
    """float (H, W) in 0..255 from a PIL image or an array (RGB averaged)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("L"), dtype=float)
    array = np.asarray(image, dtype=float)
    if array.ndim == 3:
        array = array[:, :, :3].mean(axis=2)
    if array.ndim != 2:
        raise ValueError(f"a lung field needs a 2-D or RGB image, got shape {array.shape}")
    return array


def _disk(radius: int) -> np.ndarray:
    grid = np.arange(-radius, radius + 1)
    return (grid[:, None] ** 2 + grid[None, :] ** 2) <= radius ** 2


def _none(reason: str) -> LungField:
    return LungField(None, reason)


def _otsu(values: np.ndarray, bins: int = 128) -> float:
    """Otsu's threshold of `values`: the cut that maximises the between-class variance of a two-class split."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(hist)
    above = below[-1] - below
    mass = np.cumsum(hist * centres)
    mean_below = mass / np.maximum(below, 1)
    mean_above = (mass[-1] - mass) / np.maximum(above, 1)
    between = below * above * (mean_below - mean_above) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def _candidates(dark: np.ndarray, small: np.ndarray, midline: int) -> tuple[np.ndarray, list[dict]]:
    """The labelled dark regions and those that may be a lung (step 5), largest first."""
    side = dark.shape[0]
    labels, count = ndimage.label(dark)
    if count == 0:
        return labels, []
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index)
    centres = ndimage.center_of_mass(dark, labels, index)
    means = ndimage.mean(small, labels, index)
    boxes = ndimage.find_objects(labels)
    band = max(1, int(EDGE_BAND * side))
    edge = np.zeros_like(dark)
    edge[:, :band + 2] = edge[:, -band - 2:] = True
    edge_rows = {}  # label -> rows in which it touches the side edge
    rows, cols = np.nonzero(edge & dark)
    for label, row in set(zip(labels[rows, cols].tolist(), rows.tolist())):
        edge_rows[label] = edge_rows.get(label, 0) + 1
    kept = []
    for i in np.argsort(-sizes):
        if sizes[i] < MIN_LUNG_SHARE * side * side:
            break
        (centre_y, centre_x), (row_span, col_span) = centres[i], boxes[i]
        tall, wide = row_span.stop - row_span.start, col_span.stop - col_span.start
        if not (0.2 * side <= centre_y <= 0.75 * side and 0.08 * side <= abs(centre_x - midline) <= 0.38 * side):
            continue
        if tall > 5 * wide or tall > MAX_LUNG_HEIGHT * side or edge_rows.get(i + 1, 0) > MAX_EDGE_CONTACT * tall:
            continue
        kept.append({"label": i + 1, "size": float(sizes[i]), "x": centre_x, "mean": float(means[i]),
                     "rows": (row_span.start, row_span.stop), "left": centre_x < midline})
    return labels, kept


def _pair(kept: list[dict], midline: int, side: int) -> tuple[dict, dict] | None:
    """The largest left/right pair of candidates that looks like two lungs (step 6), or None."""
    pairs = []
    for a in [k for k in kept if k["left"]][:3]:
        for b in [k for k in kept if not k["left"]][:3]:
            overlap = min(a["rows"][1], b["rows"][1]) - max(a["rows"][0], b["rows"][0])
            shorter = min(a["rows"][1] - a["rows"][0], b["rows"][1] - b["rows"][0])
            if (abs((midline - a["x"]) - (b["x"] - midline)) > MAX_ASYMMETRY * side or overlap < 0.5 * shorter
                    or min(a["size"], b["size"]) < MIN_SIZE_RATIO * max(a["size"], b["size"])
                    or abs(a["mean"] - b["mean"]) > MAX_DARKNESS_GAP):
                continue
            pairs.append((min(a["size"], b["size"]), a["label"], b["label"], a, b))
    return max(pairs)[3:] if pairs else None


def lung_field(image) -> LungField:
    """The lung-field reference of one frontal chest X-ray (PIL image or array), see the module's method; a
    LungField without mask, with the reason, when the image does not show two lungs this method can find."""
    gray = _grayscale(image)
    height, width = gray.shape
    if height < 16 or width < 16:
        return _none(f"the image is too small ({width} x {height} px)")
    if float(np.ptp(gray)) < 8:
        return _none("the image is uniform (no contrast)")
    side = WORK_SIDE
    small = np.asarray(Image.fromarray(gray.astype(np.float32)).resize((side, side), Image.BILINEAR), dtype=float)
    small = ndimage.gaussian_filter(small, BLUR_SIDE * side)
    low, high = np.percentile(small, [1, 99])
    if high - low < 4:
        return _none("the image has almost no contrast")
    small = np.clip((small - low) / (high - low), 0, 1)
    # 2. the body: all but the air outside the patient (dark and connected to the film's edge)
    air, _ = ndimage.label(small < AIR_LEVEL)
    outside = np.unique(np.concatenate([air[0], air[-1], air[:, 0], air[:, -1]]))
    body = ndimage.binary_erosion(~np.isin(air, outside[outside > 0]), _disk(3))
    if body.mean() < 0.2:
        return _none("no body found (the image is mostly background)")
    # 3. the midline: the brightest column band of the middle rows
    middle = slice(int(0.25 * side), int(0.75 * side))
    inside = body[middle]
    profile = (small[middle] * inside).sum(axis=0) / np.maximum(inside.sum(axis=0), 1)
    profile = ndimage.gaussian_filter1d(profile, 0.025 * side)
    start = int(0.3 * side)
    midline = start + int(np.argmax(profile[start:int(0.7 * side)]))
    # 4. dark: below Otsu's threshold of the body and darker than the surroundings
    local = ndimage.gaussian_filter(small, LOCAL_SIDE * side)
    chest = body.copy()
    chest[:int(0.1 * side)] = chest[int(0.9 * side):] = False
    cleared = np.ones_like(body)
    strip, band = max(1, int(MIDLINE_STRIP * side)), max(1, int(EDGE_BAND * side))
    cleared[:, midline - strip:midline + strip] = False
    cleared[:, :band] = cleared[:, -band:] = False
    cleared[:int(0.03 * side)] = False
    opening = _disk(max(1, round(OPENING_SIDE * side)))
    thresholds = [np.full(side, _otsu(small[chest]))]  # one threshold for the body, then one per half
    halves = np.arange(side) < midline
    per_half = np.where(halves, _otsu(small[chest & halves[None, :]]), _otsu(small[chest & ~halves[None, :]]))
    thresholds.append(per_half)
    found, count = None, 0
    for threshold in thresholds:
        dark = (small <= threshold[None, :]) & (small <= local) & body & cleared
        dark = ndimage.binary_opening(dark, structure=opening)
        labels, kept = _candidates(dark, small, midline)
        count = max(count, len({k["left"] for k in kept}))
        found = _pair(kept, midline, side)
        if found is not None:
            break
    if found is None:
        if count < 2:
            return _none(f"dark regions of lung size on {count} side(s) of the chest, not two (a lateral view, or "
                         "an opacified lung?)")
        return _none("no two dark regions mirror each other across the midline (not a frontal view, or an "
                     "opacified lung?)")
    closing = _disk(max(1, round(CLOSING_SIDE * side)))
    pad = closing.shape[0]
    lungs = np.zeros_like(dark)
    for lung in found:
        region = np.pad(labels == lung["label"], pad)
        lungs |= ndimage.binary_fill_holes(ndimage.binary_closing(region, structure=closing))[pad:-pad, pad:-pad]
    share = float(lungs.mean())
    low, high = LUNGS_SHARE_RANGE
    if not low <= share <= high:
        return _none(f"the two regions cover {share:.0%} of the image, outside the plausible {low:.0%}-{high:.0%}")
    return LungField(mask_at(lungs, (height, width)), "", 2)


def mask_at(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask resized (nearest neighbour) to (height, width)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == tuple(shape):
        return mask
    picture = Image.fromarray(mask.astype(np.uint8) * 255).resize((int(shape[1]), int(shape[0])), Image.NEAREST)
    return np.asarray(picture) > 127
