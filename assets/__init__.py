"""Built-in mask templates (drawn by scripts/draw_masks.py); installed as ``maskgen.assets``."""
