"""The part of a chart screen the user moves (pure, shared by the run detail and compare): the zoom
(the newest ``last`` points of a reference curve), the pan back through history, and the value
cursor, all over the sorted positions of that reference curve (steps, seconds or fractions)."""

from __future__ import annotations

from dataclasses import dataclass

from tui.model.curves import nearest_step

MIN_ZOOM = 8  # the fewest points a zoomed view shows
CURSOR_MOVES = 60  # a cursor move is a 60th of the points on screen


@dataclass
class ChartWindow:
    """What the charts show: zoomed to ``last`` points (None: the whole curve), ``pan`` points
    hidden to the right of a zoomed view, the value cursor at ``cursor`` (None: off)."""

    last: int | None = None
    pan: int = 0
    cursor: float | None = None

    def window(self, xs: list[float]) -> tuple[int, int]:
        """The indices ``[lo, hi)`` of ``xs`` on screen (the pan clamped to the curve)."""
        n = len(xs)
        if not self.last or not n:
            return 0, n
        self.pan = min(max(self.pan, 0), max(0, n - self.last))
        end = n - self.pan
        return max(0, end - self.last), end

    def bounds(self, xs: list[float]) -> tuple[float, float] | None:
        """The first and last position on screen when zoomed (None: the whole curve)."""
        lo, hi = self.window(xs)
        return (xs[lo], xs[hi - 1]) if self.last and hi > lo else None

    def zoom_in(self, n: int) -> None:
        """Half as many points (at least :data:`MIN_ZOOM`), the newest kept."""
        self.last = max(MIN_ZOOM, (self.last or max(n, MIN_ZOOM)) // 2)

    def zoom_out(self, n: int) -> None:
        """Twice as many points; the whole curve (and no pan) once that covers it."""
        if self.last is not None:
            self.last = None if self.last * 2 >= n else self.last * 2
        if self.last is None:
            self.pan = 0

    def reset(self) -> None:
        self.last, self.pan, self.cursor = None, 0, None

    def move(self, xs: list[float], by: int) -> bool:
        """The cursor ``by`` moves of a 60th of the points on screen (the first press puts it on the
        newest); at a zoomed view's edge the view pans with it. False when there is no curve."""
        if not xs:
            return False
        lo, hi = self.window(xs)
        if self.cursor is None:
            i = hi - 1
        else:
            i = nearest_step(xs, self.cursor) + max(1, (hi - lo) // CURSOR_MOVES) * by
            if self.last and i < lo:
                self.pan += lo - i
            elif self.last and i >= hi:
                self.pan -= i - hi + 1
            i = min(max(i, 0), len(xs) - 1)
        self.cursor = xs[i]
        return True

    def here(self, xs: list[float]) -> int | None:
        """The index of the cursor's point, the cursor kept within the view (None: no cursor)."""
        lo, hi = self.window(xs)
        if self.cursor is None or hi <= lo:
            return None
        self.cursor = min(max(self.cursor, xs[lo]), xs[hi - 1])
        return nearest_step(xs, self.cursor)
