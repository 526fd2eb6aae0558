"""Helpers the benchmark (``bench``) and the reliability checks (``reliability``) share."""
