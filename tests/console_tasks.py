"""A user task that prints (``task: console_tasks:chatty``; tests/ on PYTHONPATH), for the console tests.

At its second training step it prints a line, warns, writes to fd 2 below Python, draws a progress
bar with carriage returns and prints a coloured line. With ``CHATTY_BYTES=N`` its third step prints
about N bytes of numbered lines (``line 00000042 xxx...``); with ``CHATTY_STEP_S=S`` every training
step prints ``step K`` and then sleeps S seconds (a long run a test stops mid-way).
"""

from __future__ import annotations

import os
import sys
import time
import warnings

from trainkit.tasks.burgers import BurgersTask


class Chatty(BurgersTask):
    def __init__(self) -> None:
        self.calls = 0

    def loss(self, model, batch):
        if model.training:
            self.calls += 1
            if self.calls == 2:
                print("hello from the user's print")
                warnings.warn("a user warning", stacklevel=1)
                os.write(2, b"raw bytes on fd 2\n")
                for pct in range(0, 101, 25):
                    sys.stderr.write(f"\rbar {pct}%")
                    sys.stderr.flush()
                sys.stderr.write("\n")
                print("\x1b[31mred text\x1b[0m")
            n = int(os.environ.get("CHATTY_BYTES", "0"))
            if n and self.calls == 3:
                for i in range(n // 100):
                    print(f"line {i:08d} " + "x" * 86)
            every = float(os.environ.get("CHATTY_STEP_S", "0"))
            if every:
                print(f"step {self.calls}", flush=True)
                time.sleep(every)
        return super().loss(model, batch)


def chatty() -> Chatty:
    return Chatty()
