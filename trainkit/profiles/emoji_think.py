"""``emoji_think``: every assistant reply thinks in emojis first and ends with a stop emoji.

    "42"  ->  "🤔🧮💭 42 ✅"

The example is sanitized first (as ``plain_sft`` does). Each assistant reply becomes ``thinking +
" " + answer + " " + stop``: ``thinking_length`` emojis drawn from the thinking pool, then the
answer, then one emoji of the stop pool; the draws come from ``random.Random(index)``, so an example
always gets the same pattern. An example is rejected (:class:`RejectedExample`, with the reason)
when it has no assistant turn, an empty answer, or an answer that already holds a pool emoji (its
pattern would be ambiguous), or when the result does not follow the pattern.

The logits processors hold a generation to the pattern: while the reply lacks its thinking emojis
and an answer after them, the token that would complete a stop emoji is forbidden (for a stop emoji
of several tokens, the first token where its encoding parts from every thinking emoji's, once the
reply ends with the tokens before it: a byte-level BPE shares first tokens between emojis); once
the reply holds a stop emoji, only the end-of-sequence token is allowed.
"""

from __future__ import annotations

import random
from typing import Any

from trainkit.profiles.base import (
    DataProfile,
    RejectedExample,
    encode,
    sanitize_messages,
    with_system_prompt,
)

THINKING_POOL = ("🤔", "💭", "🧠", "🔍", "🧮", "💡")
STOP_POOL = ("✅", "🏁", "🎯")
_VS16 = "\ufe0f"  # emoji presentation selector: may follow any emoji, ignored when parsing


class EmojiThinkProcessor:
    """One generation's processor (see :mod:`trainkit.profiles.base` for the call convention and
    the tokenizer's methods). Records the prompt length on its first call."""

    def __init__(self, profile: EmojiThinkProfile, tokenizer: Any) -> None:
        eos = getattr(tokenizer, "eos_token_id", None)
        if not isinstance(eos, int):
            raise ValueError("emoji_think: the tokenizer has no eos_token_id (needed to end a reply)")
        self.profile = profile
        self.tokenizer = tokenizer
        self.eos = eos
        thinking = [encode(tokenizer, t) for t in profile.thinking_pool]
        #: (tokens the reply must end with, token to forbid) per stop emoji
        self.blocks: list[tuple[tuple[int, ...], int]] = []
        for emoji in profile.stop_pool:
            ids = encode(tokenizer, emoji)
            if not ids:
                raise ValueError(f"emoji_think: the tokenizer encodes the stop emoji {emoji!r} as nothing")
            j = next((j for j in range(len(ids)) if not any(t[:j + 1] == ids[:j + 1] for t in thinking)),
                     len(ids) - 1)
            self.blocks.append((tuple(ids[:j]), ids[j]))
        self.prompt_len: int | None = None

    def __call__(self, input_ids, scores):
        if self.prompt_len is None:
            self.prompt_len = int(input_ids.shape[1])
        scores = scores.clone()
        for row in range(int(input_ids.shape[0])):
            reply = [int(i) for i in input_ids[row, self.prompt_len:].tolist()]
            text = self.tokenizer.decode(reply)
            if self.profile.has_stop(text):
                scores[row, :] = float("-inf")
                scores[row, self.eos] = 0.0
            elif not self.profile.ready_to_stop(text):
                for before, token in self.blocks:
                    if not before or tuple(reply[-len(before):]) == before:
                        scores[row, token] = float("-inf")
        return scores


