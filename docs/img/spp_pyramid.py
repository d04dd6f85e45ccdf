"""Draws docs/img/spp_pyramid.png: one region's window on a feature map split into 4x4, 2x2, 1x1.

Run: ``.venv/bin/python docs/img/spp_pyramid.py`` (matplotlib, no display needed).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

HEIGHT, WIDTH = 7, 10  # the region's window on the feature map, in cells
LEVELS = (4, 2, 1)
COLOURS = ("tab:red", "tab:blue", "tab:green")


def bins(length: int, n: int) -> list[tuple[int, int]]:
    """Half-open cell ranges of the n bins of a side of ``length`` cells (floor/ceil rule)."""
    return [((i * length) // n, -((-(i + 1) * length) // n)) for i in range(n)]


def main() -> None:
    fig, axes = plt.subplots(1, len(LEVELS), figsize=(4 * len(LEVELS), 3.4))
    for ax, n, colour in zip(axes, LEVELS, COLOURS, strict=True):
        for r in range(HEIGHT):
            for c in range(WIDTH):
                ax.add_patch(Rectangle((c, r), 1, 1, fill=False, lw=0.4, ec="0.6"))
        for i, (r0, r1) in enumerate(bins(HEIGHT, n)):
            for j, (c0, c1) in enumerate(bins(WIDTH, n)):
                inset = 0.06 * ((i + j) % 2)  # overlapping bins drawn slightly apart
                ax.add_patch(
                    Rectangle(
                        (c0 + inset, r0 + inset),
                        c1 - c0 - 2 * inset,
                        r1 - r0 - 2 * inset,
                        fill=True,
                        alpha=0.12,
                        fc=colour,
                        ec=colour,
                        lw=1.6,
                    )
                )
        ax.set_xlim(-0.2, WIDTH + 0.2)
        ax.set_ylim(HEIGHT + 0.2, -0.2)
        ax.set_aspect("equal")
        ax.set_xticks(range(WIDTH + 1))
        ax.set_yticks(range(HEIGHT + 1))
        ax.tick_params(labelsize=7)
        ax.set_title(f"level {n}: {n}x{n} bins -> C x {n * n} values", fontsize=10)
    fig.suptitle(
        f"one region, window of {HEIGHT}x{WIDTH} cells: bin i spans floor(i*h/n) .. "
        "ceil((i+1)*h/n)-1 (bins overlap by one cell where n does not divide h)",
        fontsize=9,
    )
    fig.tight_layout()
    out = Path(__file__).with_suffix(".png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
