"""Model hosting: the ``Encoder`` seam (``base``), one module per inference backend (``torch``), and
the per-process ``ModelHost`` that picks a backend by the registry entry's ``backend`` field."""
