"""Backprop Ninja autograder: grades hand-written backward passes against autograd."""

__version__ = "0.1.0"
