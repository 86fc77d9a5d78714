"""``plain_sft``: the example as it is, sanitized (control characters stripped, whitespace
normalised, empty turns dropped); no pattern, no logits processors."""

from __future__ import annotations

from trainkit.profiles.base import DataProfile, RejectedExample, sanitize_messages, with_system_prompt


class PlainSFTProfile(DataProfile):
    name = "plain_sft"

    def transform_example(self, example: dict, index: int, system_prompt: str | None = None) -> dict:
        messages, _ = sanitize_messages(example)
        if not messages:
            raise RejectedExample("empty example: no turn has any text")
        return {**example, "messages": with_system_prompt(messages, system_prompt)}
