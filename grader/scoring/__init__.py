"""Answers to verdicts to points: pure, never starts a process."""
