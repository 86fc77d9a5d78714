"""A deterministic demo ROOT (fixed times and values) for snapshots and screenshots; the files are
laid out in trainkit's exact formats (:func:`trainkit.testing.synthetic_run`, then fixed times),
the training session's files through :class:`trainkit.runfolder.writer.RunWriter`."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import orjson

from trainkit.evaluation.plan import conversation_name
from trainkit.runfolder import RunPaths
from trainkit.runfolder.files import dumps, write_json
from trainkit.runfolder.writer import ENGINE, RunWriter, resolved_meta
from trainkit.testing import synthetic_run

NOW = 1_800_000_000.0
ES = {"metric": "val_loss", "mode": "min", "patience": 2, "min_delta": 0.0}


def _curve(epochs: int, steps: int, base: float, seed: int) -> tuple[list[dict], list[dict]]:
    recs, epochs_out, t = [], [], NOW - 3600
    for e in range(epochs):
        for s in range(steps):
            g = e * steps + s
            t += 1.5
            loss = base * math.exp(-g / 60) + 0.05 + 0.02 * math.sin(g * 0.7 + seed)
            recs.append({"kind": "step", "epoch": e, "step": g, "loss": round(loss, 5), "lr": 1e-3, "t": t})
        val = base * math.exp(-(e + 1) * steps / 70) + 0.06 + 0.01 * (e > 6) * (e - 6)
        epochs_out.append({"kind": "epoch", "epoch": e, "train_loss": round(loss, 5), "val_loss": round(val, 5),
                           "lr": 1e-3, "global_step": (e + 1) * steps, "duration_s": 12.5, "t": t})
    return recs, epochs_out


def build_demo(root: str | os.PathLike, *, pid: int | None = None) -> Path:
    """Runs in every state that reads well: running, early-stopped, finished (with an evaluation),
    crashed, failed, pending. Returns ROOT."""
    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    specs = [("2026-11-20-baseline", "finished", 8, 8, 1.0, None),
             ("2026-11-21-wide-lr3e-3", "running", 12, 5, 1.3, None),
             ("2026-11-21-early-stop", "early_stopped", 20, 9, 0.9, ES),
             ("2026-11-22-crashed", "crashed", 10, 3, 1.1, None),
             ("2026-11-22-bad-lr", "failed", 10, 1, 2.0, None),
             ("2026-11-23-queued", None, 10, 0, 1.0, None)]
    for i, (name, state, total, done, base, es) in enumerate(specs):
        steps, epochs = _curve(max(done, 1) if state else 0, 16, base, i)
        scores = [e["val_loss"] for e in epochs[:done]]
        written = {"crashed": "running", "early_stopped": "early_stopped"}.get(state, state)
        paths = synthetic_run(root, name, total=total, scores=scores, early_stopping=es, state=written,
                              progress=state is not None, pid=pid or os.getpid())
        writer = RunWriter(paths.root, heartbeat_s=5.0, durable=False, clock=lambda: NOW)
        cfg = {"task": "burgers", "epochs": total, "lr": 3e-3 if "lr3" in name else 1e-3, "batch_size": 32,
               "optimizer": "adamw", "early_stopping": es, "heartbeat_s": 5.0,
               "model": {"width": 256 if "wide" in name else 64, "depth": 3}}
        writer.write_resolved(cfg, resolved_meta(None, trainer=ENGINE, source="demo",
                                                 launch={"cwd": "/demo", "torchrun": None}, now=NOW - 3600))
        if state is None:
            paths.metrics.unlink()
            continue
        open(paths.metrics, "wb").close()
        for rec in sorted(steps + epochs[:done], key=lambda r: r["t"]):
            writer.append(rec)
        writer.close()
        with open(paths.system, "wb") as f:
            for k in range(40):
                f.write(dumps({"t": NOW - 400 + 10 * k, "cpu_percent": 80 + 10 * math.sin(k / 3),
                               "rss_bytes": (300 + k) * 2 ** 20, "host_cpu_percent": 60.0,
                               "host_mem_percent": 40 + k / 10}) + b"\n")
        paths.log.write_text("".join(f"2026-11-21 10:{m:02d}:00,000 INFO epoch {m} [{m + 1}/{total}]  train_loss "
                                     f"{0.5 / (m + 1):.4f}\n" for m in range(done)))
        if state is not None:
            writer.patch_status({"state": written, "pid": pid or os.getpid(), "host": os.uname().nodename,
                                 "started_at": NOW - 3600, "heartbeat_at": NOW - (900 if state == "crashed" else 2),
                                 "heartbeat_interval_s": 5.0, "current_epoch": done, "total_epochs": total,
                                 "step": done * 16 + 7, "steps_per_epoch": 16,
                                 "loss": steps[-1]["loss"] if steps else None, "lr": 1e-3, "throughput": 850.0,
                                 "eta_s": 340.0, "world_size": 1, "device": "cpu",
                                 "error": "RuntimeError: loss is NaN at step 17" if state == "failed" else None,
                                 "stop_reason": None, "control": None})
        if done:
            writer.checkpoint_meta({"last_epoch": done - 1, "epochs_done": done, "best_loss": min(scores),
                                    "best_metric": "val_loss", "best_epoch": scores.index(min(scores))})
        if state == "finished":
            _demo_eval(paths)
        if state in ("finished", "running", "failed"):
            _demo_monitor(paths, steps, failed=state == "failed")
    return root


def _demo_monitor(paths: RunPaths, steps: list[dict], *, failed: bool) -> None:
    """The training monitor's files: samples, layer health and (for the failed run) alerts, with
    the latest alerts in the status file too, as the engine writes them."""
    with open(paths.samples, "wb") as f:
        for k, rec in enumerate(steps[7::8]):
            a, b = k % 9 + 2, k * 3 % 11
            right = k % 4 != 1
            out = f"{a + b}" if right else f"{a + b + 1}"
            f.write(dumps({"step": rec["step"], "epoch": rec["epoch"], "prompt": f"What is {a}+{b}?",
                           "output": out if k % 6 != 5 else f"the answer is {out}", "expected": str(a + b),
                           "correct": right and k % 6 != 5, "pattern_ok": k % 6 != 5, "t": rec["t"]}) + b"\n")
    with open(paths.layers, "wb") as f:
        for k, rec in enumerate(steps[3::4]):
            layers = [{"name": name, "grad_norm": round(g * math.exp(-k / 20) + 0.05 * math.sin(k + i), 5),
                       "weight_norm": round(w + k / 100, 4), "update_ratio": round(1e-3 * math.exp(-k / 30), 7)}
                      for i, (name, g, w) in enumerate((("net.0", 1.2, 8.0), ("net.3", 0.8, 5.5),
                                                         ("net.6", 0.4, 2.1)))]
            f.write(dumps({"step": rec["step"], "epoch": rec["epoch"], "t": rec["t"], "layers": layers}) + b"\n")
    if not failed:
        return
    last = steps[-1]
    alerts = [{"kind": "loss_spike", "step": last["step"] - 3, "value": 9.2, "threshold": 3.0,
               "message": f"loss spiked to 9.2 at step {last['step'] - 3} (3x the recent mean)", "t": last["t"] - 4},
              {"kind": "nonfinite_loss", "step": last["step"], "value": "nan", "threshold": None,
               "message": f"loss is nan at step {last['step']}", "t": last["t"]}]
    paths.alerts.write_bytes(b"".join(dumps(a) + b"\n" for a in alerts))
    status = orjson.loads(paths.status.read_bytes())
    RunWriter(paths.root, durable=False).patch_status({**status, "alerts": alerts})


def _demo_eval(paths: RunPaths) -> None:
    ev = paths.eval_paths("arith")
    ev.conversations.mkdir(parents=True)
    lines = []
    for q in range(24):
        status = "error" if q == 7 else "ok"
        correct = None if status == "error" else q not in (3, 11)
        answer = str(q + q % 7)
        response = None if status == "error" else (answer if correct else str(int(answer) + 1))
        rec = {"question_id": q, "sample_number": 0, "status": status, "response": response, "expected": answer,
               "correct": correct, "latency_s": 0.05 + q / 1000, "error": "TimeoutError: model did not answer"
               if status == "error" else None, "attempts": 3 if status == "error" else 1, "t": NOW - 100 + q}
        lines.append(dumps(rec) + b"\n")
        conv = {"version": 1, "question_id": q, "sample_number": 0, "status": status, "model": "demo:arith",
                "messages": [{"role": "system", "content": "You add numbers."},
                             {"role": "user", "content": f"{q}+{q % 7}"}]
                + ([] if status == "error" else [{"role": "assistant", "content": response}]),
                "response": response, "expected": answer, "correct": correct, "error": rec["error"],
                "errors": [rec["error"]] * 3 if rec["error"] else [],
                "traceback": "Traceback (most recent call last):\n  File \"model.py\", line 9, in answer\n"
                             "TimeoutError: model did not answer\n" if rec["error"] else None,
                "attempts": rec["attempts"], "latency_s": rec["latency_s"], "t": rec["t"]}
        write_json(ev.conversations / conversation_name(q, 0), conv, durable=False)
    ev.responses.write_bytes(b"".join(lines))
    write_json(ev.summary, {"version": 1, "name": "arith", "metric": "accuracy", "planned": 24, "done": 24, "ok": 23,
                            "error": 1, "completed": True, "accuracy": 21 / 23, "duration_s": 4.2}, durable=False)
    paths.reports.mkdir(exist_ok=True)
    write_json(paths.report("arith"), {"version": 1, "name": "arith", "metric": "accuracy",
                                       "metrics": {"accuracy": 21 / 23}, "gates": {"accuracy": {"min": 0.8}},
                                       "gate_results": [{"metric": "accuracy", "passed": True,
                                                         "reason": "accuracy 0.913 >= min 0.8"}],
                                       "gates_passed": True, "completed": True}, durable=False)
