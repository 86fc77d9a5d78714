"""The host at a glance (the workspace header): CPU %, memory used/total and, where NVML
(``nvidia-ml-py``) finds GPUs, each GPU's utilisation and memory; and the GPUs a run's
``system.jsonl`` records name (the run detail).

:class:`HostSampler` reads the figures as trainkit's heartbeat does for ``system.jsonl`` (psutil for
the CPU and memory, :class:`trainkit.runfolder.live.NvmlGpus` for the GPUs). :func:`steady` rounds
them and keeps the shown value until the new one moves by a whole step, so an idle screen never
repaints for noise; :func:`host_lines` and :func:`gpus_text` are the words. No Textual here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

GiB = 1024 ** 3
CPU_STEP = 5.0  # percent: the CPU and GPU utilisation are shown in steps of 5
MEM_STEP = 0.1 * GiB  # memory in tenths of a GiB at least, and in 1 % of the total (MEM_SHARE)
MEM_SHARE = 0.01
WINDOW = 4  # samples averaged (every 3 s: the last 12 s)


@dataclass(frozen=True)
class GpuFigures:
    index: int
    util_percent: float
    mem_used_bytes: float
    mem_total_bytes: float


@dataclass(frozen=True)
class HostFigures:
    cpu_percent: float
    mem_used_bytes: float
    mem_total_bytes: float
    gpus: tuple[GpuFigures, ...] = ()


class HostSampler:
    """This host's figures. The CPU % is over the time since the previous :meth:`sample` (the
    first one primes the counters: call it once before the figures are wanted). GPUs: every device
    NVML counts, when ``nvidia-ml-py`` is importable and finds any; none otherwise (no error)."""

    def __init__(self, gpus: bool = True) -> None:
        import psutil

        self._psutil = psutil
        psutil.cpu_percent(None)
        self._gpus = _all_gpus() if gpus else None

    def sample(self) -> HostFigures:
        ps = self._psutil
        mem = ps.virtual_memory()
        gpus: tuple[GpuFigures, ...] = ()
        if self._gpus is not None:
            try:
                gpus = tuple(gpu_figures(self._gpus.sample()))
            except Exception:  # the driver went away (a reset, a lost GPU): the header drops the GPUs
                self._gpus = None
        return HostFigures(ps.cpu_percent(None), float(mem.total - mem.available), float(mem.total), gpus)


def _all_gpus():
    """trainkit's NVML sampler over every GPU of the host; None without NVML or without a GPU."""
    try:
        import pynvml

        from trainkit.runfolder.live import NvmlGpus

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception:  # not installed, no driver, no permission: no GPU figures
        return None
    return NvmlGpus.open(list(range(count))) if count else None


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def gpu_figures(records) -> list[GpuFigures]:
    """The GPUs of a ``system.jsonl`` record's ``gpus`` list (or of NVML's sample, the same
    shape); entries without an integer index or a number are left out."""
    out = []
    for g in records if isinstance(records, list) else []:
        if not isinstance(g, dict) or not isinstance(g.get("index"), int) or isinstance(g.get("index"), bool):
            continue
        vals = [g.get(k) for k in ("util_percent", "mem_used_bytes", "mem_total_bytes")]
        out.append(GpuFigures(g["index"], *(float(v) if _num(v) else math.nan for v in vals)))
    return out


def _steady(shown: float | None, new: float, step: float) -> float:
    """``new`` rounded to ``step``; the ``shown`` value kept while ``new`` is within a step of it
    (a figure hovering at a rounding edge never flickers)."""
    if not math.isfinite(new):
        return new
    if shown is not None and math.isfinite(shown) and abs(new - shown) < step:
        return shown
    return round(new / step) * step


def mem_step(total: float) -> float:
    """Memory moves in 1 % of the total, 0.1 GiB at least (a busy host's page churn stays still)."""
    return max(MEM_STEP, total * MEM_SHARE) if math.isfinite(total) else MEM_STEP


def steady(shown: HostFigures | None, new: HostFigures) -> HostFigures:
    """The figures to show: ``new`` rounded (CPU and GPU utilisation to 5 %, memory to
    :func:`mem_step`), each one kept as ``shown`` had it while it moved by less than a step. Equal
    figures mean an unchanged header."""
    old = {g.index: g for g in shown.gpus} if shown is not None else {}
    gpus = []
    for g in new.gpus:
        o = old.get(g.index)
        gpus.append(replace(g, util_percent=_steady(o and o.util_percent, g.util_percent, CPU_STEP),
                            mem_used_bytes=_steady(o and o.mem_used_bytes, g.mem_used_bytes,
                                                   mem_step(g.mem_total_bytes))))
    return HostFigures(_steady(shown and shown.cpu_percent, new.cpu_percent, CPU_STEP),
                       _steady(shown and shown.mem_used_bytes, new.mem_used_bytes, mem_step(new.mem_total_bytes)),
                       new.mem_total_bytes, tuple(gpus))


