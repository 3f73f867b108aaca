"""The local Dagster instance file (``dagster.yaml``) and workspace (``workspace.yaml``), one
copy each, read with :mod:`importlib.resources` (:mod:`media_assets.instance_config`); ``make``
copies and points at the same files."""
