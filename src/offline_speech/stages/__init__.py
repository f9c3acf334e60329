"""Pipeline stages: one module per stage, each run as `python -m offline_speech.stages.<name> REQUEST.json`
in its backend venv (base.py is the protocol). A stage module imports only the standard library at top level;
its heavy imports live inside run(). The runner names each stage's module, venv and version in
offline_speech/pipeline/registry.py and never imports a stage's run()."""