def mean(samples: list[HostFigures]) -> HostFigures:
    """The samples averaged, figure by figure (the GPUs of the latest sample, each averaged over
    the samples that have it; the totals the latest's)."""
    last = samples[-1]

    def avg(values: list[float]) -> float:
        return sum(values) / len(values)

    gpus = []
    for g in last.gpus:
        same = [h for s in samples for h in s.gpus if h.index == g.index]
        gpus.append(replace(g, util_percent=avg([h.util_percent for h in same]),
                            mem_used_bytes=avg([h.mem_used_bytes for h in same])))
    return HostFigures(avg([s.cpu_percent for s in samples]), avg([s.mem_used_bytes for s in samples]),
                       last.mem_total_bytes, tuple(gpus))


class Shown:
    """What the header shows of a stream of samples: the mean of the last ``window`` samples,
    steadied (:func:`steady`). :meth:`add` says whether the figures shown changed."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.samples: list[HostFigures] = []
        self.figures: HostFigures | None = None

    def add(self, sample: HostFigures) -> bool:
        self.samples = (self.samples + [sample])[-self.window:]
        figures = steady(self.figures, mean(self.samples))
        changed = figures != self.figures
        self.figures = figures
        return changed


def gib(n: float) -> str:
    """Bytes as GiB: one decimal below 100 GiB (``5.1``), whole above (``512``); ``?`` unknown."""
    if not math.isfinite(n):
        return "?"
    v = n / GiB
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}".removesuffix(".0")


def pct(v: float) -> str:
    """A percentage three cells wide (`` 5 %``, ``100 %``): a line of figures keeps its width."""
    return f"{v:3.0f} %" if math.isfinite(v) else "  ? %"


def used_text(used: float, total: float) -> str:
    """``used`` in GiB as wide as ``total`` would be (one decimal below 100 GiB of total, whole
    above): a line of figures keeps its width whatever they are."""
    if not math.isfinite(total):
        return gib(used)
    decimals = 1 if total / GiB < 100 else 0
    shown = f"{used / GiB:.{decimals}f}" if math.isfinite(used) else "?"
    return shown.rjust(len(f"{total / GiB:.{decimals}f}"))


def used_of(used: float, total: float) -> str:
    """``used/total`` in GiB (:func:`used_text`, then the total)."""
    return f"{used_text(used, total)}/{gib(total)}"


def host_lines(f: HostFigures) -> tuple[str, str]:
    """The header's words, each of a width that depends on the host only (so a change of figures
    repaints the figures alone): ``CPU  35 %  mem  5.1/15.6 GiB``, and the GPUs in index order
    (empty without): ``GPU0  87 % 20.1/80 GiB  GPU1  90 %   40/80 GiB`` for one or two, for more
    ``GPU  87  90   5   0 %  mem 20.1 40 0.5 0 /80 GiB`` (the total once when every GPU has the same)."""
    host = f"CPU {pct(f.cpu_percent)}  mem {used_of(f.mem_used_bytes, f.mem_total_bytes)} GiB"
    gpus = f.gpus
    if not gpus:
        return host, ""
    if len(gpus) <= 2:
        return host, "  ".join(f"GPU{g.index} {pct(g.util_percent)} {used_of(g.mem_used_bytes, g.mem_total_bytes)} "
                               "GiB" for g in gpus)
    util = "GPU " + " ".join(pct(g.util_percent)[:-2] for g in gpus) + " %"
    totals = {gib(g.mem_total_bytes) for g in gpus}
    if len(totals) == 1:
        total = totals.pop()
        return host, f"{util}  mem " + " ".join(used_text(g.mem_used_bytes, g.mem_total_bytes) for g in gpus) + \
            f" /{total} GiB"
    return host, f"{util}  mem " + " ".join(used_of(g.mem_used_bytes, g.mem_total_bytes) for g in gpus) + " GiB"


def run_gpus(records: list[dict], look_back: int = 50) -> list[GpuFigures]:
    """The GPUs of a run: those of its latest ``system.jsonl`` record that names any (the records
    carry each GPU's index, utilisation and memory; no model name). Empty: a CPU run, or one whose
    trainer had no NVML."""
    for r in reversed(records[-look_back:]):
        gpus = gpu_figures(r.get("gpus"))
        if gpus:
            return gpus
    return []


def gpus_text(gpus: list[GpuFigures]) -> str:
    """``GPU 0, 1 (latest: GPU0 87 % 20.1/80 GiB, GPU1 ...)``; empty without GPUs."""
    if not gpus:
        return ""
    each = ", ".join(f"GPU{g.index} {pct(g.util_percent).lstrip()} {gib(g.mem_used_bytes)}/{gib(g.mem_total_bytes)} "
                     "GiB" for g in gpus)
    return f"GPU {', '.join(str(g.index) for g in gpus)} (latest: {each})"
