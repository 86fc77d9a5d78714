"""Data profiles: built-in names, entry points of the group ``trainkit.profiles``, or
``module:Class`` import strings (resolved by :mod:`trainkit.registry`, as tasks are).

A third-party package registers a profile in its ``pyproject.toml``::

    [project.entry-points."trainkit.profiles"]
    my_profile = "mypkg.profiles:MyProfile"

The object named is a :class:`DataProfile` subclass (or any callable returning a profile, or a
profile instance). Importing this package does not import torch.
"""

from __future__ import annotations

from trainkit import registry
from trainkit.errors import UserError, first_line
from trainkit.profiles.base import DataProfile, RejectedExample

BUILTIN = {
    "plain_sft": "trainkit.profiles.plain_sft:PlainSFTProfile",
    "emoji_think": "trainkit.profiles.emoji_think:EmojiThinkProfile",
}
ENTRY_POINT_GROUP = "trainkit.profiles"
_REQUIRED = ("transform_example", "build_logits_processors", "pattern_ok", "strip_pattern", "sample_prompts")

__all__ = ["BUILTIN", "DataProfile", "RejectedExample", "get_profile", "list_profiles"]


def get_profile(name: str) -> DataProfile:
    """A new instance of the profile ``name``; raises :class:`UserError` (one line, the known names
    listed) when unknown or unusable."""
    obj = registry.resolve(name, kind="profile", builtins=BUILTIN, group=ENTRY_POINT_GROUP)
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "transform_example")):
        try:
            obj = obj()
        except Exception as e:
            raise UserError(f"profile {name!r}: cannot create it ({first_line(e, limit=300)})") from None
    missing = [m for m in _REQUIRED if not callable(getattr(obj, m, None))]
    if missing:
        raise UserError(f"profile {name!r}: the object lacks {', '.join(missing)} (subclass "
                        "trainkit.profiles.DataProfile)")
    return obj


def list_profiles() -> list[str]:
    """The built-in names, then the entry points' (sorted)."""
    return registry.names(BUILTIN, ENTRY_POINT_GROUP)
