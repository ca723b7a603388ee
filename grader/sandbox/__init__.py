"""The trust boundary, grading side: isolation levels, the worker handle, fork-server slots."""
