"""``python -m efm`` (and ``torchrun -m efm``): the ``efm`` command."""

from efm.cli import entry

if __name__ == "__main__":
    entry()
