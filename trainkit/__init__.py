"""trainkit: local-first PyTorch training with true resume, early stopping and live run files."""

__version__ = "0.1.0"
