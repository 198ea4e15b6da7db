"""Execute a notebook top to bottom with nbclient and write the executed copy elsewhere.

Usage: python execute.py IN.ipynb OUT.ipynb

Used by `./setup.sh test`. Exits non-zero (with the failing cell's error) when any cell fails.
The notebook in the repository is never modified: outputs go to OUT only.
"""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    nb = nbformat.read(src, as_version=4)
    client = NotebookClient(
        nb,
        timeout=300,  # per cell; cells poll with their own, shorter timeouts
        kernel_name="conveyor-notebook",
        resources={"metadata": {"path": str(src.parent)}},
    )
    try:
        client.execute()
    except CellExecutionError as err:
        print(f"notebook {src} failed:\n{err}", file=sys.stderr)
        return 1
    finally:
        nbformat.write(nb, out)
    cells = sum(1 for c in nb.cells if c.cell_type == "code")
    print(f"notebook {src.name}: {cells} code cells ran clean; executed copy in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
