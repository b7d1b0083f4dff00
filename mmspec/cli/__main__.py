"""`python -m mmspec.cli ...`: the same as the `mmspec` console script."""

from mmspec.cli import main

if __name__ == "__main__":
    main()
