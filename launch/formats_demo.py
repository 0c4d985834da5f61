"""Prints a table of reduced-precision formats and their rounding error.

    python -m launch.formats_demo

The README's main command until the search launcher exists: it exercises
jnas.precision end to end on 100,000 weight-like values (a normal distribution
scaled log-uniformly over 1e-3..1e3).
"""

from absl import app

from jnas import format_table


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    print(format_table.render(format_table.make_rows()))


if __name__ == "__main__":
    app.run(main)