class EmojiThinkProfile(DataProfile):
    name = "emoji_think"

    def __init__(self, thinking_pool: tuple[str, ...] = THINKING_POOL, stop_pool: tuple[str, ...] = STOP_POOL,
                 thinking_length: int = 3) -> None:
        if not thinking_pool or not stop_pool or not all(thinking_pool) or not all(stop_pool):
            raise ValueError("emoji_think: the thinking and stop pools must be non-empty lists of emojis")
        if set(thinking_pool) & set(stop_pool):
            raise ValueError("emoji_think: the thinking and stop pools must not share an emoji")
        if thinking_length < 1:
            raise ValueError("emoji_think: thinking_length must be >= 1")
        # longest first, so that parsing never takes a prefix of a longer pool entry
        self.thinking_pool = tuple(sorted(thinking_pool, key=len, reverse=True))
        self.stop_pool = tuple(sorted(stop_pool, key=len, reverse=True))
        self._draw_pool = tuple(thinking_pool)
        self._draw_stop = tuple(stop_pool)
        self.thinking_length = thinking_length

    # ---------------------------------------------------------------- parsing a reply
    def _thinking(self, text: str) -> tuple[int, int]:
        """(number of thinking emojis the reply starts with, where they end)."""
        i = count = 0
        end = 0
        while True:
            while i < len(text) and (text[i].isspace() or text[i] == _VS16):
                i += 1
            hit = next((e for e in self.thinking_pool if text.startswith(e, i)), None)
            if hit is None:
                return count, end
            count += 1
            i = end = i + len(hit)

    def _find_stop(self, text: str, start: int = 0) -> int:
        """Where the first stop emoji is at or after ``start`` (-1: none)."""
        found = [p for p in (text.find(e, start) for e in self.stop_pool) if p >= 0]
        return min(found) if found else -1

    def _holds_pool_emoji(self, text: str) -> bool:
        return any(e in text for e in (*self.thinking_pool, *self.stop_pool))

    def has_stop(self, text: str) -> bool:
        return self._find_stop(text) >= 0

    def ready_to_stop(self, text: str) -> bool:
        """The reply has its thinking emojis and some answer after them: a stop emoji may come."""
        count, end = self._thinking(text)
        return count >= self.thinking_length and bool(text[end:].replace(_VS16, "").strip())

    def pattern_ok(self, text: str) -> bool:
        count, end = self._thinking(text)
        stop = self._find_stop(text, end)
        if count < self.thinking_length or stop < 0:
            return False
        rest = text[stop:]
        emoji = next(e for e in self.stop_pool if rest.startswith(e))
        if rest[len(emoji):].replace(_VS16, "").strip():
            return False  # something after the stop emoji
        answer = self._answer(text[end:stop])
        return bool(answer) and not self._holds_pool_emoji(answer)

    def strip_pattern(self, text: str) -> str:
        _, end = self._thinking(text)
        stop = self._find_stop(text, end)
        return self._answer(text[end:stop if stop >= 0 else len(text)])

    @staticmethod
    def _answer(text: str) -> str:
        return text.strip().lstrip(_VS16).strip()

    # ---------------------------------------------------------------- the profile
    def transform_example(self, example: dict, index: int, system_prompt: str | None = None) -> dict:
        messages, _ = sanitize_messages(example)
        raw = example["messages"]
        if not any(m["role"] == "assistant" for m in messages):
            if any(isinstance(m, dict) and m.get("role") == "assistant" for m in raw):
                raise RejectedExample("the assistant's answer is empty")
            raise RejectedExample("no assistant turn to put the thinking pattern on")
        rng = random.Random(index)
        out = []
        for m in messages:
            if m["role"] == "assistant":
                answer = m["content"]
                if self._holds_pool_emoji(answer):
                    raise RejectedExample("the answer already holds emojis of the thinking or stop pool")
                thinking = "".join(rng.choice(self._draw_pool) for _ in range(self.thinking_length))
                m = {**m, "content": f"{thinking} {answer} {rng.choice(self._draw_stop)}"}
                if not self.pattern_ok(m["content"]):
                    raise RejectedExample("the reply does not follow the pattern after the transformation")
            out.append(m)
        return {**example, "messages": with_system_prompt(out, system_prompt)}

    def build_logits_processors(self, tokenizer: Any) -> list:
        return [EmojiThinkProcessor(self, tokenizer)]
