"""media_assets: a Dagster asset platform that turns raw media in object storage into training data."""
