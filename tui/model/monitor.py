"""What the training monitor wrote in one run folder: the latest inference samples, the alerts and
the layer health (Textual-free). Each file is tailed by byte offset: opening reads only the end of
each file, :meth:`MonitorFiles.update` reads only what was appended since."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from trainkit.runfolder import ALERTS_FILE, LAYERS_FILE, SAMPLES_FILE
from trainkit.runfolder.files import JsonlTail
from tui.model.tail import tail_from_end

LATEST_SAMPLES = 12
ALERTS_KEPT = 200
LAYER_POINTS = 60
CHUNK = 1024 * 1024  # at most this much of one file per update (the rest on the next one)


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def is_sample(rec: dict) -> bool:
    return isinstance(rec.get("step"), int) and "output" in rec


def is_alert(rec: dict) -> bool:
    return isinstance(rec.get("kind"), str) and isinstance(rec.get("message"), str)


def is_layers(rec: dict) -> bool:
    return isinstance(rec.get("layers"), list)


@dataclass
class Layer:
    """One layer's newest values and its grad-norm history (oldest first)."""

    name: str
    grad_norm: float | None = None
    weight_norm: float | None = None
    update_ratio: float | None = None
    step: int | None = None
    grad_norms: deque = field(default_factory=lambda: deque(maxlen=LAYER_POINTS))

    @property
    def unhealthy(self) -> bool:
        g = self.grad_norm
        return g is not None and not math.isfinite(g) or self.update_ratio is not None and \
            math.isfinite(self.update_ratio) and self.update_ratio > 0.1


class MonitorFiles:
    """The monitor's three files of the run folder ``run``."""

    def __init__(self, run: str) -> None:
        self.run = str(run)
        recs, self._samples = tail_from_end(f"{self.run}/{SAMPLES_FILE}", LATEST_SAMPLES, is_sample)
        self.samples: deque[dict] = deque(recs, maxlen=LATEST_SAMPLES)
        recs, self._alerts = tail_from_end(f"{self.run}/{ALERTS_FILE}", ALERTS_KEPT, is_alert)
        self.alerts: deque[dict] = deque(recs, maxlen=ALERTS_KEPT)
        recs, self._layers = tail_from_end(f"{self.run}/{LAYERS_FILE}", LAYER_POINTS, is_layers)
        self.layers: dict[str, Layer] = {}
        for t in (self._samples, self._alerts, self._layers):
            t.max_bytes = CHUNK
        self._add_layers(recs)

    def _add_layers(self, recs: list[dict]) -> None:
        for rec in recs:
            for x in rec["layers"]:
                if not isinstance(x, dict) or not isinstance(x.get("name"), str):
                    continue
                layer = self.layers.setdefault(x["name"], Layer(x["name"]))
                layer.grad_norm, layer.weight_norm = _num(x.get("grad_norm")), _num(x.get("weight_norm"))
                layer.update_ratio, layer.step = _num(x.get("update_ratio")), rec.get("step")
                if layer.grad_norm is not None:
                    layer.grad_norms.append(layer.grad_norm)

    def update(self) -> set[str]:
        """Read what was appended; the names of the parts that changed (``samples``, ``alerts``,
        ``layers``). A replaced or truncated file is read again from its start."""
        changed = set()
        for part, tail, keep in (("samples", self._samples, is_sample), ("alerts", self._alerts, is_alert),
                                 ("layers", self._layers, is_layers)):
            recs = [r for r in tail.read() if keep(r)]
            if tail.reset:
                if part == "layers":
                    self.layers.clear()
                else:
                    getattr(self, part).clear()
                changed.add(part)
            if not recs:
                continue
            changed.add(part)
            if part == "layers":
                self._add_layers(recs)
            else:
                getattr(self, part).extend(recs)
        return changed

    @property
    def empty(self) -> bool:
        return not (self.samples or self.alerts or self.layers)


class SamplesHistory:
    """Every sample of ``samples.jsonl``, read incrementally from the start (``read_more`` reads at
    most ``chunk`` bytes per call; ``done`` says whether the end was reached)."""

    def __init__(self, run: str, chunk: int = CHUNK) -> None:
        self.tail = JsonlTail(f"{run}/{SAMPLES_FILE}", max_bytes=chunk)
        self.samples: list[dict] = []
        self.done = False

    def read_more(self) -> list[dict]:
        before = self.tail.offset
        recs = [r for r in self.tail.read() if is_sample(r)]
        if self.tail.reset:
            self.samples.clear()
        self.samples.extend(recs)
        self.done = self.tail.offset - before < (self.tail.max_bytes or 1) // 2
        return recs
