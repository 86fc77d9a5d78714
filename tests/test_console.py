"""console.log: what a training process printed, in its run folder, bounded; the terminal still shows it.

Pure parts as tables (:class:`Redraws`, :class:`RotatingFile`, the cap from the environment); real
``trainkit train`` subprocesses of a task that prints, warns, writes below Python and draws a
``\\r`` progress bar (tests/console_tasks.py): through pipes, through a pseudo-terminal (the live
bar stays live), past the cap, stopped by SIGTERM and killed by SIGKILL mid-run, started detached by
``trainkit launch``; and a Hugging Face callback's logging and warnings.
"""

from __future__ import annotations

import logging
import os
import pty
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, read_json, trainkit, wait_for

from trainkit.console import CAP_ENV, DEFAULT_MAX_BYTES, LogCapture, Redraws, RotatingFile, collapse, max_bytes_from_env

CHATTY = {"task": "console_tasks:chatty", "epochs": 1, "batch_size": 64, "log_every_steps": 1, "heartbeat_s": 0.5,
          "model": {"width": 16, "depth": 1}, "data": {"n_train": 256, "n_val": 32, "nx": 16}}
SAID = ("hello from the user's print", "UserWarning: a user warning", "raw bytes on fd 2", "bar 100%",
        "\x1b[31mred text\x1b[0m")


@pytest.fixture
def cenv(env):
    return {**env, "PYTHONPATH": str(ROOT / "tests"), "OMP_NUM_THREADS": "1"}


