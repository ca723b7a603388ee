"""A whole course at once: local fork-server slots or a Dask cluster, the gradebook, the summary."""
