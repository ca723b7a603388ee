"""The student's starter files and notebooks, built from the solutions."""
