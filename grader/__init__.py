"""Backprop Ninja autograder: grades hand-written backward passes against autograd."""

__version__ = "0.1.0"


def check(path=None, config=None) -> None:
    """In a notebook: grade it (as saved) on the public cases and show the graph and checks inline."""
    from grader.outputs.jupyter import check as check_notebook

    check_notebook(path, config)
