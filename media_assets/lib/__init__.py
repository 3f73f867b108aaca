"""Framework pieces no single pipeline owns: what Dagster's instance has recorded
(:mod:`media_assets.lib.records`)."""
