"""What is graded: the exercises, the lecture's model, the cases. Trusted, no I/O."""
