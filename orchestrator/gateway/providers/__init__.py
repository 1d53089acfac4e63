"""Host providers: how the gateway starts, stops and looks at the GPU host (``base.py``)."""
