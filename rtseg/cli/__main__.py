"""``python -m rtseg.cli``: the same as the ``rtseg`` console script (and what
``torchrun ... -m rtseg.cli train ...`` runs in every process)."""
from rtseg.cli import main

if __name__ == "__main__":
    main()
