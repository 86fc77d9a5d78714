"""A complete Hugging Face ``Trainer`` run with trainkit's callback: a tiny Qwen2 model built from a
config (random weights, no download), trained for a few steps on a toy copy task.

    python examples/hf_tiny_qwen.py [RUN_DIR]
    trainkit status experiments          # the run shows up (and in trainmon)

What a user adds to their own script: ``callbacks=[TrainkitCallback(...)]`` (with options, as here),
or, with none, ``import trainkit.integrations.hf`` and ``report_to="trainkit"``.
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM, Trainer, TrainingArguments  # noqa: E402

from trainkit.integrations.hf import TrainkitCallback  # noqa: E402

VOCAB = 100


class CharTokenizer:
    """Enough of a tokenizer for the monitor's samples: characters to ids and back."""

    eos_token_id = 0
    chat_template = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [1 + ord(c) % (VOCAB - 1) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i - 1 + 32) if 32 <= i - 1 + 32 < 127 else "?" for i in ids)


def tiny_model(seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                      tie_word_embeddings=True)
    return Qwen2ForCausalLM(cfg)


def toy_data(n: int = 32, length: int = 16, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        half = torch.randint(1, VOCAB, (length // 2,), generator=g)
        ids = torch.cat([half, half])  # the second half copies the first
        rows.append({"input_ids": ids, "labels": ids.clone()})
    return rows


def main(run_dir: str | None = None) -> None:
    out = tempfile.mkdtemp(prefix="hf-tiny-qwen-")
    args = TrainingArguments(output_dir=out, num_train_epochs=2, per_device_train_batch_size=8, learning_rate=3e-3,
                             logging_steps=1, save_strategy="epoch", report_to="none", use_cpu=True,
                             disable_tqdm=True)
    callback = TrainkitCallback(run_dir, tokenizer=CharTokenizer(), sample_prompts=["abc", "hello"],
                                monitor={"samples_every_steps": 2, "layers_every_steps": 2, "max_new_tokens": 8},
                                relaunch=True)
    trainer = Trainer(model=tiny_model(), args=args, train_dataset=toy_data(), callbacks=[callback])
    trainer.train()  # an exception in it marks the run failed (with the error) and frees its lock
    print(f"run folder: {callback.run_dir}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
