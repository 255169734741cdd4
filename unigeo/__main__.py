"""``python -m unigeo``: the command line (``torchrun -m unigeo train ...`` for DDP)."""

from unigeo.cli import main

if __name__ == "__main__":
    main()
