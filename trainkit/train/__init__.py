"""Training: torch lives here. ``run`` is the train command's body; ``session`` prepares a run folder;
``engine`` is the loop; ``checkpoint``, ``device`` and ``display`` serve it."""