def chatty_config(folder: Path, **over) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({**CHATTY, **over}, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------------
# pure


@pytest.mark.parametrize("chunks,times,want", [
    ([b"plain line\n"], [0], b"plain line\n"),
    ([b"par", b"tial", b" line\n"], [0, 0, 0], b"partial line\n"),
    # a bar redrawn in place: its first state at once, the next ones at most once a second, the last always
    ([b"\r 0%", b"\r 10%", b"\r 20%", b"\r100%\n"], [0, 0.1, 0.2, 0.3], b" 0%\r100%\n"),
    ([b"\r 0%", b"\r 10%", b"\r 20%"], [0, 1.5, 1.6], b" 0%\r 10%"),
    ([b"a\rb\rc\n"], [0], b"c\n"),
    ([b"windows line\r\n"], [0], b"windows line\n"),
    ([b"\x1b[2K\x1b[31mred\x1b[0m\n"], [0], b"\x1b[2K\x1b[31mred\x1b[0m\n"),
    ([b"one\ntwo\nthr", b"ee\n"], [0, 0], b"one\ntwo\nthree\n"),
])
def test_redraws_keep_the_last_state_of_each_line(chunks, times, want):
    r = Redraws(every_s=1.0)
    out = b"".join(r.feed(c, t) for c, t in zip(chunks, times, strict=True))
    assert out == want


def test_a_held_back_redraw_is_written_when_its_time_comes_and_at_the_end():
    r = Redraws(every_s=1.0)
    assert r.feed(b"\r 0%", 0.0) == b" 0%"
    assert r.feed(b"\r 50%", 0.2) == b""  # too soon: held
    assert r.due(0.5) == b""
    assert r.due(1.2) == b"\r 50%"
    assert r.feed(b"\r 70%", 1.3) == b""
    assert r.flush(1.4) == b"\r 70%"  # the stream ended: its last state


@pytest.mark.parametrize("line,shown", [(b"abc", b"abc"), (b"a\rb", b"b"), (b"ab\r", b"ab"), (b"\r\r", b"")])
def test_collapse(line, shown):
    assert collapse(line) == shown


def test_the_file_rotates_at_its_cap_on_a_line_boundary(tmp_path):
    path = tmp_path / "console.log"
    f = RotatingFile(path, max_bytes=1024)
    lines = [f"{i:04d} {'x' * 45}\n".encode() for i in range(100)]  # 50 bytes each: 5000 bytes in all
    for line in lines:
        f.write(line)
    f.close()
    old, new = (tmp_path / "console.log.1").read_bytes(), path.read_bytes()
    assert len(old) <= 1024 and len(new) <= 1024
    kept = (old + new).splitlines(keepends=True)
    assert kept == lines[-len(kept):]  # whole lines, the newest ones, in order, none lost between the two
    assert old.endswith(b"\n")


def test_a_write_larger_than_the_cap_keeps_its_end(tmp_path):
    f = RotatingFile(tmp_path / "console.log", max_bytes=1024)
    f.write(b"a" * 5000 + b"END\n")
    f.close()
    data = (tmp_path / "console.log").read_bytes()
    assert len(data) == 1024 and data.endswith(b"END\n")


@pytest.mark.parametrize("value,cap", [(None, DEFAULT_MAX_BYTES), ("65536", 65536), ("0", 0),
                                       ("many", DEFAULT_MAX_BYTES)])
def test_the_cap_from_the_environment(value, cap):
    assert max_bytes_from_env({} if value is None else {CAP_ENV: value}) == cap


def test_log_capture_copies_logging_and_warnings_until_detached(tmp_path):
    path = tmp_path / "console.log"
    quiet = logging.getLogger("console-test-lib")
    quiet.propagate = False  # a library logger that keeps its records to itself (transformers' does)
    shown = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *rest, **kw: shown.append(str(message))  # the display before
        cap = LogCapture(path, loggers=("console-test-lib",)).attach()
        handler = cap.handler
        try:
            logging.getLogger("console-test").warning("root-bound record")
            quiet.error("library record")
            warnings.warn("careful now", stacklevel=1)
        finally:
            cap.detach()
        warnings.warn("after the end", stacklevel=1)
    logging.getLogger("console-test").warning("after the end")
    text = path.read_text()
    assert "WARNING console-test: root-bound record" in text and "ERROR console-test-lib: library record" in text
    assert "UserWarning: careful now" in text
    assert shown == ["careful now", "after the end"]  # still shown as before, during and after
    assert "after the end" not in text
    assert handler not in logging.getLogger().handlers and handler not in quiet.handlers


CAPTURING = """
import os, subprocess, sys
from trainkit import console
if sys.argv[2] == "no-helper":
    sys.executable = "/bin/false"  # the helper cannot start: nothing may change
print("capture:", console.capture(sys.argv[1]) is not None)
print("a print", flush=True)
os.write(2, b"fd 2 below Python\\n")
subprocess.run(["echo", "a child process"], check=True)
raise SystemExit("an error at exit")
"""


@pytest.mark.parametrize("how", ["helper", "no-helper"])
def test_a_process_capture_and_its_fallback(tmp_path, how):
    path = tmp_path / "console.log"
    done = subprocess.run([sys.executable, "-c", CAPTURING, str(path), how], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    terminal = done.stdout + done.stderr
    for text in ("a print", "fd 2 below Python", "a child process", "an error at exit"):
        assert text in terminal, text  # the terminal has everything, with or without the file
    if how == "helper":
        assert "capture: True" in done.stdout
        lines = path.read_text().splitlines()
        # stdout and stderr are two pipes here (two channels of the helper): each stream's lines keep
        # their order, and the file interleaves the two as they arrive (one channel on a terminal)
        out, err = ["capture: True", "a print", "a child process"], ["fd 2 below Python", "an error at exit"]
        assert sorted(lines) == sorted(out + err)
        assert [x for x in lines if x in out] == out and [x for x in lines if x in err] == err
    else:
        assert "capture: False" in done.stdout and path.read_text() == ""


# ------------------------------------------------------------------------------------------------
# real trainings


@pytest.mark.slow
def test_train_copies_prints_warnings_and_raw_writes_and_the_terminal_still_shows_them(tmp_path, cenv):
    run = tmp_path / "run"
    done = trainkit("train", chatty_config(run), "--run-dir", run, cwd=tmp_path, env=cenv)
    assert done.returncode == 0, done.stderr
    console = (run / "console.log").read_text()
    terminal = done.stdout + done.stderr
    for text in SAID:
        assert text in console, text
        assert text in terminal, text
    assert "bar 0%" in terminal and "bar 50%" in terminal  # the terminal got every redraw
    assert console.count("finished 1 epochs") == 1  # the engine's log line, once
    own = (run / "train.log").read_text()
    assert "finished 1 epochs" in own and "hello from the user's print" not in own  # train.log: the run's own log
    assert not (run / "console.log.1").exists()


@pytest.mark.slow
def test_under_a_terminal_the_live_bar_stays_and_the_file_gets_it(tmp_path, cenv):
    run = tmp_path / "run"
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "trainkit", "train", str(chatty_config(run)), "--run-dir", str(run)],
                            cwd=tmp_path, env={**cenv, "TERM": "xterm-256color", "COLUMNS": "100"},
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    got = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed
                return
            if not data:
                return
            got.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert proc.wait(timeout=120) == 0
    reader.join(timeout=30)
    os.close(master)
    terminal = got.decode("utf-8", "replace")
    assert "epoch 1/1" in terminal  # the rich bar: the trainer still sees a terminal
    assert "hello from the user's print" in terminal
    console = (run / "console.log").read_text()
    assert "epoch 1/1" in console and "hello from the user's print" in console and "\x1b[31mred text" in console


@pytest.mark.slow
def test_past_its_cap_console_log_rotates_and_holds_the_newest_output(tmp_path, cenv):
    run = tmp_path / "run"
    cap = 64 * 1024
    done = trainkit("train", chatty_config(run), "--run-dir", run, cwd=tmp_path,
                    env={**cenv, "CHATTY_BYTES": str(300_000), CAP_ENV: str(cap)})
    assert done.returncode == 0, done.stderr
    printed = [line for line in done.stdout.splitlines() if line.startswith("line ")]
    assert len(printed) == 3000  # the terminal got everything
    old, new = (run / "console.log.1").read_text(), (run / "console.log").read_text()
    assert len(old.encode()) <= cap and len(new.encode()) <= cap
    kept = [line for line in (old + new).splitlines() if line.startswith("line ")]
    assert kept == printed[-len(kept):] and len(kept) > 500  # the newest lines, in order, no gap at the rotation
    assert "finished 1 epochs" in new


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_signal_mid_run_loses_nothing_already_printed(tmp_path, cenv, sig):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "trainkit", "train", str(chatty_config(run, epochs=100)),
                             "--run-dir", str(run)], cwd=tmp_path, env={**cenv, "CHATTY_STEP_S": "0.02"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    console = run / "console.log"
    wait_for(lambda: console.exists() and "step 30\n" in console.read_text(), timeout=120, what="30 steps printed")
    proc.send_signal(sig)
    terminal, _ = proc.communicate(timeout=60)
    printed = [line for line in terminal.splitlines() if line.startswith("step ")]
    # the helper that writes the file outlives a killed trainer: it writes what the pipe still holds
    wait_for(lambda: [line for line in console.read_text().splitlines() if line.startswith("step ")] == printed,
             timeout=10, what="every printed step in console.log")
    assert len(printed) >= 30
    if sig == signal.SIGTERM:
        assert proc.returncode == 0
        assert "SIGTERM" in console.read_text()  # the graceful stop's own lines are there too


@pytest.mark.slow
def test_a_launched_run_writes_its_output_once_into_console_log(tmp_path, cenv):
    root = tmp_path / "experiments"
    chatty_config(root / "chatty")
    done = trainkit("launch", root, "--wait", cwd=tmp_path, env=cenv)
    assert done.returncode == 0, done.stderr
    assert "chatty exited with code 0" in done.stdout
    run = root / "chatty"
    console, own = (run / "console.log").read_text(), (run / "train.log").read_text()
    for text in SAID:
        assert console.count(text) == 1, text
    assert console.count("run folder:") == 1 and console.count("finished 1 epochs") == 1
    assert own.count("run folder:") == 1 and "hello from the user's print" not in own
    assert read_json(run / "progress.json")["finished"]


@pytest.mark.slow
@pytest.mark.skipif(not all(__import__("importlib").util.find_spec(m) for m in ("transformers", "torch")),
                    reason="transformers not installed")
def test_a_hf_callback_copies_logging_and_warnings_into_console_log(tmp_path):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Trainer, TrainerCallback, TrainingArguments
    from transformers.utils import logging as hf_logging

    from trainkit.integrations.hf import TrainkitCallback

    class Chatter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                logging.getLogger("my.script").warning("the user's own warning record")
                hf_logging.get_logger("transformers.trainer").warning("a transformers record")
                warnings.warn("a warning mid-training", stacklevel=1)

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32))
    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": (ids := torch.randint(1, 100, (8,), generator=g)), "labels": ids.clone()} for _ in range(16)]
    args = TrainingArguments(output_dir=str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=4,
                             logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        Trainer(model=model, args=args, train_dataset=rows,
                callbacks=[TrainkitCallback(run, heartbeat_s=0.5, system_every_s=0.1,
                                            monitor={"samples_every_steps": 0, "layers_every_steps": 0}),
                           Chatter()]).train()
    logging.getLogger("my.script").warning("after the training")
    text = (run / "console.log").read_text()
    assert "WARNING my.script: the user's own warning record" in text
    assert "WARNING transformers.trainer: a transformers record" in text
    assert "UserWarning: a warning mid-training" in text
    assert "after the training" not in text  # removed at the end of training
    assert read_json(run / "progress.json")["finished"]


@pytest.mark.slow
@pytest.mark.skipif(not all(__import__("importlib").util.find_spec(m) for m in ("lightning", "torch")),
                    reason="lightning not installed")
def test_a_lightning_callback_copies_its_loggers_into_console_log(tmp_path):
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback
    from torch.utils.data import DataLoader, TensorDataset

    from trainkit.integrations.lightning import TrainkitCallback

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Chatter(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 2:
                logging.getLogger("lightning.pytorch.my_part").warning("a lightning record")
                logging.getLogger("my.script").error("the user's own record")

    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(16, 4), torch.randn(16, 1)), batch_size=4)
    run = tmp_path / "run"
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(tmp_path / "o"),
                        callbacks=[TrainkitCallback(run, heartbeat_s=0.5, system_every_s=0.1,
                                                    monitor={"samples_every_steps": 0, "layers_every_steps": 0}),
                                   Chatter()])
    trainer.fit(Tiny(), data)
    text = (run / "console.log").read_text()
    assert "WARNING lightning.pytorch.my_part: a lightning record" in text
    assert "ERROR my.script: the user's own record" in text
    assert read_json(run / "progress.json")["finished"]
