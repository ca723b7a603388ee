"""The code that runs inside the sandbox; this folder alone is staged into it."""
