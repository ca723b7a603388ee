"""The lecture's exercises, one module each (the registry, grader.course.registry, lists them in order)."""
