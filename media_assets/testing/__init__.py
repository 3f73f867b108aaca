"""What the tests, the benchmarks and the docs scripts share: running sensors and their runs in
one process (``harness``), a throwaway PostgreSQL server (``postgres_server``), generated label
batches (``label_data``), key-frame test reels (``keyframe_reels``) and the Dagster UI seen
through GraphQL and Chromium (``ui_browser``, needs the ``test`` extra's Playwright). Nothing
here is imported by the pipelines."""
