import torch
import torch.nn.functional as F

# The grader works in float64, so these checks do too: a correct gradient then
# matches autograd to about 1e-15, and a small mistake stands out.
torch.set_default_dtype(torch.float64)
