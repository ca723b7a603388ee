"""A finished report in, text out: one module per destination."""
