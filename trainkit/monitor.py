"""The training monitor: inference samples, alerts and layer health, one implementation for
trainkit's own engine and the callbacks for other trainers.

The trainer calls it at step boundaries (:meth:`Monitor.after_step`, with
:meth:`Monitor.before_update` just before the optimizer step on a layer-health step) and from its
heartbeat thread (:meth:`Monitor.check_stall`); every part is configured under ``monitor:`` and can
be switched off. What it finds goes to append-only files of the run folder:

* ``samples.jsonl``: every ``samples_every_steps`` the model answers a fixed set of prompts (the
  task's, the profile's, or a ``prompts`` file) through ``sampler``: ``step, epoch, prompt, output,
  expected, correct, pattern_ok, t``. The sampler runs with the model in eval mode and the RNG
  forked, so training is unchanged by sampling (a run with samples on is bit-identical to one with
  samples off). The share of outputs that follow the profile's pattern (``pattern_rate``) and the
  share that are correct (``sample_accuracy``) go into that step's record of ``metrics.jsonl``.
* ``alerts.jsonl``: ``kind`` (``nonfinite_loss``, ``loss_spike``, ``exploding_gradients``,
  ``throughput_collapse``, ``stall``), ``step, value, threshold, message, t``; the latest few are in
  ``training_status.json`` under ``alerts``. A non-finite loss can stop the run (``failed``).
* ``layers.jsonl``: every ``layers_every_steps``, per named module with parameters, its gradient
  norm, weight norm and update ratio (``||w_after - w_before|| / ||w_before||``).

Pure decisions (:class:`AlertRules`) are apart from the I/O; torch is used only on tensors the
trainer hands over.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainkit.evaluation.scoring import normalize
from trainkit.runfolder import RunPaths
from trainkit.runfolder.files import JsonlWriter

#: ``sampler(prompts) -> outputs``: the model's raw answers to the prompt texts, in order.
Sampler = Callable[[list[str]], list[str]]


@dataclass
class Alert:
    kind: str
    step: int
    value: float | None
    threshold: float | None
    message: str
    t: float = field(default_factory=time.time)

    def record(self) -> dict:
        value = self.value if self.value is None or math.isfinite(self.value) else str(self.value)
        return {"kind": self.kind, "step": self.step, "value": value, "threshold": self.threshold,
                "message": self.message, "t": self.t}


# --------------------------------------------------------------------------------------------
# the rules (pure)


class AlertRules:
    """Decides alerts from the logged values of successive steps; no I/O."""

    def __init__(self, *, spike_factor: float, window: int, grad_norm_max: float, throughput_drop: float,
                 stall_s: float) -> None:
        self.spike_factor = spike_factor
        self.grad_norm_max = grad_norm_max
        self.throughput_drop = throughput_drop
        self.stall_s = stall_s
        self.losses: deque[float] = deque(maxlen=window)
        self.rates: deque[float] = deque(maxlen=window)
        self._spiking = False
        self._collapsed = False

    def on_step(self, step: int, loss: float | None, grad_norm: float | None,
                throughput: float | None) -> list[Alert]:
        out: list[Alert] = []
        if loss is not None and not math.isfinite(loss):
            out.append(Alert("nonfinite_loss", step, loss, None, f"loss is {loss} at step {step}"))
        elif loss is not None:
            avg = sum(self.losses) / len(self.losses) if len(self.losses) >= 5 else None
            spike = avg is not None and avg > 0 and loss > self.spike_factor * avg
            if spike and not self._spiking:  # one alert per spike, not one per step of it
                out.append(Alert("loss_spike", step, loss, self.spike_factor * avg,
                                 f"loss {loss:.4g} is {loss / avg:.1f}x its moving average {avg:.4g}"))
            self._spiking = spike
            if not spike:
                self.losses.append(loss)
        if grad_norm is not None and (not math.isfinite(grad_norm) or grad_norm > self.grad_norm_max):
            out.append(Alert("exploding_gradients", step, grad_norm, self.grad_norm_max,
                             f"gradient norm {grad_norm:.4g} > {self.grad_norm_max:g}"))
        if throughput is not None and throughput > 0:
            avg = sum(self.rates) / len(self.rates) if len(self.rates) >= 5 else None
            collapsed = avg is not None and throughput < self.throughput_drop * avg
            if collapsed and not self._collapsed:
                out.append(Alert("throughput_collapse", step, throughput, self.throughput_drop * avg,
                                 f"throughput {throughput:.4g}/s fell below {self.throughput_drop:.0%} of its "
                                 f"moving average {avg:.4g}/s"))
            self._collapsed = collapsed
            if not collapsed:
                self.rates.append(throughput)
        return out

    def stalled(self, step: int, since_s: float) -> Alert | None:
        if since_s <= self.stall_s:
            return None
        return Alert("stall", step, since_s, self.stall_s, f"no optimizer step for {since_s:.0f} s (at step {step})")


def pattern_rate(flags: Sequence[bool | None]) -> float | None:
    known = [f for f in flags if f is not None]
    return sum(known) / len(known) if known else None


# --------------------------------------------------------------------------------------------
# the monitor


class Monitor:
    """One run's monitor. ``sampler`` answers prompt texts (None: no samples); ``prompts`` are
    ``{"prompt", "expected"}`` dicts; ``profile`` (a DataProfile or None) judges the pattern and
    strips it before the answer is compared; ``report_alerts(latest)`` puts the latest alerts into
    the live status. ``writes`` False (a rank that owns no files) decides but writes nothing."""

    def __init__(self, cfg: Any, paths: RunPaths, *, writes: bool = True, sampler: Sampler | None = None,
                 prompts: list[dict] | None = None, profile: Any = None,
                 report_alerts: Callable[[list[dict]], None] | None = None) -> None:
        self.cfg = cfg
        self.paths = paths
        self.writes = writes
        self.sampler = sampler if prompts else None
        self.prompts = list(prompts or [])
        self.profile = profile
        self.report_alerts = report_alerts or (lambda latest: None)
        self.rules = AlertRules(spike_factor=cfg.spike_factor, window=cfg.spike_window,
                                grad_norm_max=cfg.grad_norm_max, throughput_drop=cfg.throughput_drop,
                                stall_s=cfg.stall_s)
        self.latest: deque[dict] = deque(maxlen=cfg.keep_alerts)
        self._lock = threading.Lock()
        self._writers: dict[str, JsonlWriter] = {}
        self._last_step_at = time.monotonic()
        self._last_step = 0
        self._stall_reported = False

    # ---------------------------------------------------------------- lifecycle
    def open(self) -> None:
        if self.writes:
            for name in ("samples", "alerts", "layers"):
                self._writers[name] = JsonlWriter(getattr(self.paths, name))

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()

    def _write(self, name: str, record: dict) -> None:
        w = self._writers.get(name)
        if w is not None:
            w.write(record)

    # ---------------------------------------------------------------- what each step needs
    def samples_due(self, step: int) -> bool:
        every = self.cfg.samples_every_steps
        return self.sampler is not None and every > 0 and step % every == 0

    def layers_due(self, step: int) -> bool:
        every = self.cfg.layers_every_steps
        return every > 0 and step % every == 0

    def wants_record(self, step: int) -> bool:
        """Whether ``step`` needs a step record even when it is not a logging step (samples)."""
        return self.samples_due(step)

    # ---------------------------------------------------------------- decisions
    def on_step(self, step: int, *, loss: float | None, grad_norm: float | None = None,
                throughput: float | None = None) -> Alert | None:
        """Alerts from a logged step's values; returns the non-finite-loss alert when the run must
        stop (``stop_on_nonfinite``)."""
        self._last_step_at, self._last_step, self._stall_reported = time.monotonic(), step, False
        if not self.cfg.alerts and not self.cfg.stop_on_nonfinite:
            return None
        stop = None
        for alert in self.rules.on_step(step, loss, grad_norm, throughput):
            if self.cfg.alerts:
                self.raise_alert(alert)
            if alert.kind == "nonfinite_loss" and self.cfg.stop_on_nonfinite:
                stop = alert
        return stop

    def mark_progress(self, step: int) -> None:
        """An optimizer step happened (cheap: called every step, for the stall check)."""
        self._last_step_at, self._last_step = time.monotonic(), step

    def check_stall(self) -> None:
        """From the heartbeat thread: one alert when no step happened for ``stall_s``."""
        if not self.cfg.alerts or self._stall_reported:
            return
        alert = self.rules.stalled(self._last_step, time.monotonic() - self._last_step_at)
        if alert is not None:
            self._stall_reported = True
            self.raise_alert(alert)

    def raise_alert(self, alert: Alert) -> None:
        rec = alert.record()
        with self._lock:
            self._write("alerts", rec)
            self.latest.append(rec)
            latest = list(self.latest)
        self.report_alerts(latest)

    # ---------------------------------------------------------------- samples
    def sample(self, step: int, epoch: int) -> dict:
        """Answer the prompts (the sampler keeps the model's mode and the RNG untouched); append
        them to ``samples.jsonl``; return the fields for the step record."""
        texts = [p["prompt"] for p in self.prompts]
        outputs = self.sampler(texts)
        now = time.time()
        flags, correct = [], []
        for p, out in zip(self.prompts, outputs, strict=True):
            ok = self.profile.pattern_ok(out) if self.profile is not None else None
            expected = p.get("expected")
            answer = self.profile.strip_pattern(out) if self.profile is not None else out
            right = None if expected is None else normalize(answer) == normalize(expected)
            flags.append(ok)
            if right is not None:
                correct.append(right)
            self._write("samples", {"step": step, "epoch": epoch, "prompt": p["prompt"], "output": out,
                                    "expected": expected, "correct": right, "pattern_ok": ok, "t": now})
        fields: dict = {}
        rate = pattern_rate(flags)
        if rate is not None:
            fields["pattern_rate"] = rate
        if correct:
            fields["sample_accuracy"] = sum(correct) / len(correct)
        return fields

    # ---------------------------------------------------------------- layers
    def write_layers(self, step: int, epoch: int, layers: list[dict]) -> None:
        self._write("layers", {"step": step, "epoch": epoch, "t": time.time(), "layers": layers})


# --------------------------------------------------------------------------------------------
# torch helpers (the trainer's tensors)


def grad_norm(parameters) -> float:
    """The global L2 norm of the gradients (as ``clip_grad_norm_`` computes it, without clipping)."""
    return float(grad_norm_of(parameters))


def grad_norm_of(parameters):
    """:func:`grad_norm`, left on the device (a 0-d tensor: no sync until it is read) when the
    gradients are on an accelerator; a float on the CPU."""
    import torch

    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    if all(g.is_cpu for g in grads):
        # On the CPU each tensor's norm is read at no sync cost and summed here in double precision.
        # Measured in the engine's loop on the burgers model (the gradients just written by
        # backward): 57 us, against 84 us for the fused _foreach_norm, its stack and the norm of
        # norms inside torch.no_grad() (the context alone cost 12 us; a gradient that needs no grad
        # builds no graph without it).
        return math.sqrt(math.fsum(float(torch.linalg.vector_norm(g)) ** 2 for g in grads))
    with torch.no_grad():  # on an accelerator: one fused call for the per-tensor norms, no sync until it is read
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def layer_snapshot(model) -> dict[str, list]:
    """The parameters of each named module that owns some, copied (before an optimizer step)."""
    return {name: [p.detach().clone() for p in params] for name, params in _owned_params(model)}


def layer_health(model, before: dict[str, list]) -> list[dict]:
    """Per module: gradient norm, weight norm and update ratio against ``before``."""
    import torch

    out = []
    for name, params in _owned_params(model):
        grads = [p.grad for p in params if p.grad is not None]
        g = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in grads]))) if grads \
            else None
        w = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.detach()) for p in params])))
        old = before.get(name)
        ratio = None
        if old is not None:
            delta = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.detach() - q)
                                                                for p, q in zip(params, old, strict=True)])))
            base = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(q) for q in old])))
            ratio = delta / base if base > 0 else None
        out.append({"name": name or "(root)", "grad_norm": g, "weight_norm": w, "update_ratio": ratio})
    return out


def _owned_params(model):
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            yield name, params
