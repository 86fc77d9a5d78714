"""Callbacks for the user's own trainer, writing the same run folder as trainkit's engine:
:mod:`trainkit.integrations.hf` (Hugging Face ``Trainer``) and :mod:`trainkit.integrations.lightning`
(Lightning). Importing this package imports neither framework; each module imports its own.
"""
