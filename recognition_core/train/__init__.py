"""Training of the character classifier (needs the optional ``train`` extra: PyTorch, CPU wheel)."""
