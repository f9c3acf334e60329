"""Pipeline stages: one module per stage, each run as `python -m offline_speech.stages.<name> REQUEST.json`
in its backend venv. A stage module imports only the standard library at top level (so the runner in the core
venv can read NAME/VENV/VERSION); its heavy imports live inside run()."""
