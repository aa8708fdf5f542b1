"""``python -m lrsa_seg`` is the ``lrsa-seg`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
