"""What a data profile is: how a chat example is shaped for training, and how generation is held to
that shape.

A profile turns one chat example ``{"messages": [{"role": "system"|"user"|"assistant", "content":
str}, ...]}`` into the example that is trained on (:meth:`DataProfile.transform_example`), and gives
the logits processors that keep a model's generation in the same shape
(:meth:`DataProfile.build_logits_processors`), a check of that shape (:meth:`DataProfile.pattern_ok`)
and what scoring compares (:meth:`DataProfile.strip_pattern`).

Logits processors follow Hugging Face's call convention: ``processor(input_ids, scores) -> scores``
with ``input_ids`` a LongTensor ``[batch, seq]`` (the prompt followed by what was generated so far;
every row of a batch has the same prompt length, left-padded if need be) and ``scores`` a
FloatTensor ``[batch, vocab]`` (the next token's logits). The same objects work in ``transformers``'
``generate(logits_processor=LogitsProcessorList(procs))`` and in trainkit's own sampling loops. A
processor may keep state for one generation (it records the prompt length on its first call): build
a new list for every ``generate`` call.

The tokenizer given to :meth:`DataProfile.build_logits_processors` needs only:

* ``encode(text) -> list[int]``, called as ``encode(text, add_special_tokens=False)`` when it takes
  that keyword (a Hugging Face tokenizer), else ``encode(text)``;
* ``decode(ids: list[int]) -> str``;
* ``eos_token_id: int`` (the token that ends a reply).

This module imports no torch (processors work on the tensors they are given).
"""

from __future__ import annotations

import re
import unicodedata
from abc import ABC, abstractmethod
from typing import Any

ROLES = ("system", "user", "assistant")

# Format characters that are invisible noise in text (zero-width space, word joiner, BOM, bidi
# controls, soft hyphen). Zero-width (non-)joiners stay: emoji sequences and several scripts need them.
_INVISIBLE = re.compile("[\u00ad\u200b\u2060-\u2064\ufeff\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"[^\S\n]+")  # whitespace other than a newline (tabs, NBSP, ideographic space...)
_BLANK_LINES = re.compile(r"\n{3,}")


class RejectedExample(ValueError):
    """An example that the profile cannot turn into a training example; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sanitize_text(text: str) -> str:
    """NFC-normalised text without control characters (those that are whitespace become spaces,
    newlines stay, the others and invisible format characters are dropped), each run of whitespace
    other than newlines one space, no spaces at the ends of lines, at most one blank line in a row,
    stripped."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    if not text.isprintable():  # the fast path skips printable text (no control characters in it)
        text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cs"))
    text = _INVISIBLE.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip(" ") for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def sanitize_messages(example: Any) -> tuple[list[dict], int]:
    """The example's messages, checked and sanitized, and the number of turns dropped as empty.

    Raises :class:`RejectedExample` for a malformed example: not a mapping with a ``messages``
    list, a message that is not a mapping, an unknown role, or a content that is not text (None
    counts as empty). Keys other than ``role`` and ``content`` are kept."""
    if not isinstance(example, dict):
        raise RejectedExample(f"example is {type(example).__name__}, expected a mapping with 'messages'")
    messages = example.get("messages")
    if not isinstance(messages, list):
        raise RejectedExample("example has no 'messages' list")
    out: list[dict] = []
    dropped = 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise RejectedExample(f"message {i} is {type(m).__name__}, expected a mapping with role and content")
        role = m.get("role")
        if role not in ROLES:
            raise RejectedExample(f"message {i} has role {role!r}; expected one of {', '.join(ROLES)}")
        content = m.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise RejectedExample(f"message {i} ({role}) has content of type {type(content).__name__}, expected text")
        content = sanitize_text(content)
        if not content:
            dropped += 1
            continue
        out.append({**m, "content": content})
    return out, dropped


def with_system_prompt(messages: list[dict], system_prompt: str | None) -> list[dict]:
    """``system_prompt`` (sanitized) as the first message, replacing a system message the example
    starts with; None or blank leaves the messages as they are."""
    prompt = sanitize_text(system_prompt) if system_prompt else ""
    if not prompt:
        return messages
    rest = messages[1:] if messages and messages[0]["role"] == "system" else messages
    return [{"role": "system", "content": prompt}, *rest]


def encode(tokenizer: Any, text: str) -> list[int]:
    """``tokenizer.encode(text)`` without special tokens: a Hugging Face tokenizer would add BOS."""
    try:
        ids = tokenizer.encode(text, add_special_tokens=False)
    except TypeError:
        ids = tokenizer.encode(text)
    return [int(i) for i in ids]


class DataProfile(ABC):
    """A data profile. Subclasses set ``name`` and implement :meth:`transform_example`; the rest
    has defaults for a profile without a pattern (no processors, nothing to strip)."""

    name: str = "profile"

    @abstractmethod
    def transform_example(self, example: dict, index: int, system_prompt: str | None = None) -> dict:
        """The training example made from ``example`` (``index``: its position in the data set, the
        only source of randomness); raises :class:`RejectedExample` with the reason."""

    def build_logits_processors(self, tokenizer: Any) -> list:
        """Fresh logits processors for ONE generation (see the module docstring for the tokenizer)."""
        return []

    def pattern_ok(self, text: str) -> bool | None:
        """Whether a generated reply follows the profile's pattern; None: the profile has none."""
        return None

    def strip_pattern(self, text: str) -> str:
        """What scoring compares: the reply without the profile's pattern."""
        return text

    def sample_prompts(self) -> list[dict] | None:
        """Prompts for the training monitor's inference samples (``{"prompt", "expected"?}``);
        None: the task's own."""
        return None

    def __repr__(self) -> str:
        return f"<profile {self.name}>"
