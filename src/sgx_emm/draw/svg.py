"""The drawing library behind the SVG pictures, imported only when one is drawn.

SVG output uses drawsvg, an optional dependency (`pip install 'sgx-emm[draw]'`);
the JSON and Mermaid outputs and the cost model work without it.
"""

from __future__ import annotations

from types import ModuleType

INSTALL_HINT = "pip install 'sgx-emm[draw]'"


class DrawingUnavailable(ImportError):
    """SVG output was asked for but drawsvg is not installed."""


def drawsvg() -> ModuleType:
    """The drawsvg module, or DrawingUnavailable saying how to install it."""
    try:
        import drawsvg as module  # type: ignore[import-untyped]
    except ImportError:
        raise DrawingUnavailable(
            f"drawing SVG needs the drawsvg package: {INSTALL_HINT} "
            "(Mermaid text and the Perfetto JSON need nothing extra)") from None
    assert isinstance(module, ModuleType)
    return module


def arrow_marker(d: ModuleType, colour: str, *, open_head: bool = False) -> object:
    """An arrowhead for line ends: filled for calls, open for faults."""
    marker = d.Marker(-0.1, -0.5, 0.9, 0.5, scale=7, orient="auto")
    if open_head:
        marker.append(d.Lines(-0.1, 0.5, 0.9, 0, -0.1, -0.5, fill="none", stroke=colour,
                              stroke_width=0.15))
    else:
        marker.append(d.Lines(-0.1, 0.5, -0.1, -0.5, 0.9, 0, fill=colour, close=True))
    return marker
