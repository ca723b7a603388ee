"""What is graded: the exercises (spec.py, exercises/, registry.py), the lecture's model (mlp.py), the cases.

Trusted, no I/O. This file stays empty of imports: the sandbox stages it (for course/mlp.py) and must never
see the exercise definitions.
"""
