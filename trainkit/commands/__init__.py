"""One module per command: ``register(sub)`` adds its parser; heavy imports wait for the handler."""
