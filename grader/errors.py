"""The error the user sees as one line, raised by the policy (grader.config) and the course (grader.course)."""


class ConfigError(Exception):
    """A problem with grading.yaml, an exercise definition or the command line, shown as one line."""
