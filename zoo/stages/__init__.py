"""The stages that fill data/: the loop written once (base), run on local worker processes (run)
or a Dask cluster (cluster); each stage is its tables and one measure function (counts, memory,
latency)."""
