"""``python -m fer_models COMMAND ...`` is ``fer-models COMMAND ...``."""
from fer_models.cli import main

main()
