"""trainmon's widgets: one per module, each owning its CSS; drawing is done by pure renderables."""
