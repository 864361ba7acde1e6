"""Colour choices for attribution overlays (no torch here, so the CLI's help can show them)."""

DEFAULT_COLORMAP = "inferno"  # monotonic lightness: readable over grayscale scans and in print
COLOUR_COLORMAP = "viridis"  # over colour photographs (fundus), a blue-green map stands apart from reds
COLORMAPS = ("inferno", "magma", "viridis", "cividis", "plasma")  # offered in the UI
BOX_COLOUR = (86, 180, 233)  # Okabe-Ito sky blue: visible over grayscale scans and the warm end of inferno
