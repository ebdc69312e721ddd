"""``python -m flowblending`` is the ``flowblending`` command (also under torchrun / accelerate launch)."""

from .cli import main

if __name__ == "__main__":
    main()
