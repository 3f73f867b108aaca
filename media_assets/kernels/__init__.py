"""Pure compute kernels on local files and arrays. No Dagster, no object storage."""
