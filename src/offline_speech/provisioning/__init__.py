"""Provisioning: plan, download, verify, repair, register and clear catalog entries in the project cache.

`service` holds the cache-models use cases; the other modules are its parts. This file imports nothing, so
`python -m offline_speech.provisioning.convert` runs in the translation venv, which has no huggingface_hub.
"""
