"""The lecture's own notebook, as students complete it (the `lecture` notebook layout).

- `headers`: the `# Exercise N` headers, misspelled or not: hints of where the work is;
- `find`: what a cell computes (exercise 1's gradients, a one-go answer, a training loop);
- `policy`: which statements run, and which answers come from autograd's `.grad`;
- `names`: the student's names for the answers and the forward tensors (their cmp lines);
- `sections`: each graded section's expected answers and given gradients;
- `plan`: the sections, their cells and statements, and the worker's instructions;
- `train`: exercise 4's training loop, found and planned.

Scoring them is `grader.scoring.lecture` and `grader.scoring.lecture_train`; running them is
`grader.sandbox.inside.execute` and `grader.sandbox.inside.train_loop`.
"""
