"""Past one GPU: the voice API on Ray Serve, one replica of the runtime per GPU.

Only this package imports Ray (the ``ray`` extra); nothing below it may import it (the import
layers in ``pyproject.toml``). ``capacity``, ``options``, ``tickets`` and ``warmth`` are plain
Python, tested without Ray; ``replica``, ``ingress``, ``router`` and ``app`` are the Ray side.
"""
