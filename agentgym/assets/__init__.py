"""Files the package ships beside its code (prompt templates, UI assets); read with importlib.resources."""
