"""Task and split data of every environment family, one folder per family (read with importlib.resources)."""
