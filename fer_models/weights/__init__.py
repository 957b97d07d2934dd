"""Trained weights that install with the package (see ``index.json`` and fer_models.pretrained)."""
