"""The gateway: the always-on front door that starts the GPU host, holds what comes while it
boots, passes everything through once it is ready, and stops it when nobody uses it.

It runs on a small VM without a GPU, so nothing here imports the engines, torch or the
runtime (an import contract and ``tests/gateway/test_light.py`` hold this).
"""
